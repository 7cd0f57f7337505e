package control

import "context"

const publicationID = "stream#publication"

// PublicationRecord says that Tandem created the publication, so it may make the
// publication follow the configured tables. A publication the user created is only
// checked, never altered (README "Bad input and faults").
type PublicationRecord struct {
	ID              string `dynamodbav:"id"`
	Publication     string `dynamodbav:"publication"`
	CreatedByTandem bool   `dynamodbav:"created_by_tandem"`
	Created         string `dynamodbav:"created_at"`
}

// RecordPublication notes that Tandem creates the named publication. It is written before
// the publication is created: a crash in between leaves a record of a publication that
// does not exist yet, which the next run creates.
func (s *Store) RecordPublication(ctx context.Context, name string) error {
	_, err := s.put(ctx, PublicationRecord{ID: publicationID, Publication: name, CreatedByTandem: true, Created: s.now()}, nil)
	return err
}

// Publication reads the publication record; found is false when Tandem never created one.
func (s *Store) Publication(ctx context.Context) (r PublicationRecord, found bool, err error) {
	found, err = s.get(ctx, publicationID, &r)
	return r, found, err
}

// ForgetPublication removes the record RecordPublication wrote when PostgreSQL then
// refused to create the publication: a publication its owner creates afterwards is the
// user's, used as it is and never altered or dropped by Tandem.
func (s *Store) ForgetPublication(ctx context.Context) error {
	return s.delete(ctx, publicationID)
}

package target

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/fault"
	"tandem/shared/schema"
)

// CheckKeySchema compares the key schema of t's target table, if it exists, with the one
// t's item key needs. A target created for another key (by hand, or for another table)
// would refuse every write, or worse, accept writes under a different key; plan and
// tandem check refuse it before anything is written. exists reports whether the target
// table exists.
func CheckKeySchema(ctx context.Context, db *dynamodb.Client, t *schema.Table) (exists bool, err error) {
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &t.Target})
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("dynamodb: describing target table %s of %s: %w", t.Target, t.Source(), err)
	}
	attrTypes := map[string]types.ScalarAttributeType{}
	for _, a := range out.Table.AttributeDefinitions {
		attrTypes[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	var have []string
	for _, k := range out.Table.KeySchema {
		name := aws.ToString(k.AttributeName)
		have = append(have, keyText(name, attrTypes[name], k.KeyType))
	}
	var want []string
	for _, k := range t.KeySchema() {
		want = append(want, keyText(k.Name, k.Type, k.Kind))
	}
	if strings.Join(have, ", ") == strings.Join(want, ", ") {
		return true, nil
	}
	return true, fault.Fatalf("table %s: its target table %s exists with key schema (%s), but the item key (%s) needs (%s): "+
		"delete %s, or configure another target for it (tables[].target), or key_columns matching that key schema",
		t.Source(), t.Target, strings.Join(have, ", "), strings.Join(keyColumns(t), ", "), strings.Join(want, ", "), t.Target)
}

// CheckTarget is CheckKeySchema for a plan that creates missing targets only when
// create is true (the configuration's create_tables): without it, a missing target is
// refused, naming the table, the target and its key schema, before anything is written,
// rather than failing the snapshot's first write.
func CheckTarget(ctx context.Context, db *dynamodb.Client, t *schema.Table, create bool) (exists bool, err error) {
	exists, err = CheckKeySchema(ctx, db, t)
	if err != nil || exists || create {
		return exists, err
	}
	var want []string
	for _, k := range t.KeySchema() {
		want = append(want, keyText(k.Name, k.Type, k.Kind))
	}
	return false, fault.Fatalf("table %s: its target table %s does not exist, and create_tables is false, so Tandem does not create it: "+
		"create %s with key schema (%s), or set create_tables to true", t.Source(), t.Target, t.Target, strings.Join(want, ", "))
}

func keyText(name string, typ types.ScalarAttributeType, kind types.KeyType) string {
	return fmt.Sprintf("%s %s %s", name, typ, kind)
}

func keyColumns(t *schema.Table) []string {
	names := make([]string, len(t.Key))
	for i, ci := range t.Key {
		names[i] = t.Columns[ci].Name
	}
	return names
}

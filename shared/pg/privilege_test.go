package pg

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"tandem/shared/fault"
)

// TestPrivilegeError: insufficient privilege (42501) on publication DDL is fatal, naming
// the publication and the fix, with PostgreSQL's message kept; other errors are left as
// they are (a lost connection stays transient).
func TestPrivilegeError(t *testing.T) {
	denied := fmt.Errorf("postgres: creating publication tandem (CREATE PUBLICATION ...): %w",
		&pgconn.PgError{Severity: "ERROR", Code: "42501", Message: "must be owner of table items"})
	if fault.Classify(denied) == fault.Fatal {
		t.Fatalf("precondition: a bare 42501 is classified fatal already")
	}
	err := privilegeError(denied, "tandem")
	if c := fault.Classify(err); c != fault.Fatal {
		t.Errorf("42501 on publication DDL is %s, want fatal", c)
	}
	for _, want := range []string{"must be owner of table items", "publication tandem", "tables' owner", "retrying cannot help"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	lost := fmt.Errorf("postgres: creating publication tandem: %w", &pgconn.PgError{Code: "08006"})
	if got := privilegeError(lost, "tandem"); !errors.Is(got, lost) || fault.Classify(got) != fault.Transient {
		t.Errorf("a lost connection became %v (%s)", got, fault.Classify(got))
	}
}

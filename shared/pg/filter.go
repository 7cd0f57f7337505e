package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"tandem/shared/schema"
)

// CheckFilter validates a filtered re-snapshot's filter for t before any chunk runs it: a
// single boolean SQL expression on the table's columns. The filter becomes part of every
// chunk query's WHERE, in parentheses, so it is refused when it could end or escape
// them: a semicolon, a comment, a dollar sign (dollar quoting, parameters) or unbalanced
// parentheses outside string literals and quoted identifiers. PostgreSQL then plans
// `SELECT 1 FROM t WHERE (filter) LIMIT 0` in a read-only transaction, which checks the
// columns, the types and that the expression is boolean; its error names the table.
func CheckFilter(ctx context.Context, pool interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, t *schema.Table, filter string) error {
	if err := lexFilter(filter); err != nil {
		return Misconfiguredf("--where %q on %s: %v", filter, t.Source(), err)
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres: checking the filter on %s: %w", t.Source(), err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, "SELECT 1 FROM "+fromTable(t)+" WHERE ("+filter+") LIMIT 0")
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		return Misconfiguredf("--where %q on %s: PostgreSQL refuses it: %v", filter, t.Source(), err)
	}
	return nil
}

// lexFilter refuses what could end the filter's parentheses or the query: it follows
// SQL's string literals ('...', E'...' with backslash escapes) and quoted identifiers.
func lexFilter(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("the filter is empty")
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			escapes := i > 0 && (s[i-1] == 'E' || s[i-1] == 'e')
			j := i + 1
			for ; j < len(s); j++ {
				if escapes && s[j] == '\\' {
					j++
					continue
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			if j >= len(s) {
				return errors.New("unterminated string literal")
			}
			i = j
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return errors.New("unterminated quoted identifier")
			}
			i += j + 1
		case c == ';':
			return errors.New("a semicolon is not allowed: the filter is one boolean expression")
		case c == '-' && i+1 < len(s) && s[i+1] == '-', c == '/' && i+1 < len(s) && s[i+1] == '*':
			return errors.New("comments are not allowed")
		case c == '$':
			return errors.New("'$' (dollar quoting, parameters) is not allowed")
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return errors.New("unbalanced parentheses")
			}
		}
	}
	if depth != 0 {
		return errors.New("unbalanced parentheses")
	}
	return nil
}

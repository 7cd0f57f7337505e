// Package schema describes a replicated table and turns its rows, given as PostgreSQL
// text values, into DynamoDB items and keys. Snapshot and stream both go through here,
// so a row maps to the same item whichever path wrote it.
package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/fault"
	"tandem/shared/ident"
	"tandem/shared/limits"
	"tandem/shared/mapping"
	"tandem/shared/precedence"
)

// AttrSortKey is the range key of tables whose key has more than two columns: DynamoDB
// keys have at most two attributes, so the second and later key columns are combined.
const AttrSortKey = "__sk"

// Error says that a table cannot be replicated as it is: retrying does not help, the
// table or the configuration must change. It is classified fault.Fatal for that table.
type Error = fault.FatalError

func errorf(format string, args ...any) error { return fault.Fatalf(format, args...) }

// poison is a row that cannot be an item: the error names the table, the row's key and
// the column (fault.Poison: the row is dead-lettered, the rest goes on).
func (t *Table) poison(values [][]byte, column string, err error) error {
	return &fault.PoisonError{Table: t.Source(), Key: t.KeyString(values), Column: column, Reason: err.Error(), Err: err}
}

// Column is one column of a source table.
type Column struct {
	Name string
	Type *mapping.Type
	// SQLType is format_type() of the column type, used to cast key values given as text.
	SQLType string
}

// Table is a source table and where it goes.
type Table struct {
	Schema, Name string
	// OID is the relation's oid (pgoutput's RelationID).
	OID uint32
	// Columns in attnum order, dropped columns excluded.
	Columns []Column
	// Key holds indexes into Columns of the item key, in key order.
	Key []int
	// Target is the DynamoDB table name.
	Target string
	// ReplicaIdentity is pg_class.relreplident: 'd' default, 'f' full, 'i' index, 'n' nothing.
	ReplicaIdentity byte
	// Identity holds indexes into Columns of the replica identity's columns, what the WAL
	// carries of a row's old version on DELETE and key UPDATE (every column for FULL).
	Identity []int
	// Partitioned is a partitioned table (relkind 'p'): its rows are those of its partitions.
	Partitioned bool
	// EstimatedRows is pg_class.reltuples (or -1 when never analysed).
	EstimatedRows int64
}

// Ident is the table's identity, (schema, name).
func (t *Table) Ident() ident.Table { return ident.Table{Schema: t.Schema, Name: t.Name} }

// Source is the canonical text of the table's identity (ident.Table.String), its id in
// the control table, logs and dead letters.
func (t *Table) Source() string { return t.Ident().String() }

// Shape lists the columns as "name:type-oid", what a schema change alters (the name may
// itself hold a ":"; the oid follows the last one).
func (t *Table) Shape() []string {
	shape := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		shape[i] = fmt.Sprintf("%s:%d", c.Name, c.Type.OID)
	}
	return shape
}

// Column returns the index of the named column, or -1.
func (t *Table) Column(name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// KeyAttribute is one attribute of the DynamoDB key schema.
type KeyAttribute struct {
	Name string
	Type types.ScalarAttributeType
	Kind types.KeyType
}

// KeySchema derives the DynamoDB key schema from the item key columns: the first column
// is the partition key, the second the sort key; with more columns the sort key is
// AttrSortKey. Validate first: it reports columns that cannot be keys.
func (t *Table) KeySchema() []KeyAttribute {
	attrs := make([]KeyAttribute, 0, 2)
	for i, ci := range t.Key {
		c := t.Columns[ci]
		kt, _ := mapping.KeyType(c.Type)
		switch {
		case i == 0:
			attrs = append(attrs, KeyAttribute{c.Name, kt, types.KeyTypeHash})
		case len(t.Key) == 2:
			attrs = append(attrs, KeyAttribute{c.Name, kt, types.KeyTypeRange})
		case i == 1:
			attrs = append(attrs, KeyAttribute{AttrSortKey, types.ScalarAttributeTypeS, types.KeyTypeRange})
		}
	}
	return attrs
}

// Validate reports why the table cannot be replicated, naming the table and column.
func (t *Table) Validate() error {
	if t.Partitioned {
		// Published as itself only with publish_via_partition_root = true, where TRUNCATE of
		// one partition, ATTACH and DETACH PARTITION are not in the stream at all: its
		// target would keep rows that are gone.
		return errorf("table %s is partitioned and published through its root (publish_via_partition_root = true), which hides TRUNCATE of a partition, ATTACH and DETACH PARTITION from the replication stream: "+
			"ALTER PUBLICATION ... SET (publish_via_partition_root = false) and Tandem replicates each partition into its own target", t.Source())
	}
	if len(t.Key) == 0 {
		return errorf("table %s has no primary key: add one, or configure key_columns for it (with REPLICA IDENTITY FULL or USING INDEX on those columns)", t.Source())
	}
	seen := make(map[string]bool, len(t.Columns))
	for _, c := range t.Columns {
		// PostgreSQL's catalog cannot hold these, but a SQL_ASCII database's names need not
		// be UTF-8, and the stream's Relation message is only as good as its decoding.
		if c.Name == "" || !utf8.ValidString(c.Name) {
			return errorf("table %s: column name %q is empty or not UTF-8, which a DynamoDB attribute name must be: rename the column", t.Source(), c.Name)
		}
		if seen[c.Name] {
			return errorf("table %s: two columns are named %q", t.Source(), c.Name)
		}
		seen[c.Name] = true
		if precedence.Reserved(c.Name) {
			return errorf("table %s: column %q uses the reserved prefix \"__\" of Tandem's metadata attributes (__lsn, __src, __deleted, ...): rename the column", t.Source(), c.Name)
		}
	}
	for _, ci := range t.Key {
		c := t.Columns[ci]
		if _, err := mapping.KeyType(c.Type); err != nil {
			return errorf("table %s: key column %q: %v", t.Source(), c.Name, err)
		}
	}
	return t.identityCoversKey()
}

// identityCoversKey requires the item key within the replica identity: a DELETE, and an
// UPDATE that changes the key, carry only the identity's columns of the old row, so a key
// column outside it would leave the old item behind (or fail to name it).
func (t *Table) identityCoversKey() error {
	if t.ReplicaIdentity == 'f' {
		return nil
	}
	in := map[int]bool{}
	for _, ci := range t.Identity {
		in[ci] = true
	}
	var missing []string
	for _, ci := range t.Key {
		if !in[ci] {
			missing = append(missing, t.Columns[ci].Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var ident []string
	for _, ci := range t.Identity {
		ident = append(ident, t.Columns[ci].Name)
	}
	fix := "ALTER TABLE " + t.Source() + " REPLICA IDENTITY FULL"
	var why string
	switch {
	case t.ReplicaIdentity == 'n':
		why = "has REPLICA IDENTITY NOTHING"
	case t.ReplicaIdentity == 'd' && len(t.Identity) == 0:
		why = "has REPLICA IDENTITY DEFAULT but no primary key that can be one (a DEFERRABLE primary key cannot)"
	case t.ReplicaIdentity == 'd':
		why = "has REPLICA IDENTITY DEFAULT, its primary key (" + strings.Join(ident, ", ") + ")"
		fix += ", or configure key_columns within the primary key"
	default:
		why = "has REPLICA IDENTITY USING INDEX on (" + strings.Join(ident, ", ") + ")"
		fix += `, or configure "key_columns": ["` + strings.Join(ident, `", "`) + `"] for it, or ALTER TABLE ` + t.Source() + " REPLICA IDENTITY DEFAULT"
	}
	return errorf("table %s %s, which does not cover item key column(s) %s: deletes and key changes would not name the old item, leaving it stale. Fix: %s",
		t.Source(), why, strings.Join(missing, ", "), fix)
}

// Item maps a full row: values[i] is the text of Columns[i], nil for SQL NULL (attribute
// absent).
func (t *Table) Item(values [][]byte) (map[string]types.AttributeValue, error) {
	item := make(map[string]types.AttributeValue, len(values)+4)
	for i, v := range values {
		if v == nil {
			continue
		}
		av, err := mapping.Value(t.Columns[i].Type, v)
		if err != nil {
			return nil, t.poison(values, t.Columns[i].Name, err)
		}
		item[t.Columns[i].Name] = av
	}
	key, err := t.ItemKey(values)
	if err != nil {
		return nil, err
	}
	for k, v := range key {
		item[k] = v
	}
	return item, nil
}

// ItemKey maps the key of a row; values is indexed like Columns (only key columns are read).
// A key DynamoDB cannot store (NULL, empty, over the key size limits) is a poison error
// naming the table, the key and the column.
func (t *Table) ItemKey(values [][]byte) (map[string]types.AttributeValue, error) {
	key := make(map[string]types.AttributeValue, 2)
	var rest []string
	for i, ci := range t.Key {
		c := t.Columns[ci]
		v := values[ci]
		if v == nil {
			return nil, t.poison(values, c.Name, errors.New("the key column is NULL"))
		}
		if i >= 1 && len(t.Key) > 2 {
			// The text goes into __sk as it is, but it must be a value of its type, and
			// UTF-8: json.Marshal replaces other bytes with U+FFFD, and two keys would
			// share one item.
			_, err := mapping.Value(c.Type, v)
			if err == nil && !utf8.Valid(v) {
				err = fmt.Errorf("the value is not UTF-8 text, which the combined sort key %s cannot hold", AttrSortKey)
			}
			if err != nil {
				return nil, t.poison(values, c.Name, err)
			}
			rest = append(rest, string(v))
			continue
		}
		av, err := mapping.KeyValue(c.Type, v)
		if err == nil {
			err = limits.CheckKey(av, i == 1)
		}
		if err != nil {
			return nil, t.poison(values, c.Name, err)
		}
		key[c.Name] = av
	}
	if rest != nil {
		b, _ := json.Marshal(rest)
		sk := &types.AttributeValueMemberS{Value: string(b)}
		if err := limits.CheckKey(sk, true); err != nil {
			return nil, t.poison(values, AttrSortKey, fmt.Errorf("key columns 2 to %d combined: %w", len(t.Key), err))
		}
		key[AttrSortKey] = sk
	}
	return key, nil
}

// KeyID identifies the item of a mapped key (from ItemKey), with numbers compared by
// value as DynamoDB compares them ("1" and "1.0" are one item). Each attribute is
// length-prefixed: a B key may hold any byte, so no separator could tell two keys apart.
func (t *Table) KeyID(key map[string]types.AttributeValue) string {
	var b strings.Builder
	for _, k := range t.KeySchema() {
		var part string
		switch v := key[k.Name].(type) {
		case *types.AttributeValueMemberN:
			if r, ok := new(big.Rat).SetString(v.Value); ok {
				part = "N" + r.RatString()
			} else {
				part = "N" + v.Value
			}
		case *types.AttributeValueMemberS:
			part = "S" + v.Value
		case *types.AttributeValueMemberB:
			part = "B" + string(v.Value)
		}
		b.WriteString(strconv.Itoa(len(part)))
		b.WriteByte(':')
		b.WriteString(part)
	}
	return b.String()
}

// KeyString renders a key for logs, errors and dead letters: "id=7" or "a=1,b=x".
func (t *Table) KeyString(values [][]byte) string {
	parts := make([]string, len(t.Key))
	for i, ci := range t.Key {
		if values[ci] == nil {
			parts[i] = t.Columns[ci].Name + "=NULL"
		} else {
			parts[i] = t.Columns[ci].Name + "=" + string(values[ci])
		}
	}
	return strings.Join(parts, ",")
}

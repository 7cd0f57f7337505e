// Package precedence is README "The contract" in code: which write may replace which item.
// Every write Tandem makes to a target table carries metadata saying who wrote it and at
// which WAL position, and is guarded by one of the conditions below, so the order in
// which snapshot and stream writes reach DynamoDB cannot change the final result.
package precedence

import (
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"

	"tandem/shared/ddb"
)

// Reserved metadata attributes (README "Items in DynamoDB"). A source column with one of these names is
// rejected by Reserved.
const (
	AttrLSN     = "__lsn"     // N: commit LSN of the change (stream) or LSN read with the chunk (snapshot)
	AttrSeq     = "__seq"     // N: order of the change inside its transaction (stream only)
	AttrSrc     = "__src"     // S: SrcSnapshot or SrcStream
	AttrEpoch   = "__epoch"   // N: the table's snapshot epoch (snapshot only)
	AttrDeleted = "__deleted" // BOOL true: tombstone
	AttrExpires = "__expires" // N: TTL epoch seconds, tombstones only

	SrcSnapshot = "snapshot"
	SrcStream   = "stream"
)

// Reserved reports whether a column name collides with Tandem's metadata namespace.
func Reserved(column string) bool { return len(column) >= 2 && column[:2] == "__" }

// Position orders stream changes: the commit LSN of the transaction, then the change's
// index inside it. Commit order is the order PostgreSQL applied the changes in.
type Position struct {
	LSN uint64
	Seq uint32
}

// Less reports whether p happened before q.
func (p Position) Less(q Position) bool {
	return p.LSN < q.LSN || (p.LSN == q.LSN && p.Seq < q.Seq)
}

// String is the LSN in PostgreSQL's form, as everywhere in Tandem, then the index:
// "0/1D84268#3".
func (p Position) String() string { return fmt.Sprintf("%s#%d", pglogrepl.LSN(p.LSN), p.Seq) }

// Read identifies the chunk read a snapshot row comes from.
type Read struct {
	// LSN is pg_current_wal_lsn() read inside the chunk's transaction.
	LSN uint64
	// Epoch is the table's snapshot epoch: a re-planned snapshot has a higher one, and a
	// copier fenced out of its epoch must not overwrite the rows of its successor.
	Epoch int64
	// Floor is set for a snapshot taken because the table's shape changed (README "Bad input and faults"): stream
	// items committed before it describe the old shape. Zero otherwise.
	Floor uint64
}

// Snapshot returns the guard of a snapshot write of a row read by r: it lands only where
// no stream write ever landed (README "The contract": a snapshot never replaces a live row or tombstone of
// the stream), and over a snapshot row only if that row is from an older epoch or an
// earlier read. The one exception is a snapshot after a schema change, whose reads all
// come after r.Floor: it replaces stream items written in the old shape.
func Snapshot(r Read) expression.ConditionBuilder {
	olderSnapshot := ddb.Name(AttrSrc).Equal(expression.Value(SrcSnapshot)).And(
		expression.Or(
			expression.AttributeNotExists(ddb.Name(AttrEpoch)),
			ddb.Name(AttrEpoch).LessThan(expression.Value(r.Epoch)),
			ddb.Name(AttrEpoch).Equal(expression.Value(r.Epoch)).
				And(ddb.Name(AttrLSN).LessThanEqual(expression.Value(r.LSN)))))
	cond := expression.AttributeNotExists(ddb.Name(AttrSrc)).Or(olderSnapshot)
	if r.Floor > 0 {
		cond = cond.Or(ddb.Name(AttrSrc).Equal(expression.Value(SrcStream)).
			And(ddb.Name(AttrLSN).LessThan(expression.Value(r.Floor))))
	}
	return cond
}

// Stream returns the guard of a stream write (row, merge or tombstone) of the change at p:
// it always replaces a snapshot row and never a stream write of a later position, so a
// replay of the WAL after a crash is harmless.
func Stream(p Position) expression.ConditionBuilder {
	return expression.AttributeNotExists(ddb.Name(AttrSrc)).Or(
		ddb.Name(AttrSrc).Equal(expression.Value(SrcSnapshot)),
		ddb.Name(AttrLSN).LessThan(expression.Value(p.LSN)),
		ddb.Name(AttrLSN).Equal(expression.Value(p.LSN)).
			And(ddb.Name(AttrSeq).LessThan(expression.Value(p.Seq))))
}

// The guards of every snapshot put, stream put and tombstone, built once and filled in
// per write (ddb.Template): they differ only in their numbers.
var (
	streamGuard        = ddb.MustTemplate(expression.NewBuilder().WithCondition(Stream(Position{LSN: ddb.Param(0), Seq: uint32(ddb.Param(1))})), 2)
	snapshotGuard      = ddb.MustTemplate(expression.NewBuilder().WithCondition(Snapshot(Read{LSN: ddb.Param(0), Epoch: int64(ddb.Param(1))})), 2)
	snapshotFloorGuard = ddb.MustTemplate(expression.NewBuilder().WithCondition(Snapshot(Read{LSN: ddb.Param(0), Epoch: int64(ddb.Param(1)), Floor: ddb.Param(2)})), 3)
)

// StreamGuard is Stream(p), built.
func StreamGuard(p Position) ddb.Expression { return streamGuard.Fill(p.LSN, uint64(p.Seq)) }

// SnapshotGuard is Snapshot(r), built.
func SnapshotGuard(r Read) ddb.Expression {
	if r.Floor > 0 {
		return snapshotFloorGuard.Fill(r.LSN, uint64(r.Epoch), r.Floor)
	}
	return snapshotGuard.Fill(r.LSN, uint64(r.Epoch))
}

// Merge guards a partial update (an UPDATE whose unchanged TOAST values were not sent,
// README "The contract"): like Stream, but only onto an existing live item holding the values the change
// left out, in the table's current shape (written at or after floor, the last schema
// change; 0 when there was none). When it fails, the caller tells "lost" from "nothing
// current to merge into" and then writes the full row.
func Merge(p Position, floor uint64) expression.ConditionBuilder {
	cond := expression.AttributeExists(ddb.Name(AttrSrc)).
		And(expression.AttributeNotExists(ddb.Name(AttrDeleted))).
		And(Stream(p))
	if floor > 0 {
		cond = cond.And(ddb.Name(AttrLSN).GreaterThanEqual(expression.Value(floor)))
	}
	return cond
}

// Newer reports whether item was written by the stream at or after p: a change at p has
// lost to it. This is Stream's rule read on an item in hand.
func Newer(item map[string]types.AttributeValue, p Position) bool {
	pos, src, ok := ItemPosition(item)
	return ok && src == SrcStream && !pos.Less(p)
}

// CanMerge is Merge's rule, less the position part (Newer), read on an item in hand: a
// live item, written at or after the table's last schema change floor.
func CanMerge(item map[string]types.AttributeValue, floor uint64) bool {
	pos, _, ok := ItemPosition(item)
	return ok && !IsTombstone(item) && (floor == 0 || pos.LSN >= floor)
}

// Unchanged guards a write computed from item (a read-merge-put): it lands only if the
// item still carries the metadata it was read with, i.e. nothing wrote it in between.
func Unchanged(item map[string]types.AttributeValue) expression.ConditionBuilder {
	same := func(name string) expression.ConditionBuilder {
		if v, ok := item[name]; ok {
			return ddb.Name(name).Equal(expression.Value(v))
		}
		return expression.AttributeNotExists(ddb.Name(name))
	}
	return same(AttrSrc).And(same(AttrLSN), same(AttrSeq), same(AttrEpoch))
}

// StaleSnapshot matches snapshot rows read before a fence LSN (a TRUNCATE, README "Bad input and faults"): such a
// row may describe data the fence removed, so it is swept. A chunk reads its LSN inside
// its transaction, whose lock a TRUNCATE waits for, so a chunk read before a TRUNCATE
// committed at fenceLSN carries an LSN at or before it, and one read after it a later one.
func StaleSnapshot(fenceLSN uint64) expression.ConditionBuilder {
	return ddb.Name(AttrSrc).Equal(expression.Value(SrcSnapshot)).
		And(ddb.Name(AttrLSN).LessThanEqual(expression.Value(fenceLSN)))
}

// WrittenBefore matches items written before the change at p: stream writes of an earlier
// position and snapshot rows read before it (StaleSnapshot). A TRUNCATE at p tombstones
// exactly these, so it may run alongside later writes of either kind without touching them.
func WrittenBefore(p Position) expression.ConditionBuilder {
	earlierStream := ddb.Name(AttrSrc).Equal(expression.Value(SrcStream)).And(
		ddb.Name(AttrLSN).LessThan(expression.Value(p.LSN)).Or(
			ddb.Name(AttrLSN).Equal(expression.Value(p.LSN)).And(ddb.Name(AttrSeq).LessThan(expression.Value(p.Seq)))))
	return StaleSnapshot(p.LSN).Or(earlierStream)
}

// Orphan matches, once the snapshot of epoch e (floored at floor) is done, the items it
// should have rewritten but did not: rows that no longer exist. Every existing row was
// rewritten by that snapshot or by the stream after floor, so what is left is a row
// read by an older epoch, or written by the stream before floor, and since deleted.
func Orphan(e int64, floor uint64) expression.ConditionBuilder {
	cond := ddb.Name(AttrSrc).Equal(expression.Value(SrcSnapshot)).And(
		expression.AttributeNotExists(ddb.Name(AttrEpoch)).Or(
			ddb.Name(AttrEpoch).LessThan(expression.Value(e))))
	if floor > 0 {
		cond = cond.Or(ddb.Name(AttrSrc).Equal(expression.Value(SrcStream)).
			And(ddb.Name(AttrLSN).LessThan(expression.Value(floor))))
	}
	return cond
}

// TombstoneAtOrBefore matches tombstones committed at or before lsn: the candidates of a
// tombstone sweep, each then removed under SweepableTombstone.
func TombstoneAtOrBefore(lsn uint64) expression.ConditionBuilder {
	return ddb.Name(AttrDeleted).Equal(expression.Value(true)).
		And(ddb.Name(AttrLSN).LessThanEqual(expression.Value(lsn)))
}

// SweepableTombstone matches exactly the tombstone at p that a sweeper read, so a later
// write to the key is never removed. The caller sweeps only tombstones committed at or
// before a point no running snapshot had read past (README "The contract").
func SweepableTombstone(p Position) expression.ConditionBuilder {
	return ddb.Name(AttrDeleted).Equal(expression.Value(true)).
		And(ddb.Name(AttrLSN).Equal(expression.Value(p.LSN))).
		And(ddb.Name(AttrSeq).Equal(expression.Value(p.Seq)))
}

// SnapshotItem adds the snapshot metadata to a mapped row.
func SnapshotItem(row map[string]types.AttributeValue, r Read) map[string]types.AttributeValue {
	row[AttrLSN] = number(r.LSN)
	row[AttrEpoch] = number(uint64(r.Epoch))
	row[AttrSrc] = &types.AttributeValueMemberS{Value: SrcSnapshot}
	return row
}

// StreamItem adds the stream metadata to a mapped row. PutItem replaces the whole item,
// so snapshot-only metadata does not survive a stream write.
func StreamItem(row map[string]types.AttributeValue, p Position) map[string]types.AttributeValue {
	row[AttrLSN] = number(p.LSN)
	row[AttrSeq] = number(uint64(p.Seq))
	row[AttrSrc] = &types.AttributeValueMemberS{Value: SrcStream}
	return row
}

// Tombstone builds the soft delete of key at p (README "The contract"), expiring at expiresEpoch as a backstop.
func Tombstone(key map[string]types.AttributeValue, p Position, expiresEpoch int64) map[string]types.AttributeValue {
	item := make(map[string]types.AttributeValue, len(key)+5)
	for k, v := range key {
		item[k] = v
	}
	item[AttrDeleted] = &types.AttributeValueMemberBOOL{Value: true}
	item[AttrExpires] = number(uint64(expiresEpoch))
	return StreamItem(item, p)
}

// ItemPosition reads the stream position and source an item carries.
func ItemPosition(item map[string]types.AttributeValue) (p Position, src string, ok bool) {
	s, ok := item[AttrSrc].(*types.AttributeValueMemberS)
	if !ok {
		return Position{}, "", false
	}
	if n, isN := item[AttrLSN].(*types.AttributeValueMemberN); isN {
		p.LSN, _ = strconv.ParseUint(n.Value, 10, 64)
	}
	if n, isN := item[AttrSeq].(*types.AttributeValueMemberN); isN {
		seq, _ := strconv.ParseUint(n.Value, 10, 32)
		p.Seq = uint32(seq)
	}
	return p, s.Value, true
}

// IsTombstone reports whether an item is a soft delete.
func IsTombstone(item map[string]types.AttributeValue) bool {
	b, ok := item[AttrDeleted].(*types.AttributeValueMemberBOOL)
	return ok && b.Value
}

func number(n uint64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(n, 10)}
}

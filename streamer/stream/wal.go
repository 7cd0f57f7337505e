package stream

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// parseWAL decodes one pgoutput message (protocol version 1). pglogrepl's decoders index
// their input without bounds checks: a truncated or inconsistent message would panic the
// streamer, and a tuple's column length or a TRUNCATE's relation count would be allocated
// as sent. So the message's framing is checked here first, and an error names the message
// and the field that does not fit.
func parseWAL(data []byte) (pglogrepl.Message, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("decoding pgoutput message: empty message")
	}
	kind := pglogrepl.MessageType(data[0])
	if err := checkFrame(kind, data[1:]); err != nil {
		return nil, fmt.Errorf("decoding pgoutput %s message: %w", kind, err)
	}
	m, err := pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("decoding pgoutput %s message (type byte %q): %w", kind, data[0], err)
	}
	return m, nil
}

// frame reads a message's fields, remembering the first that does not fit.
type frame struct {
	b   []byte
	err error
}

func (f *frame) take(n uint64, field string) []byte {
	if f.err != nil {
		return nil
	}
	if n > uint64(len(f.b)) {
		f.err = fmt.Errorf("truncated at %s: %d bytes needed, %d left", field, n, len(f.b))
		return nil
	}
	v := f.b[:n]
	f.b = f.b[n:]
	return v
}

func (f *frame) u8(field string) byte {
	if v := f.take(1, field); v != nil {
		return v[0]
	}
	return 0
}

func (f *frame) u16(field string) uint16 {
	if v := f.take(2, field); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (f *frame) u32(field string) uint32 {
	if v := f.take(4, field); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (f *frame) str(field string) {
	if f.err != nil {
		return
	}
	for i, c := range f.b {
		if c == 0 {
			f.b = f.b[i+1:]
			return
		}
	}
	f.err = fmt.Errorf("%s is not NUL-terminated", field)
}

func (f *frame) tuple(field string) {
	n := f.u16(field + " column count")
	for i := 0; i < int(n) && f.err == nil; i++ {
		switch kind := f.u8(fmt.Sprintf("%s column %d", field, i+1)); kind {
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			name := fmt.Sprintf("%s column %d", field, i+1)
			f.take(uint64(f.u32(name+" length")), name+" value")
		case pglogrepl.TupleDataTypeNull, pglogrepl.TupleDataTypeToast:
		default:
			if f.err == nil {
				f.err = fmt.Errorf("%s column %d has kind %q, not n, u, t or b", field, i+1, kind)
			}
		}
	}
}

// checkFrame checks that the body of a message of the given kind holds its fields; kinds
// Tandem does not decode are left to pglogrepl.Parse.
func checkFrame(kind pglogrepl.MessageType, body []byte) error {
	f := &frame{b: body}
	switch kind {
	case pglogrepl.MessageTypeBegin:
		f.take(20, "the final LSN, commit time and xid")
	case pglogrepl.MessageTypeCommit:
		f.take(25, "the flags, LSNs and commit time")
	case pglogrepl.MessageTypeOrigin:
		f.take(8, "the origin LSN")
		f.str("the origin name")
	case pglogrepl.MessageTypeRelation:
		f.u32("the relation id")
		f.str("the namespace")
		f.str("the relation name")
		f.u8("the replica identity")
		n := f.u16("the column count")
		for i := 0; i < int(n) && f.err == nil; i++ {
			col := fmt.Sprintf("column %d", i+1)
			f.u8(col + " flags")
			f.str(col + " name")
			f.take(8, col+" type and modifier")
		}
	case pglogrepl.MessageTypeType:
		f.u32("the type id")
		f.str("the namespace")
		f.str("the type name")
	case pglogrepl.MessageTypeInsert:
		f.u32("the relation id")
		if k := f.u8("the tuple kind"); f.err == nil && k != 'N' {
			return fmt.Errorf("tuple kind %q, not N", k)
		}
		f.tuple("the new tuple")
	case pglogrepl.MessageTypeUpdate:
		f.u32("the relation id")
		k := f.u8("the tuple kind")
		if k == 'K' || k == 'O' {
			f.tuple("the old tuple")
			k = f.u8("the new tuple kind")
		}
		if f.err == nil && k != 'N' {
			return fmt.Errorf("tuple kind %q, not K, O or N", k)
		}
		f.tuple("the new tuple")
	case pglogrepl.MessageTypeDelete:
		f.u32("the relation id")
		if k := f.u8("the tuple kind"); f.err == nil && k != 'K' && k != 'O' {
			return fmt.Errorf("tuple kind %q, not K or O", k)
		}
		f.tuple("the old tuple")
	case pglogrepl.MessageTypeTruncate:
		n := f.u32("the relation count")
		f.u8("the options")
		f.take(4*uint64(n), "the relation ids")
	case pglogrepl.MessageTypeMessage:
		f.u8("the flags")
		f.take(8, "the LSN")
		f.str("the prefix")
		f.take(uint64(f.u32("the content length")), "the content")
	}
	return f.err
}

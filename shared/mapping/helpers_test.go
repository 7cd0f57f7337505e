package mapping

import (
	"encoding/hex"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"
)

// show renders an attribute compactly and deterministically so test tables
// can state expectations as strings: S"x" N"1" B:0aff BOOL:true NULL L[..] M{..}.
func show(av types.AttributeValue) string {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return "S" + strconv.Quote(v.Value)
	case *types.AttributeValueMemberN:
		return "N" + strconv.Quote(v.Value)
	case *types.AttributeValueMemberB:
		return "B:" + hex.EncodeToString(v.Value)
	case *types.AttributeValueMemberBOOL:
		return "BOOL:" + strconv.FormatBool(v.Value)
	case *types.AttributeValueMemberNULL:
		if v.Value {
			return "NULL"
		}
		return "NULL:false"
	case *types.AttributeValueMemberL:
		parts := make([]string, len(v.Value))
		for i, e := range v.Value {
			parts[i] = show(e)
		}
		return "L[" + strings.Join(parts, " ") + "]"
	case *types.AttributeValueMemberM:
		keys := make([]string, 0, len(v.Value))
		for k := range v.Value {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = strconv.Quote(k) + ":" + show(v.Value[k])
		}
		return "M{" + strings.Join(parts, " ") + "}"
	case nil:
		return "<nil>"
	}
	return "?"
}

func scalar(oid uint32, name string, cat byte) *Type {
	return &Type{OID: oid, Name: name, Category: cat, Delim: ','}
}

func arrayOf(oid uint32, name string, elem *Type) *Type {
	return &Type{OID: oid, Name: name, Category: 'A', Elem: elem, Delim: ','}
}

var (
	tInt2        = scalar(pgtype.Int2OID, "int2", 'N')
	tInt4        = scalar(pgtype.Int4OID, "int4", 'N')
	tInt8        = scalar(pgtype.Int8OID, "int8", 'N')
	tOID         = scalar(pgtype.OIDOID, "oid", 'N')
	tFloat4      = scalar(pgtype.Float4OID, "float4", 'N')
	tFloat8      = scalar(pgtype.Float8OID, "float8", 'N')
	tNumeric     = scalar(pgtype.NumericOID, "numeric", 'N')
	tMoney       = scalar(790, "money", 'N')
	tBool        = scalar(pgtype.BoolOID, "bool", 'B')
	tBytea       = scalar(pgtype.ByteaOID, "bytea", 'U')
	tJSON        = scalar(pgtype.JSONOID, "json", 'U')
	tJSONB       = scalar(pgtype.JSONBOID, "jsonb", 'U')
	tText        = scalar(pgtype.TextOID, "text", 'S')
	tVarchar     = scalar(pgtype.VarcharOID, "varchar", 'S')
	tBPChar      = scalar(pgtype.BPCharOID, "bpchar", 'S')
	tName        = scalar(pgtype.NameOID, "name", 'S')
	tUUID        = scalar(pgtype.UUIDOID, "uuid", 'U')
	tEnum        = scalar(16400, "mood", 'E')
	tCitext      = scalar(16500, "citext", 'S')
	tTimestamptz = scalar(pgtype.TimestamptzOID, "timestamptz", 'D')
	tTimestamp   = scalar(pgtype.TimestampOID, "timestamp", 'D')
	tDate        = scalar(pgtype.DateOID, "date", 'D')
	tTime        = scalar(pgtype.TimeOID, "time", 'D')
	tTimetz      = scalar(pgtype.TimetzOID, "timetz", 'D')
	tInterval    = scalar(pgtype.IntervalOID, "interval", 'T')
	tInet        = scalar(pgtype.InetOID, "inet", 'I')
	tCidr        = scalar(pgtype.CIDROID, "cidr", 'I')
	tMacaddr     = scalar(pgtype.MacaddrOID, "macaddr", 'U')
	tPoint       = scalar(pgtype.PointOID, "point", 'G')
	tBox         = &Type{OID: pgtype.BoxOID, Name: "box", Category: 'G', Delim: ';'}
	tXML         = scalar(pgtype.XMLOID, "xml", 'U')
	tTSVector    = scalar(pgtype.TSVectorOID, "tsvector", 'U')
	tBit         = scalar(pgtype.BitOID, "bit", 'V')
	tInt4range   = scalar(pgtype.Int4rangeOID, "int4range", 'R')
	tComposite   = scalar(16600, "pair", 'C')
	tInt2vector  = &Type{OID: int2vectorOID, Name: "int2vector", Category: 'A', Elem: tInt2, Delim: ','}

	tInt4Arr      = arrayOf(pgtype.Int4ArrayOID, "_int4", tInt4)
	tTextArr      = arrayOf(pgtype.TextArrayOID, "_text", tText)
	tBoolArr      = arrayOf(pgtype.BoolArrayOID, "_bool", tBool)
	tNumericArr   = arrayOf(pgtype.NumericArrayOID, "_numeric", tNumeric)
	tJSONBArr     = arrayOf(pgtype.JSONBArrayOID, "_jsonb", tJSONB)
	tByteaArr     = arrayOf(pgtype.ByteaArrayOID, "_bytea", tBytea)
	tTstzArr      = arrayOf(pgtype.TimestamptzArrayOID, "_timestamptz", tTimestamptz)
	tBoxArr       = arrayOf(pgtype.BoxArrayOID, "_box", tBox)
	tEnumArr      = arrayOf(16401, "_mood", tEnum)
	tCompositeArr = arrayOf(16601, "_pair", tComposite)
)

package mapping

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/limits"
)

// numShape is what decides whether DynamoDB can hold a number: the value is
// 0.<sig significant digits> × 10^exp.
type numShape struct {
	sig  int
	exp  int
	zero bool
}

func (s numShape) fitsN() bool {
	return s.zero || limits.FitsNumber(s.sig, s.exp)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber accepts -?digits(.digits)?([eE][+-]?digits)?, the union of what
// PostgreSQL prints for integers, numeric and floats and what JSON allows;
// anything else is not passed to DynamoDB as N.
func scanNumber(s string) (numShape, bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intLen := i - intStart
	if intLen == 0 {
		return numShape{}, false
	}
	fracStart, fracLen := i, 0
	if i < len(s) && s[i] == '.' {
		i++
		fracStart = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		fracLen = i - fracStart
		if fracLen == 0 {
			return numShape{}, false
		}
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			neg = s[i] == '-'
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			// Saturate: JSON allows exponents of any length, and anything
			// this large is out of range either way.
			if exp < 1e8 {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == start {
			return numShape{}, false
		}
		if neg {
			exp = -exp
		}
	}
	if i != len(s) {
		return numShape{}, false
	}

	n := intLen + fracLen
	digit := func(k int) byte {
		if k < intLen {
			return s[intStart+k]
		}
		return s[fracStart+k-intLen]
	}
	first := 0
	for first < n && digit(first) == '0' {
		first++
	}
	if first == n {
		return numShape{zero: true}, true
	}
	last := n - 1
	for digit(last) == '0' {
		last--
	}
	return numShape{sig: last - first + 1, exp: intLen - first + exp}, true
}

// isSpecialFloat reports the non-finite spellings PostgreSQL prints for
// float4/float8 and (since PostgreSQL 14) numeric.
func isSpecialFloat(s string) bool {
	return s == "NaN" || s == "Infinity" || s == "-Infinity"
}

// numberAttr keeps s as N when DynamoDB can store it exactly and otherwise
// falls back to S, so no value is rejected or silently rounded by DynamoDB.
func numberAttr(s string) types.AttributeValue {
	if shape, ok := scanNumber(s); ok && shape.fitsN() {
		return &types.AttributeValueMemberN{Value: s}
	}
	return &types.AttributeValueMemberS{Value: s}
}

func numberValue(t *Type, text []byte, nonFinite bool) (types.AttributeValue, error) {
	s := string(text)
	if nonFinite && isSpecialFloat(s) {
		return &types.AttributeValueMemberS{Value: s}, nil
	}
	if _, ok := scanNumber(s); !ok {
		return nil, t.errorf("invalid number %s", excerpt(text))
	}
	return numberAttr(s), nil
}

// numberSize follows the AWS sizing note: one byte per two significant
// digits plus one.
func numberSize(s string) int {
	shape, ok := scanNumber(s)
	if !ok {
		return len(s)
	}
	return (shape.sig+1)/2 + 1
}

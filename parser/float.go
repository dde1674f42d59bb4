package parser

import (
	"bytes"
	"strconv"
)

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
}

// parseFloat parses a sample value or an le bound exactly as the text format
// (and expfmt) does: strconv.ParseFloat, minus the hexadecimal ('p', 'P')
// and underscore forms, out-of-range values being errors.
//
// The common forms written by Python's repr ("1.0", "0.025",
// "8.128902e+06", "1.74262400557e+09") take a fast path: when the decimal
// mantissa fits in 53 bits and the decimal exponent is within ±22, the
// result is one correctly rounded multiplication or division of two exact
// float64 values (Clinger's fast path, the same one strconv uses first), so
// it is bit-identical to strconv's. Everything else (17-digit sums, "+Inf",
// "NaN", errors) goes to strconv. float_test.go and FuzzParseFloat check the
// equality.
func parseFloat(b []byte) (float64, bool) {
	if f, ok := fastFloat(b); ok {
		return f, true
	}
	return slowFloat(b)
}

func slowFloat(b []byte) (float64, bool) {
	if len(b) == 0 || bytes.ContainsAny(b, "pP_") {
		return 0, false
	}
	// The conversion does not allocate for short inputs: the string does
	// not escape (strconv clones it into its error value).
	f, err := strconv.ParseFloat(string(b), 64)
	return f, err == nil
}

// fastFloat handles [+-]?digits[.digits]?([eE][+-]?digits)? when the result
// is exact by Clinger's fast path; ok is false when it cannot decide.
func fastFloat(b []byte) (float64, bool) {
	i := 0
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		i = 1
	}
	var mant uint64
	nd := 0   // significant digits accumulated into mant
	exp := 0  // decimal exponent correction from digits after '.'
	seen := 0 // mantissa digits seen (including leading zeros)
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			break
		}
		seen++
		if mant == 0 && c == '0' {
			continue
		}
		if nd >= 19 {
			return 0, false
		}
		mant = mant*10 + uint64(c-'0')
		nd++
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				break
			}
			seen++
			exp--
			if mant == 0 && c == '0' {
				continue
			}
			if nd >= 19 {
				return 0, false
			}
			mant = mant*10 + uint64(c-'0')
			nd++
		}
	}
	if seen == 0 {
		return 0, false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		start := i
		e := 0
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				break
			}
			if i-start >= 4 {
				return 0, false
			}
			e = e*10 + int(c-'0')
		}
		if i == start {
			return 0, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(b) || mant > 1<<53 {
		return 0, false
	}
	f := float64(mant)
	switch {
	case mant == 0:
		// 0 with any exponent; strconv gives a signed zero.
	case exp == 0:
	case exp > 0 && exp <= 22:
		f *= pow10[exp]
	case exp < 0 && exp >= -22:
		f /= pow10[-exp]
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}

// parseTimestamp parses an optional sample timestamp the way expfmt does
// (strconv.ParseInt base 10, 64 bits).
func parseTimestamp(b []byte) bool {
	i := 0
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		i = 1
	}
	if n := len(b) - i; n > 0 && n <= 18 {
		for ; i < len(b); i++ {
			if b[i] < '0' || b[i] > '9' {
				return false
			}
		}
		return true
	}
	_, err := strconv.ParseInt(string(b), 10, 64)
	return err == nil
}

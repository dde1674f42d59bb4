package simulate

import (
	"math"
	"strconv"
)

// appendPythonRepr appends Python's repr() of v: the shortest digits that
// round-trip, in fixed notation with a trailing ".0" for integral values,
// switching to exponent notation (two-digit minimum exponent, explicit sign)
// when the decimal exponent is below -4 or at least 16. Go's 'g' format
// switches at different exponents and never writes ".0", so it cannot be
// used directly.
func appendPythonRepr(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "nan"...)
	case math.IsInf(v, 1):
		return append(dst, "inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-inf"...)
	case v == 0:
		if math.Signbit(v) {
			return append(dst, "-0.0"...)
		}
		return append(dst, "0.0"...)
	}
	// Find the decimal exponent of the shortest representation; 'e' with
	// precision -1 gives the same digits Python's repr uses.
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], v, 'e', -1, 64)
	exp := 0
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] == 'e' {
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
	}
	if exp < -4 || exp >= 16 {
		// Go's 'e' output already matches Python here: "1e-05", "1.5e+16".
		return append(dst, e...)
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
	for _, c := range dst[start:] {
		if c == '.' {
			return dst
		}
	}
	return append(dst, ".0"...)
}

// pythonRepr is appendPythonRepr returning a string.
func pythonRepr(v float64) string { return string(appendPythonRepr(nil, v)) }

// appendGoFloat appends a value as prometheus_client's floatToGoString
// writes sample values and le labels in the text format: Python's repr,
// except +Inf/-Inf/NaN, and positive numbers with more than six integer
// digits, which are moved to exponent notation with the exponent written
// as "e+0" followed by the digit count minus one — so 1048576.0 becomes
// "1.048576e+06" and 12345678901.0 becomes "1.2345678901e+010" (a real
// quirk of the client library, kept so the files look like real scrapes).
func appendGoFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, 1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	}
	start := len(dst)
	dst = appendPythonRepr(dst, v)
	if v <= 0 {
		return dst
	}
	s := dst[start:]
	dot := -1
	for i, c := range s {
		if c == '.' {
			dot = i
			break
		}
	}
	if dot <= 6 {
		return dst
	}
	// mantissa = s[0] + "." + s[1:dot] + s[dot+1:], then rstrip("0.").
	var m [40]byte
	mant := append(m[:0], s[0], '.')
	mant = append(mant, s[1:dot]...)
	mant = append(mant, s[dot+1:]...)
	for len(mant) > 0 && (mant[len(mant)-1] == '0' || mant[len(mant)-1] == '.') {
		mant = mant[:len(mant)-1]
	}
	dst = append(dst[:start], mant...)
	dst = append(dst, "e+0"...)
	return strconv.AppendInt(dst, int64(dot-1), 10)
}

// goFloat is appendGoFloat returning a string.
func goFloat(v float64) string { return string(appendGoFloat(nil, v)) }

// appendCount appends a non-negative integral count as a float sample value.
// Counts are the bulk of a scrape, so the common case skips float formatting.
func appendCount(dst []byte, n uint64) []byte {
	if n < 1000000 {
		dst = strconv.AppendUint(dst, n, 10)
		return append(dst, ".0"...)
	}
	return appendGoFloat(dst, float64(n))
}

package attribution

import "math"

// maxRoundingError is the largest error a published value may carry from
// float64 rounding, relative to the value, and absolute below 1 (1 µs for
// a value in seconds). Every published value is within it of the
// observation's true value, or withheld.
const maxRoundingError = 1e-6

// sumDeltaExact reports whether v = s1 - s0, the difference of a histogram's
// _sum before and after one observation, is that observation's value to
// within maxRoundingError. The server adds each observation to a running
// float64 sum, rounding to the sum's precision, and the subtraction
// rounds again: together at most one ulp of the larger operand. Once the
// sum is huge (a 1e308 observation, or a sum grown past ~1e10 s) that ulp
// is larger than the value itself: a later 0.5 s observation can vanish
// into the sum entirely and come out as exactly 0. Such a value is not
// known, so it is withheld (inconsistent) rather than published.
func sumDeltaExact(s0, s1, v float64) bool {
	mag := max(math.Abs(s0), math.Abs(s1))
	return ulp(mag) <= maxRoundingError*max(1, math.Abs(v))
}

// ulp is the distance from x (≥ 0) to the next float64 above it.
func ulp(x float64) float64 {
	return math.Nextafter(x, math.Inf(1)) - x
}

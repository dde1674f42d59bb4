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
func sumDeltaExact(s0, s1, v float64) bool { return withinRounding(s0, s1, v, 0) }

// withinRounding is sumDeltaExact when the snapshots at either index
// disagreed by up to spread in their sums (sameSum): the value may be off
// by that much more.
func withinRounding(s0, s1, v, spread float64) bool {
	mag := max(math.Abs(s0), math.Abs(s1))
	return ulp(mag)+spread <= maxRoundingError*max(1, math.Abs(v))
}

// sumOrderUlps is how far apart, in units of the last place, two sums of
// the same observations may come out when they were added up in a
// different order: a server with several API server processes sums their
// per-process sums at each scrape, and the simulator of one takes hidden
// observations out again, each rounding to the sum's precision (up to 16
// processes, each sum rounding by half an ulp).
const sumOrderUlps = 16

// sameSum reports whether two sums of a family at the same count differ
// by no more than the order of addition explains. Two different sets of
// observations can too, only when they are equal to that precision, which
// withinRounding then charges to the published value.
func sameSum(a, b float64) bool {
	return math.Abs(a-b) <= sumOrderUlps*ulp(max(math.Abs(a), math.Abs(b)))
}

// ulp is the distance from x (≥ 0) to the next float64 above it.
func ulp(x float64) float64 {
	return math.Nextafter(x, math.Inf(1)) - x
}

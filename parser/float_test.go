package parser

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// checkFloat asserts that parseFloat and its fast path agree bit for bit
// with the text format's float (strconv.ParseFloat without hex and
// underscores, range errors rejected).
func checkFloat(t *testing.T, s string) {
	t.Helper()
	want, wantOK := refFloat(s)
	got, ok := parseFloat([]byte(s))
	if ok != wantOK || ok && math.Float64bits(got) != math.Float64bits(want) {
		t.Fatalf("parseFloat(%q) = %v, %v; want %v, %v", s, got, ok, want, wantOK)
	}
	if f, ok := fastFloat([]byte(s)); ok && (!wantOK || math.Float64bits(f) != math.Float64bits(want)) {
		t.Fatalf("fastFloat(%q) = %v; want %v, %v", s, f, want, wantOK)
	}
}

func TestParseFloat(t *testing.T) {
	for _, s := range []string{
		// Forms seen in real scrapes.
		"0.0", "1.0", "208.0", "135001.0", "0.001", "0.025", "7680.0", "+Inf", "-Inf", "NaN",
		"8.128902e+06", "1.74262400557e+09", "1.7537953269352946e+09", "9.75010481363281e-06",
		"12786.840049982071", "2.3518979474117756e+06", "866964.5791549598", "-1.0", "439.71999999999997",
		"1.048576e+06", "4319.610000000001",
		// Edges of the fast path.
		"9007199254740992", "9007199254740993", "9007199254740992.0", "1e22", "1e23", "1e-22", "1e-23",
		"123456789012345678", "1234567890123456789", "12345678901234567890", "0.1234567890123456789",
		"4.9e-324", "5e-324", "1.7976931348623157e308", "1.8e308", "2.2250738585072014e-308",
		"-0", "-0.0", "+0", "0e9999", "0e-9999", "1e9999", "00001.5", "1.", ".5", "+.5", "-.5e1",
		"1E5", "1e+5", "1e-05", "1e00005", "1e-00005", "0e00005", "1e", "1e+", "e1", ".", "", "+", "-", "1.2.3", "1e1.5", " 1", "1 ",
		// Rejected by the text format, accepted by strconv.
		"0x1p-2", "0x1P4", "1_000", "0x_1p0",
		// strconv spellings.
		"inf", "+inf", "-infinity", "Infinity", "nan", "NAN", "infx", "0x10",
	} {
		checkFloat(t, s)
	}
}

func TestFastFloatTakesCommonForms(t *testing.T) {
	// The fast path must decide the forms that fill a scrape, or it is
	// not a fast path; 17-digit sums may go to strconv.
	for _, s := range []string{"1.0", "208.0", "0.025", "0.001", "+1.5", "8.128902e+06", "1.74262400557e+09", "9.75e-06"} {
		if _, ok := fastFloat([]byte(s)); !ok {
			t.Errorf("fastFloat(%q) deferred to strconv", s)
		}
	}
	for _, s := range []string{"12786.840049982071", "+Inf", "NaN", "1e23"} {
		if _, ok := fastFloat([]byte(s)); ok {
			t.Errorf("fastFloat(%q) decided; it cannot be exact", s)
		}
	}
}

func TestParseFloatRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 200000 {
		var s string
		switch r.IntN(4) {
		case 0: // shortest repr of a random float64 in a realistic range
			s = strconv.FormatFloat(math.Exp(r.NormFloat64()*8), 'g', -1, 64)
		case 1: // Python-style repr with exponent
			s = pyFloat(r.Float64() * math.Pow(10, float64(r.IntN(30)-10)))
		case 2: // random digit strings around the fast path's limits
			var b strings.Builder
			if r.IntN(4) == 0 {
				b.WriteByte('-')
			}
			for range 1 + r.IntN(20) {
				b.WriteByte(byte('0' + r.IntN(10)))
			}
			if r.IntN(2) == 0 {
				b.WriteByte('.')
				for range r.IntN(20) {
					b.WriteByte(byte('0' + r.IntN(10)))
				}
			}
			if r.IntN(2) == 0 {
				b.WriteString("e" + strconv.Itoa(r.IntN(60)-30))
			}
			s = b.String()
		default: // integers as counts
			s = strconv.FormatFloat(float64(r.Uint64N(1<<54)), 'f', 1, 64)
		}
		checkFloat(t, s)
	}
}

func FuzzParseFloat(f *testing.F) {
	for _, s := range []string{"1.0", "0.025", "8.128902e+06", "+Inf", "NaN", "9007199254740993", "1e-22", "0x1p2", "1_0"} {
		f.Add(s)
	}
	f.Fuzz(checkFloat)
}

func TestParseTimestamp(t *testing.T) {
	for _, s := range []string{"0", "1700000000000", "-1", "+1", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809", "123456789012345678", "", "+", "-", "1.0", "1e3", "0x10", "1_000", " 1"} {
		_, err := strconv.ParseInt(s, 10, 64)
		if got := parseTimestamp([]byte(s)); got != (err == nil) {
			t.Errorf("parseTimestamp(%q) = %v, strconv says %v", s, got, err)
		}
	}
}

func FuzzParseTimestamp(f *testing.F) {
	f.Add("1700000000000")
	f.Add("-9223372036854775809")
	f.Fuzz(func(t *testing.T, s string) {
		_, err := strconv.ParseInt(s, 10, 64)
		if got := parseTimestamp([]byte(s)); got != (err == nil) {
			t.Fatalf("parseTimestamp(%q) = %v, strconv says %v", s, got, err)
		}
	})
}

func TestPyFloat(t *testing.T) {
	// The synthetic scrape must look like prometheus_client's output.
	for v, want := range map[float64]string{
		8128902: "8.128902e+06", 1.7537953269352946e9: "1.7537953269352946e+09", 1: "1.0", 0.025: "0.025",
		9.75010481363281e-06: "9.75010481363281e-06", 866964.5791549598: "866964.5791549598",
		math.Inf(1): "+Inf", 135001: "135001.0", 1048576: "1.048576e+06",
	} {
		if got := pyFloat(v); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", v, got, want)
		}
	}
}

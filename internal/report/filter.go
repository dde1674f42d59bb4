package report

import (
	"errors"
	"fmt"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Filter selects the requests a report shows. It never changes a value:
// attribution always reads every file of the directory, because a request
// outside the selection can still pin or rule out an observation of one
// inside it.
type Filter struct {
	// Model keeps only requests attributed to this model_name. A request
	// with no attributed model (unpaired, rejected, or withheld entirely)
	// cannot be said to belong to it and is left out; Excluded.NoModel
	// counts those, so they are not silently dropped. Empty keeps all.
	Model string
	// Since (inclusive) and Until (exclusive) bound the request's start
	// time (StartTime: the time in its before file's name, UTC). Zero
	// means unbounded. A request with no file name at all (possible only
	// for some duplicates) has no start time and is left out by either.
	Since, Until time.Time
}

// Excluded counts the requests a Filter left out, by why.
type Excluded struct {
	Time    int // outside [Since, Until)
	Model   int // attributed to another model
	NoModel int // no attributed model, and Model was set
}

// Total is the number of requests left out.
func (e Excluded) Total() int { return e.Time + e.Model + e.NoModel }

type exclusion int

const (
	keep exclusion = iota
	byTime
	byModel
	byNoModel
)

func (e *Excluded) add(why exclusion) {
	switch why {
	case byTime:
		e.Time++
	case byModel:
		e.Model++
	case byNoModel:
		e.NoModel++
	}
}

func (f Filter) exclude(r *attribution.Result) exclusion {
	if !f.Since.IsZero() || !f.Until.IsZero() {
		t := StartTime(r)
		if t.IsZero() || (!f.Since.IsZero() && t.Before(f.Since)) || (!f.Until.IsZero() && !t.Before(f.Until)) {
			return byTime
		}
	}
	if f.Model != "" && r.Model != f.Model {
		if r.Model == "" {
			return byNoModel
		}
		return byModel
	}
	return keep
}

// ParseTime reads a --since/--until value: RFC 3339 (with or without
// fractional seconds, any offset) or the timestamp of snapshot names,
// YYYYMMDD_HHMMSS with an optional _micro, read as UTC like the names are.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch len(s) {
	case len("20060102_150405"):
		if t, err := time.Parse("20060102_150405", s); err == nil {
			return t, nil
		}
	case len("20060102_150405_000000"):
		// The stamp parser of snapshot names, so both agree on every value.
		if n, err := parser.ParseName("x_before_" + s + ".txt"); err == nil {
			return n.Time, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w %q: want RFC 3339 (2006-01-02T15:04:05Z) or YYYYMMDD_HHMMSS[_micro] (UTC)", errBadTime, s)
}

var errBadTime = errors.New("bad time")

package parser

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Stage is the role of a snapshot file in a request's life.
type Stage string

// Stages written by the snapshot tools. Before and After are the original
// scheme; First (taken when the first response byte reached the client),
// Timeline (periodic, not tied to one request) and Info (a JSON sidecar with
// what the response said about the request) are written by
// `delta-exporter capture`.
const (
	Before   Stage = "before"
	After    Stage = "after"
	First    Stage = "first"
	Timeline Stage = "timeline"
	Info     Stage = "info"
)

// TimeLayout is the timestamp in snapshot names: Python's %Y%m%d_%H%M%S_%f.
const TimeLayout = "20060102_150405.000000"

// MaxRequestIDLen bounds the request id taken from a file name.
const MaxRequestIDLen = 512

// Name is a parsed snapshot file name.
type Name struct {
	RequestID string
	Stage     Stage
	// Time is the timestamp written in the name, read as UTC. The original
	// tool wrote local time; the exporter only uses it to order files and
	// to display, never to compute a value.
	Time time.Time
}

// ErrNotSnapshot is returned for names that are not snapshot files. Callers
// count and ignore such files; they are not errors of the input.
var ErrNotSnapshot = errors.New("not a snapshot file name")

// ParseName parses a base file name of the form
// {request_id}_{stage}_{YYYYMMDD_HHMMSS_micro}.txt (.json for Info). The
// request id may contain '_', so the name is parsed from the right.
func ParseName(base string) (Name, error) {
	var n Name
	stem, ok := strings.CutSuffix(base, ".txt")
	isJSON := false
	if !ok {
		if stem, ok = strings.CutSuffix(base, ".json"); !ok {
			return n, ErrNotSnapshot
		}
		isJSON = true
	}
	// The timestamp is the last three '_'-separated fields.
	const tsLen = len("20060102_150405_000000")
	if len(stem) < tsLen+2 || stem[len(stem)-tsLen-1] != '_' {
		return n, ErrNotSnapshot
	}
	ts := stem[len(stem)-tsLen:]
	rest := stem[:len(stem)-tsLen-1]
	t, err := parseStamp(ts)
	if err != nil {
		return n, fmt.Errorf("%w: %v", ErrNotSnapshot, err)
	}
	i := strings.LastIndexByte(rest, '_')
	if i < 0 {
		return n, ErrNotSnapshot
	}
	stage := Stage(rest[i+1:])
	id := rest[:i]
	switch stage {
	case Before, After, First, Timeline:
		if isJSON {
			return n, ErrNotSnapshot
		}
	case Info:
		if !isJSON {
			return n, ErrNotSnapshot
		}
	default:
		return n, ErrNotSnapshot
	}
	if stage != Timeline && id == "" {
		return n, fmt.Errorf("%w: empty request id", ErrNotSnapshot)
	}
	if len(id) > MaxRequestIDLen {
		return n, fmt.Errorf("%w: request id longer than %d bytes", ErrNotSnapshot, MaxRequestIDLen)
	}
	n.RequestID, n.Stage, n.Time = id, stage, t
	return n, nil
}

// FormatName is the inverse of ParseName.
func FormatName(id string, stage Stage, t time.Time) string {
	ext := ".txt"
	if stage == Info {
		ext = ".json"
	}
	return id + "_" + string(stage) + "_" + FormatStamp(t) + ext
}

// FormatStamp renders t (in UTC) as YYYYMMDD_HHMMSS_micro.
func FormatStamp(t time.Time) string {
	s := t.UTC().Format(TimeLayout)
	return s[:15] + "_" + s[16:]
}

func parseStamp(s string) (time.Time, error) {
	// s is YYYYMMDD_HHMMSS_ffffff; time.Parse wants a '.' before fractions.
	if len(s) != 22 || s[8] != '_' || s[15] != '_' {
		return time.Time{}, errors.New("bad timestamp")
	}
	for i := 0; i < len(s); i++ {
		if i != 8 && i != 15 && (s[i] < '0' || s[i] > '9') {
			return time.Time{}, errors.New("bad timestamp")
		}
	}
	return time.Parse(TimeLayout, s[:15]+"."+s[16:])
}

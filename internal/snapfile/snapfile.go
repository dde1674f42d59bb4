// Package snapfile says what can become of a file in the snapshot
// directory: it is read, rejected for a reason, ignored for a reason, and
// once nothing can need it any more it is settled. The ingester decides
// which (package ingest); the collector and the report count the reasons;
// retention deletes settled files and nothing else (package retention).
//
// It sits below all of them, so that the package that deletes files does
// not import the one that reads them, and so that the reason lists the
// collector pre-creates its series from are the very constants the
// ingester reports: a reason cannot be reported without being listed.
package snapfile

import (
	"errors"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// DefaultMaxBytes is the default bound on one snapshot file: the
// ingester rejects a larger one (TooLarge), and capture does not write
// one. Both sides take it from here, so neither imports the other.
const DefaultMaxBytes = 64 << 20

// RejectReason says why a snapshot file (or a capture sidecar) was not
// used. The values are the label values of
// delta_exporter_snapshots_rejected_total (docs/metrics.md).
type RejectReason string

const (
	// Empty: the file holds nothing.
	Empty RejectReason = "empty"
	// ParseError: not the text exposition format (or, for an info
	// sidecar, not its JSON), or a histogram count that is not a
	// non-negative integer.
	ParseError RejectReason = "parse_error"
	// Incomplete: cut short (no final newline, a series cut), and still
	// so after the grace period.
	Incomplete RejectReason = "incomplete"
	// TooLarge: larger than the size limit (--snapshots.max-bytes).
	TooLarge RejectReason = "too_large"
	// NotRegular: a directory, symlink, FIFO or device under a snapshot
	// name.
	NotRegular RejectReason = "not_regular"
	// ReadError: the file could not be read, including a file listed but
	// gone before it could be read.
	ReadError RejectReason = "read_error"
	// NoFamilies: none of the families attribution reads.
	NoFamilies RejectReason = "no_families"
)

// RejectReasons lists every RejectReason, for pre-creating series.
var RejectReasons = []RejectReason{Empty, ParseError, Incomplete, TooLarge, NotRegular, ReadError, NoFamilies}

// ParseReason is the reason a snapshot that parser.Scan refused with err
// is rejected.
func ParseReason(err error) RejectReason {
	switch {
	case errors.Is(err, parser.ErrEmpty):
		return Empty
	case errors.Is(err, parser.ErrIncomplete):
		return Incomplete
	case errors.Is(err, parser.ErrNoFamilies):
		return NoFamilies
	default:
		return ParseError
	}
}

// IgnoreReason says why a directory entry was not used at all. The values
// are the label values of delta_exporter_files_ignored_total.
type IgnoreReason string

const (
	// IgnoredName: the name is not a snapshot name.
	IgnoredName IgnoreReason = "name"
	// IgnoredChange: a snapshot changed after it was read; the change is
	// ignored (counted once per file).
	IgnoredChange IgnoreReason = "changed"
)

// IgnoreReasons lists every IgnoreReason, for pre-creating series.
var IgnoreReasons = []IgnoreReason{IgnoredName, IgnoredChange}

// Settled is a snapshot file the ingester is done with: the only kind of
// file retention may delete (ingest.Ingester.Settled says which).
type Settled struct {
	Name string
	// Parsed is the name parsed: request id, stage and the time in the name.
	Parsed parser.Name
	// Size and ModTime are what the file was when it was read: a file that
	// differs now is not the file that was ingested.
	Size    int64
	ModTime time.Time
	// SeenAt, for a file whose modification time was ahead of the
	// exporter's clock when the ingester looked (another clock's: a
	// network volume, a writer with a wrong clock): when the ingester
	// first saw it as it was read, on the exporter's clock; for a file
	// whose name time is ahead of when the ingester first saw it (a
	// writer with a wrong clock on a filesystem that stamps ours), that
	// first look. Zero for every other file. Retention dates such a file
	// by it (Dated).
	SeenAt time.Time
}

// Dated is when the file was last written, as retention ages and orders
// it: the later of the time in its name and its modification time, or,
// for a file dated in the future (SeenAt), when the ingester first saw
// it. Such a file's modification time is another clock's, and perhaps
// its name's too: taken as they are, a file dated a year ahead stayed
// younger than any age limit for a year and was the last to go under a
// size limit. When it was seen is never before it was written, so it is
// never aged early: at worst by the time between its writing and the
// look that first saw it (a scan, an event).
func (s Settled) Dated() time.Time {
	if !s.SeenAt.IsZero() {
		return s.SeenAt
	}
	if s.ModTime.After(s.Parsed.Time) {
		return s.ModTime
	}
	return s.Parsed.Time
}

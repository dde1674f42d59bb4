package state

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// header is the first line of a state file; the number is the format
// version. Version 1 (headerV1) is still read, and rewritten as the
// current version at once.
const (
	header   = "delta-exporter state 2"
	headerV1 = "delta-exporter state 1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record framing (version 2). Every line after the header is one record:
//
//	<CRC-32C of the record, 8 hex digits> <record>\n
//
// The checksum covers the record's bytes, whatever its type (the record's
// first byte: '+' is an entry), so every record type added later is
// checked the same way and a damaged line costs that line alone. See
// Parse for how a line cut short by a crash is told from a damaged one.
const crcLen = 8

// writeRecord appends one framed record; rec must hold no newline.
func writeRecord(buf *bytes.Buffer, rec []byte) {
	fmt.Fprintf(buf, "%08x ", crc32.Checksum(rec, castagnoli))
	buf.Write(rec)
	buf.WriteByte('\n')
}

// writeBatch appends the records of entries.
func writeBatch(buf *bytes.Buffer, batch []*entry) {
	var rec []byte
	for _, e := range batch {
		rec = appendEntry(rec[:0], e.files)
		writeRecord(buf, rec)
	}
}

// appendEntry is an entry record: '+' and its Go-quoted file names
// (quoting keeps any byte of a name, newlines included, off the framing).
func appendEntry(rec []byte, files []string) []byte {
	rec = append(rec, '+')
	for _, f := range files {
		rec = append(rec, ' ')
		rec = strconv.AppendQuote(rec, f)
	}
	return rec
}

// entrySize estimates an entry's bytes in the file.
func entrySize(e *entry) int64 {
	n := int64(crcLen + 3)
	for _, f := range e.files {
		n += int64(len(f)) + 3
	}
	return n
}

// Parse reads a state file. It returns the entries (each a list of file
// names) of every record that verifies, and the number of lines dropped
// as the tail of a write a crash cut short. err is not nil when the file
// is damaged: then entries still holds every record that verified, and
// only the damaged records are missing (their requests can be published
// again); a file that is not a state file at all has no entries.
//
// What a crash leaves and what damage leaves differ. A crash can cut the
// last write short (its last line has no newline) or leave a hole of
// zero bytes in it (a block the kernel had not written); neither is ever
// followed by a record that verifies, since a file with such a tail is
// rewritten before anything is appended. Damage (a flipped, lost or added
// byte, an edit) leaves a complete line that fails its checksum. So:
//
//   - a record that verifies is kept, wherever it is (even without its
//     final newline: only that byte was lost; a record followed by
//     another byte than its newline is kept too, and is damage);
//   - an unterminated last line, and lines of zero bytes (a run of at
//     least two at either end of the line) after the last record that
//     verifies, are a cut-short write: dropped, and counted in dropped;
//   - any other line that does not verify is damage: err.
//
// A record cut short by a crash was never acknowledged (its scrape was
// not answered), so dropping it republishes a request nobody saw. A
// record that verifies is kept even in a write a crash interrupted: its
// scrape may not have been answered, and that request is then lost, never
// counted twice (the window of docs/guarantees.md).
func Parse(data []byte) (entries [][]string, dropped int, err error) {
	p, err := parse(data)
	return p.entries, p.dropped, err
}

// parsed is what parse found.
type parsed struct {
	entries [][]string
	dropped int
	version int
	// clean: the current version, nothing dropped or damaged, and the
	// last line terminated: records can be appended to it as it is.
	clean bool
}

func parse(data []byte) (parsed, error) {
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	switch {
	case ok && string(first) == header:
		return parseV2(rest)
	case ok && string(first) == headerV1:
		return parseV1(data, rest)
	case len(data) == 0:
		return parsed{}, errors.New("empty file")
	}
	return parsed{}, fmt.Errorf("first line is not %q", header)
}

// lineState is what one line of a version 2 file turned out to be.
type lineState uint8

const (
	lineOK      lineState = iota
	lineCut               // unterminated last line that does not verify
	lineZeros             // a hole of zero bytes
	lineDamaged           // complete, and fails its checksum or does not parse
)

func parseV2(rest []byte) (parsed, error) {
	p := parsed{version: 2}
	terminated := len(rest) == 0 || rest[len(rest)-1] == '\n'
	type line struct {
		state lineState
		no    int
		err   error
	}
	var lines []line
	lastOK := -1
	for no := 2; len(rest) > 0; no++ {
		text, next, complete := bytes.Cut(rest, []byte("\n"))
		rest = next
		l := line{no: no}
		rec, err := verify(text)
		if err == nil {
			var names []string
			if names, err = parseRecord(rec); err == nil {
				p.entries = append(p.entries, names)
				lastOK = len(lines)
			}
		}
		switch {
		case err == nil:
			l.state = lineOK
		case !complete && len(text) > 0 && verifiesAsEntry(text[:len(text)-1]):
			// A whole record followed by a byte that is not its
			// newline: a crash writes a prefix of what was written,
			// never that. Damage, and the record is kept.
			names, _ := parseRecord(text[crcLen+1 : len(text)-1])
			p.entries = append(p.entries, names)
			lastOK = len(lines)
			l.state, err = lineDamaged, errors.New("a record's newline is damaged")
		case !complete:
			l.state = lineCut
		case zeroRun(text):
			l.state = lineZeros
		default:
			l.state = lineDamaged
		}
		l.err = err
		lines = append(lines, l)
	}
	var damaged int
	var firstErr error
	for i, l := range lines {
		switch {
		case l.state == lineOK:
		case l.state == lineCut || (l.state == lineZeros && i > lastOK):
			p.dropped++
		default:
			damaged++
			if firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", l.no, l.err)
			}
		}
	}
	if damaged > 0 {
		return p, fmt.Errorf("%d damaged records (%w)", damaged, firstErr)
	}
	p.clean = p.dropped == 0 && terminated
	return p, nil
}

// verifiesAsEntry reports whether line is a whole entry record.
func verifiesAsEntry(line []byte) bool {
	rec, err := verify(line)
	if err == nil {
		_, err = parseRecord(rec)
	}
	return err == nil
}

// verify checks a line's frame and returns its record.
func verify(line []byte) ([]byte, error) {
	if len(line) < crcLen+2 || line[crcLen] != ' ' {
		return nil, errors.New("malformed record")
	}
	sum, err := strconv.ParseUint(string(line[:crcLen]), 16, 32)
	if err != nil {
		return nil, errors.New("malformed checksum")
	}
	rec := line[crcLen+1:]
	if got := crc32.Checksum(rec, castagnoli); uint32(sum) != got {
		return nil, fmt.Errorf("checksum %08x, want %08x", got, sum)
	}
	return rec, nil
}

// parseRecord reads a verified record. Entries ('+') are the only type
// so far; a new type gets its case here and the same framing.
func parseRecord(rec []byte) ([]string, error) {
	switch {
	case bytes.HasPrefix(rec, []byte("+ ")):
		return parseNames(string(rec[2:]))
	}
	return nil, fmt.Errorf("unknown record type %q", rec[0])
}

// zeroRun reports whether a line starts or ends with two zero bytes or
// more: what a block the kernel had not written looks like. A single
// zero byte inside a line is damage.
func zeroRun(line []byte) bool {
	n := len(line)
	return n >= 2 && ((line[0] == 0 && line[1] == 0) || (line[n-1] == 0 && line[n-2] == 0))
}

// parseV1 reads a version 1 file: entry lines ("+ names") in batches that
// each end with a commit line holding the batch's entry count and
// CRC-32C. A batch without its commit line, or whose lines after the last
// commit do not parse, is the tail of a cut-short write: dropped. A batch
// whose commit line is complete but whose checksum or count is wrong is
// damage (a crash leaves no complete commit after a hole of zeros it
// cannot show as such: such a batch is dropped as torn), and so is any
// line that does not parse before the last commit. Batches that verify
// are kept either way.
func parseV1(data, rest []byte) (parsed, error) {
	p := parsed{version: 1}
	var batch [][]string
	batchStart := 0
	lineNo := 1
	var firstErr error
	damage := func(err error) {
		if firstErr == nil {
			firstErr = fmt.Errorf("line %d: %w", lineNo, err)
		}
	}
	for len(rest) > 0 {
		offset := len(data) - len(rest)
		line, next, complete := bytes.Cut(rest, []byte("\n"))
		lineNo++
		if !complete {
			// No final newline: the last write was cut short.
			p.dropped += len(batch) + 1
			batch = nil
			break
		}
		var lerr error
		switch {
		case bytes.HasPrefix(line, []byte("+ ")):
			var names []string
			if names, lerr = parseNames(string(line[2:])); lerr == nil {
				if len(batch) == 0 {
					batchStart = offset
				}
				batch = append(batch, names)
			}
		case bytes.HasPrefix(line, []byte(". ")):
			if len(batch) == 0 {
				lerr = errors.New("commit without entries")
			} else if lerr = checkCommit(string(line[2:]), len(batch), data[batchStart:offset]); lerr == nil {
				p.entries = append(p.entries, batch...)
				batch = nil
			} else if !bytes.Contains(data[batchStart:offset], []byte{0, 0}) {
				// A complete commit line over a batch without a hole:
				// the batch was written whole, then damaged.
				damage(lerr)
				batch, lerr = nil, nil
			}
		default:
			lerr = errors.New("unknown line")
		}
		if lerr != nil {
			// A bad line after the last commit is the tail of a write
			// that was never acknowledged; before it, damage.
			if !hasCommit(next) {
				p.dropped += len(batch) + 1 + bytes.Count(next, []byte("\n"))
				batch = nil
				break
			}
			damage(lerr)
			batch = nil
		}
		rest = next
	}
	p.dropped += len(batch)
	if firstErr != nil {
		return p, firstErr
	}
	return p, nil
}

// hasCommit reports whether rest holds a line that looks like a commit.
func hasCommit(rest []byte) bool {
	return bytes.HasPrefix(rest, []byte(". ")) || bytes.Contains(rest, []byte("\n. "))
}

func checkCommit(s string, n int, lines []byte) error {
	countStr, sumStr, ok := strings.Cut(s, " ")
	if !ok {
		return errors.New("malformed commit line")
	}
	if count, err := strconv.Atoi(countStr); err != nil || count != n {
		return fmt.Errorf("commit of %q entries after %d", countStr, n)
	}
	sum, err := strconv.ParseUint(sumStr, 16, 32)
	if err != nil || len(sumStr) != 8 {
		return errors.New("malformed checksum")
	}
	if got := crc32.Checksum(lines, castagnoli); uint32(sum) != got {
		return fmt.Errorf("checksum %08x, want %08x", got, sum)
	}
	return nil
}

// parseNames reads space-separated Go-quoted strings.
func parseNames(s string) ([]string, error) {
	var names []string
	for {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return nil, errors.New("malformed file name")
		}
		name, err := strconv.Unquote(q)
		if err != nil || name == "" {
			return nil, errors.New("malformed file name")
		}
		names = append(names, name)
		s = s[len(q):]
		if s == "" {
			return names, nil
		}
		if s[0] != ' ' {
			return nil, errors.New("malformed entry")
		}
		s = s[1:]
	}
}

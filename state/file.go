package state

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
)

// header is the first line of a state file; the number is the format version.
const header = "delta-exporter state 1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// writeBatch writes entries and their commit line.
func writeBatch(buf *bytes.Buffer, batch []*entry) {
	start := buf.Len()
	for _, e := range batch {
		buf.WriteByte('+')
		for _, f := range e.files {
			buf.WriteByte(' ')
			buf.WriteString(strconv.Quote(f))
		}
		buf.WriteByte('\n')
	}
	sum := crc32.Checksum(buf.Bytes()[start:], castagnoli)
	fmt.Fprintf(buf, ". %d %08x\n", len(batch), sum)
}

// entrySize estimates an entry's bytes in the file.
func entrySize(e *entry) int64 {
	n := int64(2)
	for _, f := range e.files {
		n += int64(len(f)) + 3
	}
	return n
}

// Parse reads a state file. It returns the committed entries (each a list
// of file names) and the number of lines after the last commit that were
// dropped as the tail of a write a crash cut short. It fails on anything
// else that does not parse: a bad header, or a malformed line, a wrong
// count or a checksum mismatch followed by further commits.
//
// A checksum mismatch in the last batch cannot be told from a cut-short
// write and is dropped as one: only that batch's requests can then be
// published again, never the whole record's.
func Parse(data []byte) (entries [][]string, dropped int, err error) {
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || string(first) != header {
		if len(data) == 0 {
			return nil, 0, errors.New("empty file")
		}
		return nil, 0, fmt.Errorf("first line is not %q", header)
	}
	var batch [][]string
	batchStart := 0
	lineNo := 1
	for len(rest) > 0 {
		offset := len(data) - len(rest)
		line, next, complete := bytes.Cut(rest, []byte("\n"))
		lineNo++
		if !complete {
			// No final newline: the last write was cut short.
			return entries, len(batch) + 1, nil
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
				entries = append(entries, batch...)
				batch = nil
			}
		default:
			lerr = errors.New("unknown line")
		}
		if lerr != nil {
			// A bad line after the last commit is the tail of a write
			// that was never acknowledged; before it, corruption.
			if !hasCommit(next) {
				return entries, len(batch) + 1 + bytes.Count(next, []byte("\n")), nil
			}
			return nil, 0, fmt.Errorf("line %d: %w", lineNo, lerr)
		}
		rest = next
	}
	return entries, len(batch), nil
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

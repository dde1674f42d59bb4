package state

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzOpen: whatever bytes the state file holds, OpenJournal neither fails nor
// panics, keeps exactly the entries Parse returns (every record that
// verifies, damaged file or not; a damaged file is moved aside), and
// leaves a file in the current format that parses cleanly to the same
// entries.
func FuzzOpen(f *testing.F) {
	var b bytes.Buffer
	b.WriteString(header + "\n")
	writeBatch(&b, []*entry{{files: pair(0)}, {files: []string{"x y\n"}}})
	writeBatch(&b, []*entry{{files: pair(1)}})
	valid := b.Bytes()
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(set(valid, len(valid)-7, 'Z'))
	f.Add(append(bytes.Clone(valid), 0, 0, 0))
	f.Add([]byte(header + "\n"))
	f.Add([]byte(headerV1 + "\n+ \"a\"\n. 1 00000000\n"))
	var v1 bytes.Buffer
	v1.WriteString(headerV1 + "\n")
	writeBatchV1(&v1, [][]string{pair(0), pair(1)})
	writeBatchV1(&v1, [][]string{pair(2)})
	f.Add(v1.Bytes())
	f.Add([]byte{})
	f.Add([]byte("\x00\x00\x00"))
	// One directory for all runs of a worker (runs are sequential): a
	// fresh t.TempDir per run makes the fuzzer's minimisation crawl.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		entries, _, perr := Parse(data)
		// Whatever parsed must survive a write and a parse unchanged.
		var out bytes.Buffer
		out.WriteString(header + "\n")
		var es []*entry
		for _, files := range entries {
			es = append(es, &entry{files: files})
		}
		writeBatch(&out, es)
		again, dropped, err := Parse(out.Bytes())
		if err != nil || dropped != 0 || !equalEntries(entries, again) {
			t.Fatalf("round trip: %v, dropped %d, %q vs %q", err, dropped, entries, again)
		}
		matches, _ := filepath.Glob(filepath.Join(dir, "s.state*"))
		for _, m := range matches {
			os.Remove(m)
		}
		path := filepath.Join(dir, "s.state")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		j, rep, err := OpenJournal(Config{Path: path})
		if err != nil {
			t.Fatalf("OpenJournal: %v", err)
		}
		defer j.Close()
		if (perr != nil) != (rep.CorruptMovedTo != "") {
			t.Fatalf("parse error %v, moved aside to %q", perr, rep.CorruptMovedTo)
		}
		if rep.Records != len(entries) {
			t.Fatalf("records %d, want %d", rep.Records, len(entries))
		}
		clean, _ := os.ReadFile(path)
		p, err := parse(clean)
		if err != nil || !p.clean || p.version != 2 || !equalEntries(p.entries, entries) {
			t.Fatalf("file after OpenJournal holds %q (clean %v, version %d, %v), loaded %q", p.entries, p.clean, p.version, err, entries)
		}
	})
}

// FuzzDamagedRecord: one byte changed, removed or added anywhere in a
// state file is never taken silently. Either every entry is still there,
// or Parse reports damage (OpenJournal then logs an error and moves the file
// aside); what it keeps is always entries of the original, in order.
// This is the property the first format lacked: a damaged last batch was
// dropped as a cut-short write.
func FuzzDamagedRecord(f *testing.F) {
	f.Add("a b c", uint16(40), byte('x'), uint8(0))
	f.Add("x\ny z", uint16(70), byte(0), uint8(0))
	f.Add("q", uint16(0xffff), byte('\n'), uint8(1))
	f.Add("r s", uint16(30), byte(' '), uint8(2))
	f.Fuzz(func(t *testing.T, names string, pos uint16, c byte, op uint8) {
		var orig [][]string
		for _, n := range strings.Fields(names) {
			orig = append(orig, []string{n + "_before_20260101_000000_000000.txt", n + "_after_20260101_000001_000000.txt"})
		}
		var b bytes.Buffer
		b.WriteString(header + "\n")
		for _, files := range orig {
			writeBatch(&b, []*entry{{files: files}})
		}
		data := b.Bytes()
		i := int(pos) % (len(data) + 1)
		var mutated []byte
		switch op % 3 {
		case 0: // change
			if i == len(data) || data[i] == c {
				return
			}
			mutated = set(data, i, c)
		case 1: // remove
			if i == len(data) {
				return
			}
			mutated = append(bytes.Clone(data[:i]), data[i+1:]...)
		default: // add
			mutated = append(append(bytes.Clone(data[:i]), c), data[i:]...)
		}
		got, _, err := Parse(mutated)
		if err == nil && !equalEntries(got, orig) {
			t.Fatalf("%q: lost entries without reporting damage: %q, want %q", mutated, got, orig)
		}
		k := 0
		for _, e := range got {
			for k < len(orig) && !slices.Equal(orig[k], e) {
				k++
			}
			if k == len(orig) {
				t.Fatalf("%q: kept %q, not an entry of the original in order", mutated, got)
			}
			k++
		}
	})
}

func equalEntries(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

package state

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzOpen: whatever bytes the state file holds, Open neither fails nor
// panics, keeps exactly the entries Parse accepts (none if the file is
// corrupt, which it moves aside), and leaves a file that parses cleanly
// to the same entries.
func FuzzOpen(f *testing.F) {
	var b bytes.Buffer
	b.WriteString(header + "\n")
	writeBatch(&b, []*entry{{files: pair(0)}, {files: []string{"x y\n"}}})
	writeBatch(&b, []*entry{{files: pair(1)}})
	valid := b.Bytes()
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add([]byte(header + "\n"))
	f.Add([]byte(header + "\n+ \"a\"\n. 1 00000000\n"))
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
		if perr == nil {
			// Whatever parsed must survive a write and a parse unchanged.
			var out bytes.Buffer
			out.WriteString(header + "\n")
			var es []*entry
			for _, files := range entries {
				es = append(es, &entry{files: files})
			}
			if len(es) > 0 {
				writeBatch(&out, es)
			}
			again, dropped, err := Parse(out.Bytes())
			if err != nil || dropped != 0 || !equalEntries(entries, again) {
				t.Fatalf("round trip: %v, dropped %d, %q vs %q", err, dropped, entries, again)
			}
		}
		matches, _ := filepath.Glob(filepath.Join(dir, "s.state*"))
		for _, m := range matches {
			os.Remove(m)
		}
		path := filepath.Join(dir, "s.state")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		j, rep, err := Open(Config{Path: path})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer j.Close()
		want := len(entries)
		if perr != nil {
			want = 0
			if rep.CorruptMovedTo == "" {
				t.Fatal("corrupt file not moved aside")
			}
		}
		if rep.Records != want || j.Records() != want {
			t.Fatalf("records %d/%d, want %d", rep.Records, j.Records(), want)
		}
		clean, _ := os.ReadFile(path)
		got, dropped, err := Parse(clean)
		if err != nil || dropped != 0 || len(got) != want {
			t.Fatalf("file after Open: %d entries, dropped %d, %v", len(got), dropped, err)
		}
		if perr == nil && !equalEntries(got, entries) {
			t.Fatalf("file after Open holds %q, loaded %q", got, entries)
		}
	})
}

func equalEntries(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

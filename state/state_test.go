package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// counts is a Metrics that keeps everything for assertions.
type counts struct {
	mu                          sync.Mutex
	records, writes, writeFails int
	already                     int
	recovered                   map[string]int
}

func (c *counts) SetRecords(n int) { c.mu.Lock(); c.records = n; c.mu.Unlock() }
func (c *counts) Write(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if err != nil {
		c.writeFails++
	}
}
func (c *counts) AlreadyPublished() { c.mu.Lock(); c.already++; c.mu.Unlock() }
func (c *counts) Recovered(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recovered == nil {
		c.recovered = map[string]int{}
	}
	c.recovered[reason]++
}

func open(t *testing.T, path string, m *counts) (*Journal, LoadReport) {
	t.Helper()
	j, rep, err := Open(Config{Path: path, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, rep
}

func pair(i int) []string {
	return []string{fmt.Sprintf("r%d_before_20260101_120000_%06d.txt", i, i), fmt.Sprintf("r%d_after_20260101_120001_%06d.txt", i, i)}
}

// publish publishes pair i and reports whether it ran.
func publish(j *Journal, i int) bool {
	return j.Publish(pair(i), func() {})
}

// TestOnlyScrapedPublicationsAreRecorded: a publication becomes durable
// only through View+Sync (a served scrape); after a restart, recorded
// requests are skipped and the others published again.
func TestOnlyScrapedPublicationsAreRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "delta-exporter.state")
	m := &counts{}
	j, rep := open(t, path, m)
	if !rep.Created || rep.Records != 0 {
		t.Fatalf("first open: %+v", rep)
	}
	for i := 0; i < 3; i++ {
		if !publish(j, i) {
			t.Fatalf("pair %d skipped in an empty record", i)
		}
	}
	seq := j.View(func() {})
	publish(j, 3) // after the scrape's gather: not shown, must not be recorded
	if err := j.Sync(seq); err != nil {
		t.Fatal(err)
	}
	publish(j, 4) // never scraped
	j.Close()

	m2 := &counts{}
	j2, rep := open(t, path, m2)
	if rep.Records != 3 || rep.Created || rep.CorruptMovedTo != "" {
		t.Fatalf("reopen: %+v", rep)
	}
	for i := 0; i < 5; i++ {
		want := i >= 3
		if got := publish(j2, i); got != want {
			t.Errorf("pair %d published again = %v, want %v", i, got, want)
		}
	}
	if m2.already != 3 {
		t.Errorf("already published = %d, want 3", m2.already)
	}
	// Skipping is by any file of the request: an after alone (its before
	// deleted) is not published again either.
	if j2.Publish([]string{"", pair(1)[1]}, func() {}) {
		t.Error("an unpaired after of a recorded request was published again")
	}
	if m2.records != 5 {
		t.Errorf("records gauge = %d, want 5", m2.records)
	}
}

// TestConcurrentScrapesRecordExactlyWhatTheySaw: with publications and
// scrapes racing, the record after a crash equals the publications the
// scrapes saw: nothing seen is missing (no double count), nothing unseen
// is there (no loss).
func TestConcurrentScrapesRecordExactlyWhatTheySaw(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state")
	j, _ := open(t, path, &counts{})
	var published int // guarded by the journal's lock: read in View, written in Publish
	var mu sync.Mutex
	maxSeen := 0
	done := make(chan struct{})
	var wg sync.WaitGroup
	for s := 0; s < 4; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				var seen int
				seq := j.View(func() { seen = published })
				if err := j.Sync(seq); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				maxSeen = max(maxSeen, seen)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		j.Publish(pair(i), func() { published++ })
	}
	close(done)
	wg.Wait()
	j.Close() // a crash: nothing more is written

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, dropped, err := Parse(data)
	if err != nil || dropped != 0 {
		t.Fatalf("parse: %v, dropped %d", err, dropped)
	}
	if len(entries) != maxSeen {
		t.Fatalf("recorded %d, scrapes saw %d", len(entries), maxSeen)
	}
	for i, e := range entries {
		if e[0] != pair(i)[0] || e[1] != pair(i)[1] {
			t.Fatalf("entry %d = %v, want %v", i, e, pair(i))
		}
	}
	if maxSeen == 0 {
		t.Fatal("no scrape saw anything; the test did not race")
	}
}

func writeState(t *testing.T, path string, batches ...[][]string) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(header + "\n")
	for _, batch := range batches {
		var es []*entry
		for _, files := range batch {
			es = append(es, &entry{files: files})
		}
		writeBatch(&b, es)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestLoadDamagedFiles: a cut-short write is dropped (only its entries);
// corruption moves the file aside and starts empty; both are counted.
func TestLoadDamagedFiles(t *testing.T) {
	good := [][]string{pair(0), pair(1)}
	tail := [][]string{pair(2)}
	tests := []struct {
		name        string
		mutate      func(full []byte) []byte
		wantRecords int
		wantDropped bool
		wantCorrupt bool
	}{
		{"intact", func(b []byte) []byte { return b }, 3, false, false},
		{"last line without newline", func(b []byte) []byte { return b[:len(b)-1] }, 2, true, false},
		{"commit line missing", func(b []byte) []byte { return b[:bytes.LastIndex(b[:len(b)-1], []byte("\n"))+1] }, 2, true, false},
		{"half an entry", func(b []byte) []byte { return b[:bytes.LastIndex(b[:len(b)-1], []byte("\n"))-10] }, 2, true, false},
		{"zeros after the last commit", func(b []byte) []byte { return append(b, make([]byte, 100)...) }, 3, true, false},
		{"zeros then newline after the last commit", func(b []byte) []byte { return append(append(b, make([]byte, 10)...), '\n') }, 3, true, false},
		{"checksum of the last batch wrong", func(b []byte) []byte { return flipLast(b, 'a', 'b') }, 2, true, false},
		{"entry of the first batch altered", func(b []byte) []byte { return bytes.Replace(b, []byte("r0_after"), []byte("r9_after"), 1) }, 0, false, true},
		{"wrong header", func(b []byte) []byte { return append([]byte("delta-exporter state 2\n"), b[len(header)+1:]...) }, 0, false, true},
		{"empty file", func(b []byte) []byte { return nil }, 0, false, true},
		{"binary junk", func(b []byte) []byte { return []byte{0xff, 0, 1, '\n', '.', ' ', '1', '\n'} }, 0, false, true},
		{"count mismatch", func(b []byte) []byte { return bytes.Replace(b, []byte("\n. 2 "), []byte("\n. 3 "), 1) }, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.state")
			full := writeState(t, path, good, tail)
			if err := os.WriteFile(path, tc.mutate(full), 0o644); err != nil {
				t.Fatal(err)
			}
			m := &counts{}
			j, rep := open(t, path, m)
			if rep.Records != tc.wantRecords || (rep.Dropped > 0) != tc.wantDropped || (rep.CorruptMovedTo != "") != tc.wantCorrupt {
				t.Fatalf("report %+v, want records %d dropped %v corrupt %v", rep, tc.wantRecords, tc.wantDropped, tc.wantCorrupt)
			}
			if tc.wantCorrupt {
				if m.recovered[RecoveredCorrupt] != 1 {
					t.Errorf("corrupt not counted: %v", m.recovered)
				}
				moved, err := os.ReadFile(rep.CorruptMovedTo)
				if err != nil || !bytes.Equal(moved, tc.mutate(full)) {
					t.Errorf("corrupt file not kept aside intact: %v", err)
				}
			}
			if tc.wantDropped && m.recovered[RecoveredUnfinished] != 1 {
				t.Errorf("unfinished write not counted: %v", m.recovered)
			}
			// The file was rewritten clean at once.
			data, _ := os.ReadFile(path)
			entries, dropped, err := Parse(data)
			if err != nil || dropped != 0 || len(entries) != tc.wantRecords {
				t.Errorf("after open: %d entries, dropped %d, err %v", len(entries), dropped, err)
			}
			if j.Records() != tc.wantRecords {
				t.Errorf("Records() = %d", j.Records())
			}
		})
	}
}

func flipLast(b []byte, from, to byte) []byte {
	b = append([]byte(nil), b...)
	i := bytes.LastIndex(b, []byte("\n. "))
	line := b[i+1:]
	// Change the checksum's last hex digit.
	k := len(line) - 2
	if line[k] == from {
		line[k] = to
	} else {
		line[k] = from
	}
	return b
}

func TestSecondExporterCannotShareTheRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state")
	open(t, path, &counts{})
	if _, _, err := Open(Config{Path: path}); err == nil || !strings.Contains(err.Error(), "another delta-exporter") {
		t.Fatalf("second Open: %v", err)
	}
}

// TestCompactForgetsDeletedFiles: an entry is forgotten only once all its
// files have been absent for ForgetAfter, and the file shrinks.
func TestCompactForgetsDeletedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j, _, err := Open(Config{Path: path, ForgetAfter: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const n = 3000
	for i := 0; i < n; i++ {
		publish(j, i)
	}
	if err := j.Sync(j.View(func() {})); err != nil {
		t.Fatal(err)
	}
	publish(j, n) // queued, not durable: kept whatever the directory says
	present := map[string]bool{}
	for i := 0; i < 10; i++ {
		present[pair(i)[1]] = true // only the after is left
	}
	isPresent := func(name string) bool { return present[name] }
	sizeBefore := fileSize(t, path)
	if err := j.Compact(isPresent); err != nil {
		t.Fatal(err)
	}
	if j.Records() != n+1 {
		t.Fatalf("forgot entries at once: %d", j.Records())
	}
	now = now.Add(time.Hour)
	present[pair(0)[0]] = true // came back: its clock restarts
	if err := j.Compact(isPresent); err != nil {
		t.Fatal(err)
	}
	if j.Records() != 11 {
		t.Fatalf("records after compaction = %d, want 11 (10 present, 1 queued)", j.Records())
	}
	if after := fileSize(t, path); after*10 > sizeBefore {
		t.Fatalf("file not rewritten smaller: %d -> %d bytes", sizeBefore, after)
	}
	if publish(j, 20) != true || publish(j, 5) != false {
		t.Fatal("forgotten entry not publishable, or kept entry publishable")
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestWriteFailureFailsTheSyncThenRecovers: when the file cannot be
// written the scrape must fail; once it can, the record is complete.
func TestWriteFailureFailsTheSyncThenRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "s.state")
	m := &counts{}
	j, _ := open(t, path, m)
	publish(j, 0)
	if err := j.Sync(j.View(func() {})); err != nil {
		t.Fatal(err)
	}
	// The append handle breaks (disk gone), and so does the directory.
	j.f.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	publish(j, 1)
	seq := j.View(func() {})
	if err := j.Sync(seq); err == nil {
		t.Fatal("Sync succeeded without a file")
	}
	if err := j.Sync(seq); err == nil {
		t.Fatal("second Sync succeeded without a directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := j.Sync(seq); err != nil {
		t.Fatalf("Sync after the directory is back: %v", err)
	}
	if m.writeFails != 2 {
		t.Errorf("write failures = %d, want 2", m.writeFails)
	}
	data, _ := os.ReadFile(path)
	entries, _, err := Parse(data)
	if err != nil || len(entries) != 2 {
		t.Fatalf("after recovery: %d entries, %v", len(entries), err)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Fatal("unreachable")
	}
}

// TestNamesSurviveAnyBytes: file names may hold spaces, quotes, newlines.
func TestNamesSurviveAnyBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state")
	j, _ := open(t, path, &counts{})
	odd := []string{"a b\"c\n_before_20260101_000000_000000.txt", "\xff\x00_after_20260101_000000_000000.txt"}
	j.Publish(odd, func() {})
	if err := j.Sync(j.View(func() {})); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j2, rep := open(t, path, &counts{})
	if rep.Records != 1 || j2.Publish(odd[1:], func() {}) {
		t.Fatalf("odd names did not round-trip: %+v", rep)
	}
}

func TestNoPathRecordsNothing(t *testing.T) {
	j, _, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if !publish(j, 0) {
			t.Fatal("without a state file nothing is skipped")
		}
	}
	if err := j.Sync(j.View(func() {})); err != nil || j.Records() != 0 {
		t.Fatalf("sync %v, records %d", err, j.Records())
	}
}

package state

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
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
	recovered                   map[Recovery]int
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
func (c *counts) Recovered(reason Recovery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recovered == nil {
		c.recovered = map[Recovery]int{}
	}
	c.recovered[reason]++
}

func open(t *testing.T, path string, m *counts) (*Journal, LoadReport) {
	t.Helper()
	j, rep, err := OpenJournal(Config{Path: path, Metrics: m})
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
		if i%100 == 99 {
			runtime.Gosched() // on a loaded machine, let the scrapers in while publishing
		}
	}
	// The assertions below hold whether or not a scrape overlapped a
	// publish; wait for one scrape after the publishes so a starved
	// scheduler cannot turn the test into a no-op.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		mu.Lock()
		seen := maxSeen
		mu.Unlock()
		if seen > 0 {
			break
		}
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

// damageCase is one way a state file can be hurt, and what OpenJournal must make
// of it.
type damageCase struct {
	name        string
	mutate      func(full []byte) []byte
	wantRecords int
	wantDropped bool
	wantCorrupt bool
}

// lastRecord returns the offset of the last line of b.
func lastRecord(b []byte) int { return bytes.LastIndex(b[:len(b)-1], []byte("\n")) + 1 }

// set returns a copy of b with b[i] = c.
func set(b []byte, i int, c byte) []byte {
	b = bytes.Clone(b)
	b[i] = c
	return b
}

// TestLoadDamagedFiles: a write a crash cut short is dropped (only its
// lines); damage anywhere, the last record included, is never taken for
// a cut-short write: the file is moved aside, logged at error level,
// counted, and every record that verifies is kept. Before, a byte flipped
// in the last group of records was dropped silently as an unfinished
// write, with up to 4,096 requests in it (all published again).
func TestLoadDamagedFiles(t *testing.T) {
	tests := []damageCase{
		{"intact", func(b []byte) []byte { return b }, 3, false, false},
		{"last newline lost", func(b []byte) []byte { return b[:len(b)-1] }, 3, false, false},
		{"last record cut short", func(b []byte) []byte { return b[:len(b)-10] }, 2, true, false},
		{"last record cut to its checksum", func(b []byte) []byte { return b[:lastRecord(b)+4] }, 2, true, false},
		{"zeros after the last record", func(b []byte) []byte { return append(b, make([]byte, 100)...) }, 3, true, false},
		{"zeros then newline after the last record", func(b []byte) []byte { return append(append(b, make([]byte, 10)...), '\n') }, 3, true, false},
		{"last record zeroed by a hole", func(b []byte) []byte {
			i := lastRecord(b)
			return append(append(b[:i:i], make([]byte, len(b)-i-1)...), '\n')
		}, 2, true, false},
		{"byte flipped in the last record", func(b []byte) []byte { return set(b, len(b)-5, b[len(b)-5]^0x20) }, 2, false, true},
		{"byte flipped in the last record's checksum", func(b []byte) []byte { return set(b, lastRecord(b)+3, 'x') }, 2, false, true},
		{"byte of the last record zeroed", func(b []byte) []byte { return set(b, len(b)-5, 0) }, 2, false, true},
		{"byte cut out of the last record", func(b []byte) []byte {
			return append(bytes.Clone(b[:len(b)-6]), b[len(b)-5:]...)
		}, 2, false, true},
		{"entry of the first record altered", func(b []byte) []byte { return bytes.Replace(b, []byte("r0_after"), []byte("r9_after"), 1) }, 2, false, true},
		{"line added", func(b []byte) []byte { return append(b, []byte("00000000 + \"x\"\n")...) }, 3, false, true},
		{"wrong header", func(b []byte) []byte { return append([]byte("delta-exporter state 9\n"), b[len(header)+1:]...) }, 0, false, true},
		{"empty file", func(b []byte) []byte { return nil }, 0, false, true},
		{"binary junk", func(b []byte) []byte { return []byte{0xff, 0, 1, '\n', '.', ' ', '1', '\n'} }, 0, false, true},
	}
	runDamage(t, tests, func(t *testing.T, path string) []byte {
		return writeState(t, path, [][]string{pair(0), pair(1)}, [][]string{pair(2)})
	})
}

// TestLoadVersion1Files: files of the first format (batches closed by a
// commit line) are still read, and rewritten in the current format. A
// complete commit line whose checksum fails is damage, not a cut-short
// write (it used to drop the whole batch silently).
func TestLoadVersion1Files(t *testing.T) {
	tests := []damageCase{
		{"intact", func(b []byte) []byte { return b }, 3, false, false},
		{"last line without newline", func(b []byte) []byte { return b[:len(b)-1] }, 2, true, false},
		{"commit line missing", func(b []byte) []byte { return b[:lastRecord(b)] }, 2, true, false},
		{"half an entry", func(b []byte) []byte { return b[:lastRecord(b)-10] }, 2, true, false},
		{"zeros after the last commit", func(b []byte) []byte { return append(b, make([]byte, 100)...) }, 3, true, false},
		{"checksum of the last batch wrong", func(b []byte) []byte { return flipLast(b, 'a', 'b') }, 2, false, true},
		{"entry of the last batch altered", func(b []byte) []byte { return bytes.Replace(b, []byte("r2_after"), []byte("r8_after"), 1) }, 2, false, true},
		{"entry of the first batch altered", func(b []byte) []byte { return bytes.Replace(b, []byte("r0_after"), []byte("r9_after"), 1) }, 1, false, true},
		{"count mismatch", func(b []byte) []byte { return bytes.Replace(b, []byte("\n. 2 "), []byte("\n. 3 "), 1) }, 1, false, true},
	}
	runDamage(t, tests, func(t *testing.T, path string) []byte {
		var b bytes.Buffer
		b.WriteString(headerV1 + "\n")
		writeBatchV1(&b, [][]string{pair(0), pair(1)})
		writeBatchV1(&b, [][]string{pair(2)})
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	})
}

// writeBatchV1 writes a batch of the first format: entries, then a commit
// line with their count and checksum.
func writeBatchV1(buf *bytes.Buffer, batch [][]string) {
	start := buf.Len()
	for _, files := range batch {
		buf.Write(appendEntry(nil, files))
		buf.WriteByte('\n')
	}
	sum := crc32.Checksum(buf.Bytes()[start:], castagnoli)
	fmt.Fprintf(buf, ". %d %08x\n", len(batch), sum)
}

func runDamage(t *testing.T, tests []damageCase, write func(t *testing.T, path string) []byte) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.state")
			full := write(t, path)
			if err := os.WriteFile(path, tc.mutate(full), 0o644); err != nil {
				t.Fatal(err)
			}
			m := &counts{}
			var logs bytes.Buffer
			j, rep, err := OpenJournal(Config{Path: path, Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { j.Close() })
			if rep.Records != tc.wantRecords || (rep.Dropped > 0) != tc.wantDropped || (rep.CorruptMovedTo != "") != tc.wantCorrupt {
				t.Fatalf("report %+v, want records %d dropped %v corrupt %v", rep, tc.wantRecords, tc.wantDropped, tc.wantCorrupt)
			}
			if tc.wantCorrupt {
				if m.recovered[RecoveredCorrupt] != 1 || !strings.Contains(logs.String(), "level=ERROR") {
					t.Errorf("damage not counted (%v) or not logged as an error:\n%s", m.recovered, logs.String())
				}
				moved, err := os.ReadFile(rep.CorruptMovedTo)
				if err != nil || !bytes.Equal(moved, tc.mutate(full)) {
					t.Errorf("damaged file not kept aside intact: %v", err)
				}
			} else if strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("logged an error:\n%s", logs.String())
			}
			if tc.wantDropped && m.recovered[RecoveredUnfinished] != 1 {
				t.Errorf("unfinished write not counted: %v", m.recovered)
			}
			// Every kept request is still skipped, and the file was
			// rewritten clean, in the current format, at once.
			for i := 0; i < 3; i++ {
				if kept := !j.Publish(pair(i), func() {}); kept && i >= tc.wantRecords && !tc.wantCorrupt {
					t.Errorf("pair %d recorded, want only the first %d", i, tc.wantRecords)
				}
			}
			data, _ := os.ReadFile(path)
			p, err := parse(data)
			if err != nil || !p.clean || p.version != 2 || len(p.entries) != tc.wantRecords {
				t.Errorf("after open: %d entries, version %d, clean %v, err %v", len(p.entries), p.version, p.clean, err)
			}
			if j.Records() < tc.wantRecords {
				t.Errorf("Records() = %d", j.Records())
			}
		})
	}
}
func TestSecondExporterCannotShareTheRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state")
	open(t, path, &counts{})
	if _, _, err := OpenJournal(Config{Path: path}); err == nil || !strings.Contains(err.Error(), "another delta-exporter") {
		t.Fatalf("second OpenJournal: %v", err)
	}
}

// TestCompactForgetsDeletedFiles: an entry is forgotten only once all its
// files have been absent for ForgetAfter, and the file shrinks.
func TestCompactForgetsDeletedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j, _, err := OpenJournal(Config{Path: path, ForgetAfter: time.Hour, Now: func() time.Time { return now }})
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
	j.file.f.Close()
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
	j, _, err := OpenJournal(Config{})
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

// flipLast changes the last hex digit of the last commit line's checksum
// (version 1).
func flipLast(b []byte, from, to byte) []byte {
	b = bytes.Clone(b)
	line := b[bytes.LastIndex(b, []byte("\n. "))+1:]
	k := len(line) - 2
	if line[k] == from {
		line[k] = to
	} else {
		line[k] = from
	}
	return b
}

// TestWriteFailureLoggedOncePerOutage: a full disk fails every scrape's
// write; the error is logged once per outage (and the recovery once), not
// once per scrape.
func TestWriteFailureLoggedOncePerOutage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "s.state")
	var logs bytes.Buffer
	m := &counts{}
	j, _, err := OpenJournal(Config{Path: path, Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.file.f.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		publish(j, i)
		if err := j.Sync(j.View(func() {})); err == nil {
			t.Fatal("Sync succeeded without a directory")
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := j.Sync(j.View(func() {})); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 || m.writeFails != 5 {
		t.Fatalf("%d errors logged for %d failed writes, want 1:\n%s", n, m.writeFails, logs.String())
	}
	if !strings.Contains(logs.String(), "writable again") {
		t.Fatalf("recovery not logged:\n%s", logs.String())
	}
}

package state

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestLoadFilesOfThePreviousVersion: a journal and a population records
// file written by the version before the two shared one framing and one
// append path (testdata/previous, written by that version's Open,
// Publish, Sync, OpenRecords and Write) load whole, are appended to, and
// load again with both old and new records: a restart after an upgrade
// neither publishes a recorded request again nor shows a hull again.
func TestLoadFilesOfThePreviousVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "delta-exporter.state")
	for _, name := range []string{"delta-exporter.state", "delta-exporter.state.population"} {
		data, err := os.ReadFile(filepath.Join("testdata", "previous", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	odd := "odd \"name\"\nwith newline_before_20260101_120000_000009.txt"
	wantHulls := map[string]string{"hull/a": "4 5 6", "hull/b \"q\"": "x\ny"}

	m := &counts{}
	j, rep := open(t, path, m)
	if rep.Records != 4 || rep.Dropped != 0 || rep.CorruptMovedTo != "" || rep.rewrite {
		t.Fatalf("journal: %+v, want 4 records appended to as they are", rep)
	}
	for i := range 3 {
		if publish(j, i) {
			t.Errorf("pair %d published again", i)
		}
	}
	if j.Publish([]string{odd}, func() {}) {
		t.Error("the odd name published again")
	}
	if !publish(j, 3) || j.Sync(j.View(func() {})) != nil {
		t.Fatal("a new request is not published and recorded")
	}
	r, hulls, rrep, err := OpenRecords(path+".population", nil, time.Now())
	if err != nil || rrep != (RecordsReport{}) || !maps.Equal(hulls, wantHulls) {
		t.Fatalf("records: %v %+v %v, want %v", err, rrep, hulls, wantHulls)
	}
	if err := r.Write(map[string]string{"hull/c": "7"}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	j.Close()

	data, _ := os.ReadFile(path)
	entries, dropped, err := Parse(data)
	if err != nil || dropped != 0 || len(entries) != 5 || !slices.Equal(entries[3], []string{odd}) || !slices.Equal(entries[4], pair(3)) {
		t.Fatalf("journal after an append: %v, %d dropped, %q", err, dropped, entries)
	}
	data, _ = os.ReadFile(path + ".population")
	got, dropped, err := ParseRecords(data)
	wantHulls["hull/c"] = "7"
	if err != nil || dropped != 0 || !maps.Equal(got, wantHulls) {
		t.Fatalf("records after an append: %v, %d dropped, %v", err, dropped, got)
	}
}

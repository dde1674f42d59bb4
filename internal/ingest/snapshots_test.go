package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
)

// batches records what Config.Snapshots is given.
type batches struct {
	sizes []int
	names []string
	gone  []string
}

func (b *batches) ObserveSnapshots(seen []SeenSnapshot, gone []string) {
	b.sizes = append(b.sizes, len(seen))
	for _, s := range seen {
		if s.Snapshot == nil || s.Time.IsZero() {
			panic("snapshot without content or time")
		}
		b.names = append(b.names, s.Name)
	}
	b.gone = append(b.gone, gone...)
}

// TestSnapshotsInBatches: every usable snapshot reaches the observer, in
// the order applied, in batches of at most snapshotBatch, all of them
// before the scan returns; files a later scan no longer lists are named
// as gone, even when nothing new was read.
func TestSnapshotsInBatches(t *testing.T) {
	w := newDirWriter(t)
	var want []string
	for i := range 100 {
		id := fmt.Sprintf("r%03d", i)
		f := finish(i)
		want = append(want, w.Snap(id, "before"))
		w.Server.ObserveFirstToken(model, 0, f.Queue+f.Prefill)
		w.Server.ObserveFinish(model, 0, f)
		want = append(want, w.Snap(id, "after"))
	}
	w.Put("not-a-snapshot.txt", []byte("x"))
	in := newTestIngester(w.Dir, record.Once(t))
	b := &batches{}
	in.cfg.Snapshots = b
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.names, want) {
		t.Fatalf("observed %d snapshots, want the %d files in order", len(b.names), len(want))
	}
	if len(b.sizes) < 2 || slices.Max(b.sizes) > snapshotBatch {
		t.Fatalf("batch sizes %v: want several, none above %d", b.sizes, snapshotBatch)
	}
	for _, name := range []string{want[0], want[1], "not-a-snapshot.txt"} {
		if err := os.Remove(filepath.Join(w.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	slices.Sort(b.gone)
	wantGone := []string{"not-a-snapshot.txt", want[0], want[1]}
	slices.Sort(wantGone)
	if !slices.Equal(b.gone, wantGone) {
		t.Fatalf("gone %v, want %v", b.gone, wantGone)
	}
}

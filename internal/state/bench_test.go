package state

import (
	"path/filepath"
	"testing"
)

// BenchmarkScrapeRecord is what a scrape that shows 10 new requests
// costs: gather under the lock (empty here), append, fsync.
func BenchmarkScrapeRecord(b *testing.B) {
	j, _, err := OpenJournal(Config{Path: filepath.Join(b.TempDir(), "s.state")})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	n := 0
	for b.Loop() {
		for k := 0; k < 10; k++ {
			j.Publish(pair(n), func() {})
			n++
		}
		if err := j.Sync(j.View(func() {})); err != nil {
			b.Fatal(err)
		}
	}
}

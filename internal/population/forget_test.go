package population

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// restarts simulates a long-running exporter over a server that restarts
// often, each process with a model name of its own, while the
// directory's retention keeps the newest 20 files. It returns the
// population, the records a scrape after every file wrote (forgotten
// ones deleted), the most hulls held at once, the files still in the
// directory and the number of observations between each process's first
// and last snapshot.
func restarts(t *testing.T, processes int, forgetAfter time.Duration) (p *Population, records map[string]string, maxHeld int, dir map[string]snap, wantCount uint64) {
	t.Helper()
	const perProcess, kept = 6, 20
	now := t0
	p = New(Config{
		// The collector folds model names into a bounded set; here all
		// into one.
		Label:       func(parser.Metric, string) string { return "m" },
		ForgetAfter: forgetAfter,
		Now:         func() time.Time { return now },
	})
	r := rand.New(rand.NewPCG(5, 6))
	records = map[string]string{}
	dir = map[string]snap{}
	var order []string // dir's names, oldest first
	var last Hist
	for proc := range processes {
		s := randomServer(r, 1.7e9+float64(proc)*3600, 60)
		// Each snapshot after the first adds 10 observations.
		wantCount += 10 * (perProcess - 1)
		for i := range perProcess {
			now = now.Add(time.Minute)
			sn := s.scrape(i*10, now)
			model := fmt.Sprintf("model-%d", proc)
			sn.s.Series[0].Labels, sn.s.Series[0].Model = `model_name="`+model+`"`, model
			name := parser.FormatName(fmt.Sprintf("r%d-%d", proc, i), parser.Before, now)
			p.ObserveFile(name, now, sn.s)
			dir[name] = sn
			order = append(order, name)
			var gone []string
			if len(order) > kept {
				gone, order = order[:len(order)-kept], order[len(order)-kept:]
			}
			for _, g := range gone {
				delete(dir, g)
			}
			p.Gone(gone)
			for _, k := range p.Forget() {
				delete(records, k)
			}
			// A scrape records what changed.
			recs := p.Fresh(p.Capture())
			for _, rec := range recs {
				records[rec.Key] = rec.Value
			}
			p.Durable(recs)

			got := ttft(p)
			if got.Count < last.Count || got.Sum < last.Sum {
				t.Fatalf("process %d: published count %d sum %f went below %d %f", proc, got.Count, got.Sum, last.Count, last.Sum)
			}
			last = got
			held, _ := p.Hulls()
			maxHeld = max(maxHeld, held)
		}
	}
	return p, records, maxHeld, dir, wantCount
}

// The hulls held, and their records, follow the files in the directory,
// not every server process ever seen; the published histogram never goes
// down and counts each process's observations once; and a restart of the
// exporter, loading the records and reading the directory again, shows
// nothing twice. Without forgetting (ForgetAfter longer than the run),
// every process's hull and record stays.
func TestManyRestartsAreForgotten(t *testing.T) {
	const processes = 400
	p, records, maxHeld, dir, wantCount := restarts(t, processes, 10*time.Minute)
	if got := ttft(p); got.Count != wantCount {
		t.Errorf("published %d observations, want %d", got.Count, wantCount)
	}
	held, forgotten := p.Hulls()
	// The directory holds files of at most 5 processes (20 files, 6 a
	// process); a process's files are gone 10 minutes (10 files) before
	// it is forgotten: 2 more.
	if maxHeld > 7 || held > 7 || len(records) > 7 {
		t.Errorf("held at most %d hulls, %d at the end, %d records: want ≤ 7 (the directory's processes and those gone less than ForgetAfter)", maxHeld, held, len(records))
	}
	if forgotten < processes-7 {
		t.Errorf("forgot %d hulls of %d processes", forgotten, processes)
	}

	// A restart loads the records and reads the directory's files again.
	q := New(Config{})
	vals := make([]string, 0, len(records))
	for _, v := range records {
		vals = append(vals, v)
	}
	if err := q.Load(vals); err != nil {
		t.Fatal(err)
	}
	for name, sn := range dir {
		q.ObserveFile(name, sn.at, sn.s)
	}
	if n := len(q.Hists()); n != 0 {
		t.Errorf("after a restart, the directory's files published again: %v", q.Hists())
	}

	_, records, maxHeld, _, _ = restarts(t, processes, 1000*time.Hour)
	if maxHeld != processes || len(records) != processes {
		t.Errorf("never forgetting: held %d hulls and %d records, want one per process (%d)", maxHeld, len(records), processes)
	}
}

// A hull is held while any file that touched it is in the directory, and
// forgotten ForgetAfter after the last one went; a loaded hull whose
// files are not read again is forgotten ForgetAfter after the load.
func TestForgetWaitsForTheLastFile(t *testing.T) {
	now := t0
	p := New(Config{ForgetAfter: time.Hour, Now: func() time.Time { return now }})
	s := randomServer(rand.New(rand.NewPCG(7, 8)), 1.7e9, 30)
	p.ObserveFile("a", t0, s.scrape(0, t0).s)
	p.ObserveFile("b", t0.Add(time.Second), s.scrape(10, t0.Add(time.Second)).s)
	p.Gone([]string{"a"})
	now = now.Add(2 * time.Hour)
	if keys := p.Forget(); len(keys) != 0 {
		t.Fatalf("forgot %v while file b holds it", keys)
	}
	p.Gone([]string{"b", "never-seen"})
	now = now.Add(59 * time.Minute)
	if keys := p.Forget(); len(keys) != 0 {
		t.Fatalf("forgot %v before ForgetAfter", keys)
	}
	recs := p.Capture()
	now = now.Add(time.Minute)
	if keys := p.Forget(); len(keys) != 1 {
		t.Fatalf("forgot %v, want the one hull", keys)
	}
	if held, _ := p.Hulls(); held != 0 {
		t.Fatalf("%d hulls held", held)
	}
	if got := ttft(p); got.Count != 10 {
		t.Fatalf("published %d after forgetting, want 10", got.Count)
	}
	// A scrape that captured the hull before it was forgotten does not
	// write it back.
	if fresh := p.Fresh(recs); len(fresh) != 0 {
		t.Fatalf("a forgotten hull's record is written: %v", fresh)
	}

	// Loaded, never read again: forgotten ForgetAfter after the load.
	q := New(Config{ForgetAfter: time.Hour, Now: func() time.Time { return now }})
	vals := []string{recs[0].Value}
	if err := q.Load(vals); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	if keys := q.Forget(); len(keys) != 1 || keys[0] != recs[0].Key {
		t.Fatalf("loaded hull: forgot %v, want %s", keys, recs[0].Key)
	}
	// Loaded and read again: held.
	q = New(Config{ForgetAfter: time.Hour, Now: func() time.Time { return now }})
	if err := q.Load(vals); err != nil {
		t.Fatal(err)
	}
	q.ObserveFile("b", t0.Add(time.Second), s.scrape(10, t0.Add(time.Second)).s)
	now = now.Add(2 * time.Hour)
	if keys := q.Forget(); len(keys) != 0 {
		t.Fatalf("forgot %v, held by file b", keys)
	}
}

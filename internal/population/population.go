// Package population re-publishes the server's own histograms as deltas:
// the distribution over every request the server observed, exact or not,
// taken from the same snapshots the per-request attribution reads. It is
// the reference the exact per-request sample is compared with (coverage,
// bias; docs/metrics.md).
//
// # What is counted
//
// Per histogram series of one server process (the series' labels, the
// process known by process_start_time_seconds: its epoch), the snapshots
// seen are ordered by their counts. What is published for the series is
// the difference between the highest and the lowest snapshot seen — its
// hull — and it grows as snapshots arrive, in any order:
//
//   - a snapshot at or above the hull's top (every bucket, the count and
//     the sum) publishes the difference and becomes the top;
//   - one at or below the bottom publishes the difference the other way
//     and becomes the bottom;
//   - one inside the hull publishes nothing: its observations are counted;
//   - one that is neither (a bucket went down while the count went up: a
//     scrape of another process, a damaged file) publishes nothing and is
//     counted as inconsistent.
//
// Counts of one process never go down, so a delta is never negative and
// each observation between the first and the last snapshot is counted
// once. Observations before the first snapshot of a process are not
// counted: no request's window holds them either.
//
// A server without process_start_time_seconds (prometheus_client's
// multiprocess mode: SGLang, vLLM with several API servers) has one epoch
// for all its processes, and a restart only shows as counts that go down.
// Then the hull only grows upwards, with snapshots named no earlier than
// its bottom; and a snapshot below the top is taken as a restart only when
// its name is more than ResetGap later than the top's (a scrape started
// earlier but answered later is not a restart): the hull then starts again
// at that snapshot, publishing nothing for it. Everything between two
// consecutive snapshots of one process is counted; what falls between a
// restart and the first snapshot after it is not.
//
// # Restarts of the exporter
//
// The hulls are the record of what was published. Capture copies the
// hulls changed since the last durable write; once a scrape that showed
// them is answered, they are written (state.Records). A new process loads
// them (Load) and publishes only beyond them: what Prometheus saw is never
// shown again.
//
// # Forgetting
//
// Every server restart is a new epoch, hence new hulls, and a series'
// labels come from the server: kept forever, the hulls (and their
// records) would grow with every restart and every model ever served. A
// hull is only needed while a snapshot of its series can still be
// observed: in this run, or after a restart, from a file still in the
// directory. So the population keeps, per snapshot file observed
// (ObserveFile), the hulls it touched, and a hull none of whose files is
// in the directory any more (Gone) for Config.ForgetAfter is forgotten
// (Forget), as the state journal forgets requests. The published
// histograms are accumulated apart from the hulls (a hull's growth is
// added once, when it grows), so forgetting a hull never lowers them:
// counters stay monotonic. A file of a forgotten hull that comes back
// after ForgetAfter (a directory moved away and back) is counted again,
// as the journal would publish its request again. A server without
// process_start_time_seconds keeps one hull per series across its
// restarts; when no snapshot of it was in the directory for ForgetAfter,
// the next one starts a new hull, as after a restart: what the server
// observed in between is not counted (no snapshot file shows it).
package population

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// DefaultResetGap is the default of Config.ResetGap: longer than any scrape
// of the snapshot tools (the original one runs curl --max-time 10), shorter
// than a server takes to restart and load a model.
const DefaultResetGap = 10 * time.Second

// Skip reasons, label values of delta_exporter_population_snapshots_skipped_total.
const (
	// SkipInconsistent: the snapshot is not ordered with the hull (a bucket
	// or the sum went down while the count did not, other bucket bounds).
	SkipInconsistent = "inconsistent"
	// SkipOutOfOrder: a server without process_start_time_seconds, a
	// snapshot whose place cannot be told from a restart's.
	SkipOutOfOrder = "out_of_order"
	// SkipInvalid: a count or bucket that is not a non-negative integer.
	SkipInvalid = "invalid"
)

// SkipReasons lists the skip reasons.
var SkipReasons = []string{SkipInconsistent, SkipOutOfOrder, SkipInvalid}

// Config configures a Population.
type Config struct {
	// Label maps a model name to its published model_name (the collector
	// bounds them); nil publishes the name as is. Called with the
	// population's lock held, once per delta.
	Label func(metric parser.Metric, model string) string
	// ResetGap: see the package documentation. 0 means DefaultResetGap.
	ResetGap time.Duration
	// ForgetAfter: a hull none of whose snapshot files has been in the
	// directory for this long is forgotten (Forget). 0 means
	// DefaultForgetAfter.
	ForgetAfter time.Duration
	// Now is the clock of ForgetAfter; nil means time.Now.
	Now func() time.Time
}

// DefaultForgetAfter is the default of Config.ForgetAfter: the state
// journal's, for the same reason (a directory briefly empty must not
// count its files again).
const DefaultForgetAfter = time.Hour

// Hist is one published histogram: cumulative counts by upper bound.
type Hist struct {
	// Bounds are the finite upper bounds, ascending; +Inf is implied
	// (Count).
	Bounds []float64
	// Buckets[i] is the number of observations at or below Bounds[i].
	Buckets []uint64
	Count   uint64
	Sum     float64
}

// HistKey identifies a published histogram.
type HistKey struct {
	Metric parser.Metric
	Model  string // the published model_name
}

// PercentileBucket returns the bucket holding the observation of
// nearest rank p (percent): above lo and at most hi (+Inf past the last
// bound). The first bucket starts at 0: the families are durations and
// token counts. The histogram cannot say where inside.
func (h *Hist) PercentileBucket(p int) (lo, hi float64) {
	rank := max((p*int(h.Count)+99)/100, 1)
	for i, b := range h.Bounds {
		if h.Buckets[i] >= uint64(rank) {
			return lo, b
		}
		lo = b
	}
	return lo, math.Inf(1)
}

// key identifies one hull: one source series of one server process.
type key struct {
	epoch  string
	metric parser.Metric
	labels string
}

// point is one series of one snapshot.
type point struct {
	t       time.Time // the time in the file name
	count   uint64
	sum     float64
	buckets []uint64 // cumulative, one per bound
}

type hull struct {
	k      key
	model  string
	bounds []float64 // every bound, +Inf last
	lo, hi point
	ver    uint64 // bumped on every change
	// refs counts the fileSets holding the hull; orphaned is when it
	// dropped to 0 (zero while held).
	refs     int
	orphaned time.Time
}

// fileSet is the hulls one snapshot file touched, shared by consecutive
// files that touched the same hulls (most files of a server).
type fileSet struct {
	hulls []*hull
	files int
}

// orphan is a hull that lost its last file at since (queued in time
// order; stale once the hull is held again or orphaned anew).
type orphan struct {
	h     *hull
	since time.Time
}

// Population tracks the hulls and the histograms they published. Observe
// is called by the ingest goroutine; Gather and Capture by scrapes.
type Population struct {
	cfg Config

	mu      sync.Mutex
	hulls   map[key]*hull
	hists   map[HistKey]*Hist
	skipped map[string]uint64
	resets  uint64
	ver     uint64
	// durable is, per hull, the version last written (Durable).
	durable map[key]uint64
	scratch []uint64 // toPoint's buckets

	// files holds, per snapshot file observed by name and still in the
	// directory, the hulls it touched; last is the newest set, reused by
	// the next file that touches the same hulls.
	files     map[string]*fileSet
	last      *fileSet
	touched   []*hull // ObserveFile's scratch
	orphans   []orphan
	forgotten uint64
}

// New returns an empty Population.
func New(cfg Config) *Population {
	if cfg.ResetGap <= 0 {
		cfg.ResetGap = DefaultResetGap
	}
	if cfg.Label == nil {
		cfg.Label = func(_ parser.Metric, m string) string { return m }
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = DefaultForgetAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Population{cfg: cfg, hulls: map[key]*hull{}, hists: map[HistKey]*Hist{},
		skipped: map[string]uint64{}, durable: map[key]uint64{}, files: map[string]*fileSet{}}
}

// Epoch is the server process a snapshot belongs to: its
// process_start_time_seconds, "" without one (the same identity as the
// attribution's).
func Epoch(s *parser.Snapshot) string {
	if !s.HasProcessStartTime {
		return ""
	}
	return strconv.FormatFloat(s.ProcessStartTime, 'g', -1, 64)
}

// Observe takes one usable snapshot, named with time at, and publishes
// what it adds to the hulls of its series. Its hulls are not held by a
// file (see ObserveFile).
func (p *Population) Observe(at time.Time, s *parser.Snapshot) {
	p.ObserveFile("", at, s)
}

// ObserveFile is Observe for the snapshot file name: the hulls it
// touches are held until Gone(name). An empty name holds nothing.
func (p *Population) ObserveFile(name string, at time.Time, s *parser.Snapshot) {
	epoch := Epoch(s)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.touched = p.touched[:0]
	for i := range s.Series {
		sr := &s.Series[i]
		// Into a scratch point: most snapshots fall inside a hull or
		// extend it, and only a point that is kept is copied.
		pt, ok := p.toPoint(at, sr)
		if !ok {
			p.skipped[SkipInvalid]++
			continue
		}
		p.touched = append(p.touched, p.observe(key{epoch, sr.Metric, sr.Labels}, sr, pt))
	}
	if name != "" {
		p.hold(name)
	}
}

// hold records that file name touched p.touched. Called with mu held.
func (p *Population) hold(name string) {
	if old := p.files[name]; old != nil {
		// The same name again (a file replaced): its old hulls are
		// released, its new ones held.
		delete(p.files, name)
		p.release(old)
	}
	if p.last != nil && p.last.files > 0 && slices.Equal(p.last.hulls, p.touched) {
		p.last.files++
		p.files[name] = p.last
		return
	}
	set := &fileSet{hulls: slices.Clone(p.touched), files: 1}
	for _, h := range set.hulls {
		h.refs++
		h.orphaned = time.Time{}
	}
	p.files[name], p.last = set, set
}

// release drops one file of set. Called with mu held.
func (p *Population) release(set *fileSet) {
	if set.files--; set.files > 0 {
		return
	}
	if p.last == set {
		p.last = nil
	}
	now := p.cfg.Now()
	for _, h := range set.hulls {
		if h.refs--; h.refs == 0 {
			p.orphan(h, now)
		}
	}
}

func (p *Population) orphan(h *hull, now time.Time) {
	h.orphaned = now
	p.orphans = append(p.orphans, orphan{h, now})
}

// Gone tells the population that the snapshot files names are no longer
// in the directory: their hulls are forgotten ForgetAfter after their
// last file went (Forget). Names it does not hold are ignored.
func (p *Population) Gone(names []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range names {
		if set := p.files[name]; set != nil {
			delete(p.files, name)
			p.release(set)
		}
	}
}

// Forget drops the hulls that no file has held for ForgetAfter (held by
// none since they were loaded, or since their last file was Gone) and
// returns their record keys (Record.Key), for the record to drop too.
// The published histograms do not change.
func (p *Population) Forget() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	var keys []string
	n := 0
	for _, o := range p.orphans {
		if now.Sub(o.since) < p.cfg.ForgetAfter {
			break
		}
		n++
		h := o.h
		if h.refs > 0 || !h.orphaned.Equal(o.since) || p.hulls[h.k] != h {
			continue // held again since, or already forgotten
		}
		delete(p.hulls, h.k)
		delete(p.durable, h.k)
		keys = append(keys, recordKey(h.k))
		p.forgotten++
	}
	p.orphans = slices.Delete(p.orphans, 0, n)
	return keys
}

// Hulls returns the number of hulls held and forgotten so far.
func (p *Population) Hulls() (held int, forgotten uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.hulls), p.forgotten
}

// toPoint reads sr into p.scratch, valid until the next call.
func (p *Population) toPoint(at time.Time, sr *parser.Series) (point, bool) {
	pt := point{t: at, sum: sr.Sum, buckets: slices.Grow(p.scratch[:0], len(sr.Buckets))[:len(sr.Buckets)]}
	p.scratch = pt.buckets
	var ok bool
	if pt.count, ok = countOf(sr.Count); !ok || math.IsNaN(sr.Sum) || math.IsInf(sr.Sum, 0) {
		return point{}, false
	}
	for i, b := range sr.Buckets {
		if pt.buckets[i], ok = countOf(b.Count); !ok {
			return point{}, false
		}
	}
	return pt, true
}

// kept is pt with buckets of its own, to be stored in a hull.
func kept(pt point) point {
	pt.buckets = slices.Clone(pt.buckets)
	return pt
}

func sameBounds(bounds []float64, bs []parser.Bucket) bool {
	if len(bounds) != len(bs) {
		return false
	}
	for i, b := range bs {
		if bounds[i] != b.UpperBound {
			return false
		}
	}
	return true
}

func countOf(v float64) (uint64, bool) {
	if v < 0 || v != math.Trunc(v) || math.IsInf(v, 0) || v > 1<<53 {
		return 0, false
	}
	return uint64(v), true
}

// observe places pt, the point of series sr, with respect to the hull of
// k, and returns that hull. Called with mu held.
func (p *Population) observe(k key, sr *parser.Series, pt point) *hull {
	h := p.hulls[k]
	if h == nil {
		bounds := make([]float64, len(sr.Buckets))
		for i, b := range sr.Buckets {
			bounds[i] = b.UpperBound
		}
		p.ver++
		h = &hull{k: k, model: sr.Model, bounds: bounds, lo: kept(pt), hi: kept(pt), ver: p.ver}
		p.hulls[k] = h
		return h
	}
	p.place(k, h, sr, pt)
	return h
}

func (p *Population) place(k key, h *hull, sr *parser.Series, pt point) {
	if !sameBounds(h.bounds, sr.Buckets) {
		p.skipped[SkipInconsistent]++
		return
	}
	up, down := geq(&pt, &h.hi), geq(&h.lo, &pt)
	if k.epoch == "" {
		switch {
		case up && (!pt.t.Before(h.lo.t) || geq(&h.hi, &pt)):
			// Above the top and named no earlier than the bottom, or
			// the top itself (an idle server).
			p.extend(k, h, pt, true)
		case up:
			p.skipped[SkipOutOfOrder]++
		case pt.t.Sub(h.hi.t) > p.cfg.ResetGap:
			// Below the top, and named well after it: a restart.
			p.resets++
			p.ver++
			h.lo, h.hi, h.ver = kept(pt), kept(pt), p.ver
		case geq(&pt, &h.lo) && geq(&h.hi, &pt):
			// Inside: counted already.
		default:
			p.skipped[SkipOutOfOrder]++
		}
		return
	}
	switch {
	case up:
		p.extend(k, h, pt, true)
	case down:
		p.extend(k, h, pt, false)
	case geq(&pt, &h.lo) && geq(&h.hi, &pt):
	default:
		p.skipped[SkipInconsistent]++
	}
}

// extend publishes the difference between pt and the hull's top (up) or
// bottom, and makes pt the new top or bottom.
func (p *Population) extend(k key, h *hull, pt point, up bool) {
	end, to, from := &h.lo, &h.lo, &pt
	if up {
		end, to, from = &h.hi, &pt, &h.hi
	}
	if to.count == from.count && to.sum == from.sum && slices.Equal(to.buckets, from.buckets) {
		// The same state: only the time it was seen at widens.
		if up && pt.t.After(end.t) || !up && pt.t.Before(end.t) {
			end.t = pt.t
			p.ver++
			h.ver = p.ver
		}
		return
	}
	hk := HistKey{Metric: k.metric, Model: p.cfg.Label(k.metric, h.model)}
	hist := p.hists[hk]
	if hist == nil {
		hist = &Hist{Bounds: finite(h.bounds)}
		hist.Buckets = make([]uint64, len(hist.Bounds))
		p.hists[hk] = hist
	}
	hist.add(h.bounds, to, from)
	*end = kept(pt)
	p.ver++
	h.ver = p.ver
}

// add adds to - from, whose bounds are src. When src differs from the
// histogram's own bounds (a server whose buckets changed, or two series
// folded into one model_name), an observation is counted at a bound only
// if it is known to be at or below it: its own bucket's bound is at or
// below that bound. Count and sum are exact either way.
func (h *Hist) add(src []float64, to, from *point) {
	h.Count += to.count - from.count
	h.Sum += to.sum - from.sum
	j := -1
	for i, b := range h.Bounds {
		for j+1 < len(src) && src[j+1] <= b {
			j++
		}
		if j >= 0 {
			h.Buckets[i] += to.buckets[j] - from.buckets[j]
		}
	}
}

func finite(bounds []float64) []float64 {
	out := make([]float64, 0, len(bounds))
	for _, b := range bounds {
		if !math.IsInf(b, 1) {
			out = append(out, b)
		}
	}
	return out
}

// geq: a is at or above b in every bucket, the count and the sum.
func geq(a, b *point) bool {
	if a.count < b.count || a.sum < b.sum || len(a.buckets) != len(b.buckets) {
		return false
	}
	for i := range a.buckets {
		if a.buckets[i] < b.buckets[i] {
			return false
		}
	}
	return true
}

// Gather calls f with every published histogram, in metric then model
// order, and the counts of skipped snapshots and restarts seen. The
// histograms must not be kept.
func (p *Population) Gather(f func(HistKey, *Hist), skipped func(reason string, n uint64), resets func(n uint64)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]HistKey, 0, len(p.hists))
	for k := range p.hists {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b HistKey) int {
		if c := cmp.Compare(a.Metric, b.Metric); c != 0 {
			return c
		}
		return cmp.Compare(a.Model, b.Model)
	})
	for _, k := range keys {
		f(k, p.hists[k])
	}
	if skipped != nil {
		for _, r := range SkipReasons {
			skipped(r, p.skipped[r])
		}
	}
	if resets != nil {
		resets(p.resets)
	}
}

// Hists returns a copy of every published histogram (reports).
func (p *Population) Hists() map[HistKey]Hist {
	out := map[HistKey]Hist{}
	p.Gather(func(k HistKey, h *Hist) {
		out[k] = Hist{Bounds: slices.Clone(h.Bounds), Buckets: slices.Clone(h.Buckets), Count: h.Count, Sum: h.Sum}
	}, nil, nil)
	return out
}

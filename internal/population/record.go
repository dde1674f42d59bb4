package population

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Record is one hull as written to the state: Key identifies it (a later
// record with the same key replaces an earlier one), Value holds it.
type Record struct {
	Key, Value string
	ver        uint64
	k          key
}

// recordJSON is a hull in the state file. Floats are written as strings
// ('g', shortest round trip; "+Inf"), so that a sum read back is the sum
// written, bit for bit, and +Inf survives JSON.
type recordJSON struct {
	Epoch  string    `json:"epoch"`
	Metric string    `json:"metric"`
	Labels string    `json:"labels"`
	Model  string    `json:"model"`
	Bounds []string  `json:"bounds"`
	Lo     pointJSON `json:"lo"`
	Hi     pointJSON `json:"hi"`
}

type pointJSON struct {
	T       int64    `json:"t"` // Unix microseconds (the file names' precision)
	Count   uint64   `json:"count"`
	Sum     string   `json:"sum"`
	Buckets []uint64 `json:"buckets"`
}

func recordKey(k key) string {
	b, _ := json.Marshal([]string{k.epoch, k.metric.Name(), k.labels})
	return string(b)
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func encodePoint(p *point) pointJSON {
	return pointJSON{T: p.t.UnixMicro(), Count: p.count, Sum: formatFloat(p.sum), Buckets: p.buckets}
}

// Capture returns the hulls changed since they were last made durable
// (Durable). A scrape captures right after it gathered, with nothing
// observed in between (the caller excludes Observe), so the records are
// what that scrape shows.
func (p *Population) Capture() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Record
	for k, h := range p.hulls {
		if h.ver <= p.durable[k] {
			continue
		}
		r := recordJSON{Epoch: k.epoch, Metric: k.metric.Name(), Labels: k.labels, Model: h.model,
			Lo: encodePoint(&h.lo), Hi: encodePoint(&h.hi)}
		for _, b := range h.bounds {
			r.Bounds = append(r.Bounds, formatFloat(b))
		}
		v, _ := json.Marshal(r)
		out = append(out, Record{Key: recordKey(k), Value: string(v), ver: h.ver, k: k})
	}
	return out
}

// Fresh returns the records of recs that are newer than what is durable:
// a scrape that gathered earlier but writes later must not replace a
// larger hull another scrape already wrote (and showed) with its smaller
// one. Call Fresh, write, Durable under one lock.
func (p *Population) Fresh(recs []Record) []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := recs[:0:0]
	for _, r := range recs {
		// A hull forgotten since it was captured is not written back.
		if p.hulls[r.k] != nil && r.ver > p.durable[r.k] {
			out = append(out, r)
		}
	}
	return out
}

// Durable marks captured records as written: they are not captured again
// until their hull changes.
func (p *Population) Durable(recs []Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range recs {
		if r.ver > p.durable[r.k] {
			p.durable[r.k] = r.ver
		}
	}
}

// Load restores hulls written by an earlier run (before any Observe):
// their snapshots were shown to Prometheus and publish nothing again.
// A value that does not decode is an error; the caller treats the state as
// damaged.
func (p *Population) Load(values []string) error {
	hulls := make(map[key]*hull, len(values))
	for _, v := range values {
		var r recordJSON
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return fmt.Errorf("population record: %w", err)
		}
		h, k, err := decodeHull(&r)
		if err != nil {
			return err
		}
		hulls[k] = h
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Held by no file until the scan observes theirs: one whose files
	// are all gone is forgotten ForgetAfter from now.
	now := p.cfg.Now()
	for k, h := range hulls {
		p.ver++
		h.ver = p.ver
		p.hulls[k] = h
		p.durable[k] = h.ver
		p.orphan(h, now)
	}
	return nil
}

func decodeHull(r *recordJSON) (*hull, key, error) {
	m, ok := metricByName(r.Metric)
	if !ok {
		return nil, key{}, fmt.Errorf("population record: unknown metric %q", r.Metric)
	}
	k := key{epoch: r.Epoch, metric: m, labels: r.Labels}
	h := &hull{k: k, model: r.Model}
	for _, s := range r.Bounds {
		b, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, key{}, fmt.Errorf("population record: bound %q", s)
		}
		h.bounds = append(h.bounds, b)
	}
	if len(h.bounds) == 0 || !math.IsInf(h.bounds[len(h.bounds)-1], 1) {
		return nil, key{}, errors.New("population record: bounds do not end with +Inf")
	}
	var err error
	if h.lo, err = decodePoint(&r.Lo, len(h.bounds)); err != nil {
		return nil, key{}, err
	}
	if h.hi, err = decodePoint(&r.Hi, len(h.bounds)); err != nil {
		return nil, key{}, err
	}
	if !geq(&h.hi, &h.lo) {
		return nil, key{}, errors.New("population record: top below bottom")
	}
	return h, k, nil
}

func decodePoint(p *pointJSON, n int) (point, error) {
	sum, err := strconv.ParseFloat(p.Sum, 64)
	if err != nil || math.IsNaN(sum) || math.IsInf(sum, 0) || len(p.Buckets) != n {
		return point{}, errors.New("population record: malformed point")
	}
	return point{t: time.UnixMicro(p.T), count: p.Count, sum: sum, buckets: p.Buckets}, nil
}

func metricByName(name string) (parser.Metric, bool) {
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		if m.Name() == name {
			return m, true
		}
	}
	return 0, false
}

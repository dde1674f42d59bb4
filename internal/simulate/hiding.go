package simulate

// Hiding observations from one scrape: a server with several API server
// processes (vLLM --api-server-count > 1) merges per-process files when it
// renders /metrics, reading each process's state at a slightly different
// moment of the render. The simulation applies every observation when it
// is made and, to render such a scrape, takes back for that scrape only
// the observations made after the moment the render read their process.

// hiddenObs is one histogram observation as Server.observeN made it.
type hiddenObs struct {
	ser    *series
	v, sum float64
	n      uint64
}

// savedSeries is a series' state before observations were taken back.
type savedSeries struct {
	ser   *series
	count uint64
	sum   float64
	idx   int
	c     uint64
}

// recordObservations makes the server append every histogram observation
// it makes to *to, until called with nil.
func (s *Server) recordObservations(to *[]hiddenObs) {
	s.mu.Lock()
	s.hide = to
	s.mu.Unlock()
}

// appendTextWithout renders a scrape as AppendText does, without the
// given observations, and leaves the state exactly as it was (restored
// from saved values, not recomputed, so no float drift).
func (s *Server) appendTextWithout(b []byte, hidden []hiddenObs, saved []savedSeries) ([]byte, []savedSeries) {
	s.mu.Lock()
	saved = saved[:0]
	for _, h := range hidden {
		idx := searchBound(h.ser.bounds, h.v)
		saved = append(saved, savedSeries{ser: h.ser, count: h.ser.count, sum: h.ser.sum, idx: idx, c: h.ser.counts[idx]})
		h.ser.count -= h.n
		h.ser.sum -= h.sum
		h.ser.counts[idx] -= h.n
	}
	s.mu.Unlock()
	b = s.AppendText(b)
	s.mu.Lock()
	for i := len(saved) - 1; i >= 0; i-- {
		v := saved[i]
		v.ser.count, v.ser.sum, v.ser.counts[v.idx] = v.count, v.sum, v.c
	}
	s.mu.Unlock()
	return b, saved
}

// finishCount is the e2e histogram's count summed over its series, as a
// scrape without the hidden observations shows it (capture reads it to
// tell whether a request's finish has been observed).
func (s *Server) finishCount(hidden []hiddenObs) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	seen := map[*series]bool{}
	for _, p := range s.keys {
		if p.e2e != nil && !seen[p.e2e] {
			seen[p.e2e] = true
			n += p.e2e.count
		}
	}
	for _, h := range hidden {
		if seen[h.ser] {
			n -= h.n
		}
	}
	return n
}

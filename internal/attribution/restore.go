package attribution

import "github.com/delta-exporter/delta-exporter/parser"

// AssumptionByName returns the assumption named name (Assumption.Name);
// ok is false for a name this version does not know (one an earlier or
// later version recorded).
func AssumptionByName(name string) (a Assumption, ok bool) {
	for a := Assumption(0); a < NumAssumptions; a++ {
		if a.Name() == name {
			return a, true
		}
	}
	return 0, false
}

// Restore preloads what an earlier exporter process learned about server
// processes' assumptions (serve keeps it next to its state file): the
// promise is that an assumption the data contradicted is not used again
// for that server process's lifetime, not the exporter's, and retention
// may have deleted the files that contradicted it. Call it before the
// points of those epochs are added. Per saved status (Assumption, State,
// Agreed and Contradiction are read; Note and Windows are not):
//
//   - contradicted stays contradicted, with its evidence as recorded
//     (PublishedBefore counts the earlier process's publications);
//   - confirmed stays confirmed: it was earned on the same server process;
//   - unchecked is not restored: its agreements came from files that may
//     still be in the directory, which this process reads and counts
//     again (restored, six requests read twice would count as twelve).
//
// A state the timeline already holds is never weakened: a contradiction
// stands, a confirmation is not undone. OnContradiction is not called:
// the contradiction is not new, and was reported when it happened.
// Restore counts as a change of the states (AssumptionChanges).
//
// Nothing is restored for the epoch "": it is every server that exposes
// no process_start_time_seconds (llm-d-inference-sim, vLLM with several
// API server processes), not one process, and what runs after the
// exporter restarts may be another server or version. Its evidence starts
// over with each exporter process, as it did before states were kept.
func (t *Timeline) Restore(saved []ServerAssumptions) {
	if t.given {
		return
	}
	for _, sa := range saved {
		if sa.Epoch == "" {
			continue
		}
		s := t.server(sa.Epoch)
		for _, as := range sa.Status {
			if as.Assumption >= NumAssumptions {
				continue
			}
			s.restore(as)
		}
	}
	t.changes++
}

// restore merges one saved status into s.
func (s *server) restore(as AssumptionStatus) {
	a := as.Assumption
	st := &s.st[a]
	if st.state == Contradicted || as.State == Unchecked {
		return
	}
	st.agreed = max(st.agreed, as.Agreed)
	if as.State == Confirmed {
		for g, h := range holds {
			if h == a {
				// noteVouches recomputes these states from the windows
				// capture vouched for: the earlier process's count
				// carries on, so a confirmation earned there stands.
				w := &s.a1.windows[parser.Group(g)]
				w.Capture = max(w.Capture, as.Agreed)
			}
		}
	}
	switch as.State {
	case Contradicted:
		why := Contradiction{Epoch: s.epoch, Assumption: a}
		if as.Contradiction != nil {
			why.RequestID, why.Detail, why.PublishedBefore = as.Contradiction.RequestID, as.Contradiction.Detail, as.Contradiction.PublishedBefore
		}
		st.state, st.why = Contradicted, &why
	case Confirmed:
		st.state = Confirmed
	}
}

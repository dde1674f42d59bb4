package serve

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/state"
)

// maxRecordedProcesses bounds the server processes whose assumption
// states the record keeps: the most recently changed ones. A server that
// restarts in a loop makes a new process each time, and the file must not
// grow with them; 32 covers every engine of a few servers and their
// recent restarts.
const maxRecordedProcesses = 32

// assumptionRecord makes what the data said about each server process's
// assumptions durable (<state file>.assumptions), so that an exporter
// restart does not forget a contradiction whose evidence retention has
// since deleted: an assumption contradicted on a server process is not
// used again for that process's lifetime, however often the exporter
// restarts (docs/guarantees.md).
//
// Format: a state.Records file. The key of a record is the server
// process's epoch (process_start_time_seconds as the timeline spells it;
// "" when the server exposes none), a slash and the assumption's name
// (attribution.Assumption.Name, never its number: names are the stable
// interface, and one this version does not know is ignored). The value is
// space-separated:
//
//	<seq> <state> <agreed>
//	<seq> contradicted <agreed> <published before> <request id> <detail>
//
// request id and detail Go-quoted; seq orders the processes by when their
// states last changed (the bound keeps the latest). For example:
//
//	delta-exporter records 1
//	4abad568 "1767225600/ttft_within_e2e" "3 contradicted 4 0 \"req-7\" \"TTFT 0.5s > e2e 0.23s\""
//
// Every record of a process is written (appended, fsynced) whenever one
// of its states changes: a few dozen times in a process's life. Only the
// ingest loop uses it: no lock.
type assumptionRecord struct {
	rec     *state.Records
	log     *slog.Logger
	metrics state.Metrics
	seq     uint64
	// inFile: the processes in the file, and their seq.
	inFile map[string]uint64
	// written: each process's records (name → value without seq) as last
	// written or loaded, including processes the bound dropped: one is
	// written again only when its states change.
	written map[string]map[string]string
	failing bool // the last write failed
	// pending: the states of the failed write, for retry;
	// pendingContradiction: a contradiction among them is unwritten.
	pending              []attribution.ServerAssumptions
	pendingContradiction bool
}

// openAssumptionRecord opens the records file next to the state file and
// returns the states an earlier run recorded, for ingest.Config.Restore,
// oldest process first. Call after state.Open (which holds the lock the
// files share).
func openAssumptionRecord(stateFile string, log *slog.Logger, metrics state.Metrics) (*assumptionRecord, []attribution.ServerAssumptions, error) {
	path := stateFile + ".assumptions"
	rec, values, rep, err := state.OpenRecords(path, log, time.Now())
	if err != nil {
		return nil, nil, err
	}
	if rep.CorruptMovedTo != "" {
		metrics.Recovered(state.RecoveredCorrupt)
		log.Error("assumption states recorded by an earlier run lost: each server process's assumptions are checked again from the files still in the directory", "file", path)
	}
	if rep.Dropped > 0 {
		metrics.Recovered(state.RecoveredUnfinished)
	}
	r := &assumptionRecord{rec: rec, log: log, metrics: metrics, inFile: map[string]uint64{}, written: map[string]map[string]string{}}
	type process struct {
		seq    uint64
		status []attribution.AssumptionStatus
	}
	procs := map[string]*process{}
	var ignore []string
	undecodable := 0
	for k, v := range values {
		epoch, name, seq, as, err := parseAssumptionRecord(k, v)
		if err != nil {
			if !errors.Is(err, errUnknownAssumption) {
				undecodable++
			}
			// An assumption a later version added, or one this version
			// removed: nothing to restore.
			log.Debug("assumption record ignored", "key", k, "err", err)
			ignore = append(ignore, k)
			continue
		}
		p := procs[epoch]
		if p == nil {
			p = &process{}
			procs[epoch] = p
			r.written[epoch] = map[string]string{}
		}
		p.seq = max(p.seq, seq)
		p.status = append(p.status, as)
		_, r.written[epoch][name], _ = strings.Cut(v, " ")
		r.seq = max(r.seq, seq)
	}
	if undecodable > 0 {
		log.Warn("assumption records that do not decode ignored (written by another version?): those assumptions are checked again", "file", path, "records", undecodable)
	}
	epochs := slices.Collect(maps.Keys(procs))
	slices.SortFunc(epochs, func(a, b string) int {
		if c := compareUint(procs[a].seq, procs[b].seq); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, e := range epochs {
		r.inFile[e] = procs[e].seq
	}
	ignore = append(ignore, r.evict()...)
	if err := rec.Delete(ignore); err != nil {
		log.Warn("cannot compact the assumption records", "err", err)
	}
	var out []attribution.ServerAssumptions
	n, contradicted := 0, 0
	for _, e := range epochs {
		if _, kept := r.inFile[e]; !kept {
			continue
		}
		st := procs[e].status
		slices.SortFunc(st, func(a, b attribution.AssumptionStatus) int { return int(a.Assumption) - int(b.Assumption) })
		for _, as := range st {
			if as.State == attribution.Contradicted {
				contradicted++
			}
		}
		n += len(st)
		out = append(out, attribution.ServerAssumptions{Epoch: e, Status: st})
	}
	if len(out) > 0 {
		log.Info("assumption states recorded by an earlier run restored: an assumption contradicted on a server process stays unused for it",
			"processes", len(out), "assumptions", n, "contradicted", contradicted)
	}
	return r, out, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// save writes the records of every process whose states changed since
// they were last written. A failed write is kept for retry (durable).
func (r *assumptionRecord) save(servers []attribution.ServerAssumptions) {
	if r == nil {
		return
	}
	recs := map[string]string{}
	changed := map[string]map[string]string{}
	seqs := map[string]uint64{}
	for _, sa := range servers { // in the order first seen
		if sa.Epoch == "" {
			// Every server without process_start_time_seconds: not one
			// process, so nothing of it is restored (Timeline.Restore).
			continue
		}
		vals := make(map[string]string, len(sa.Status))
		for _, as := range sa.Status {
			vals[as.Assumption.Name()] = formatAssumption(as)
		}
		if maps.Equal(vals, r.written[sa.Epoch]) {
			continue
		}
		r.seq++
		changed[sa.Epoch], seqs[sa.Epoch] = vals, r.seq
		for name, v := range vals {
			recs[sa.Epoch+"/"+name] = strconv.FormatUint(r.seq, 10) + " " + v
		}
	}
	if len(changed) == 0 {
		return
	}
	err := r.rec.Write(recs)
	r.metrics.Write(err)
	if err != nil {
		r.pendingContradiction = false
		for e, vals := range changed {
			for name, v := range vals {
				if isContradiction(v) && r.written[e][name] != v {
					r.pendingContradiction = true
				}
			}
		}
		if !r.failing {
			r.log.Error("cannot write the assumption states; while a contradiction among them is unwritten, retention deletes no snapshot file", "err", err, "contradiction", r.pendingContradiction)
		}
		r.failing, r.pending = true, servers
		return
	}
	if r.failing {
		r.log.Info("assumption states written again")
		r.failing, r.pending, r.pendingContradiction = false, nil, false
	}
	for e, vals := range changed {
		r.written[e] = vals
		r.inFile[e] = seqs[e]
	}
	if drop := r.evict(); len(drop) > 0 {
		if err := r.rec.Delete(drop); err != nil {
			r.log.Warn("cannot compact the assumption records", "err", err)
		}
	}
}

// durable retries a failed write and reports whether every contradiction
// given to save is written: the files that showed one may be deleted only
// then. A failed write of other states (a confirmation, a new process)
// does not stop retention: on a full disk shared with the snapshots,
// retention is what frees it.
func (r *assumptionRecord) durable() bool {
	if r == nil {
		return true
	}
	if r.failing {
		r.save(r.pending)
	}
	return !r.failing || !r.pendingContradiction
}

// evict drops from inFile the processes beyond maxRecordedProcesses and
// returns their records' keys: first those without a contradiction, then
// those with one, each the least recently changed first. A process whose
// states settled early (a long-lived server whose A1 was contradicted in
// its first minute) changes no more: by change alone, 32 processes of a
// sibling in a restart loop would push out the contradiction the record
// exists to keep.
func (r *assumptionRecord) evict() []string {
	if len(r.inFile) <= maxRecordedProcesses {
		return nil
	}
	contradicted := func(e string) bool {
		for _, v := range r.written[e] {
			if isContradiction(v) {
				return true
			}
		}
		return false
	}
	epochs := slices.Collect(maps.Keys(r.inFile))
	slices.SortFunc(epochs, func(a, b string) int {
		if ca, cb := contradicted(a), contradicted(b); ca != cb {
			if ca {
				return 1
			}
			return -1
		}
		return compareUint(r.inFile[a], r.inFile[b])
	})
	var keys []string
	for _, e := range epochs[:len(epochs)-maxRecordedProcesses] {
		delete(r.inFile, e)
		for name := range r.written[e] {
			keys = append(keys, e+"/"+name)
		}
	}
	return keys
}

func (r *assumptionRecord) close() {
	if r != nil {
		r.rec.Close()
	}
}

// isContradiction reports whether v, a record's value without its seq
// (formatAssumption), is a contradiction.
func isContradiction(v string) bool {
	return strings.HasPrefix(v, string(attribution.Contradicted)+" ")
}

// formatAssumption is a record's value without its seq.
func formatAssumption(as attribution.AssumptionStatus) string {
	s := string(as.State) + " " + strconv.Itoa(as.Agreed)
	if as.State != attribution.Contradicted {
		return s
	}
	var c attribution.Contradiction
	if as.Contradiction != nil {
		c = *as.Contradiction
	}
	return s + " " + strconv.Itoa(c.PublishedBefore) + " " + strconv.Quote(c.RequestID) + " " + strconv.Quote(c.Detail)
}

var errUnknownAssumption = errors.New("unknown assumption")

// parseAssumptionRecord decodes one record (formatAssumption, after its
// seq).
func parseAssumptionRecord(key, value string) (epoch, name string, seq uint64, as attribution.AssumptionStatus, err error) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return "", "", 0, as, errors.New("key without a slash")
	}
	epoch, name = key[:i], key[i+1:]
	a, ok := attribution.AssumptionByName(name)
	if !ok {
		return "", "", 0, as, fmt.Errorf("%w %q", errUnknownAssumption, name)
	}
	as.Assumption = a
	f := strings.SplitN(value, " ", 4)
	if len(f) < 3 {
		return "", "", 0, as, errors.New("too few fields")
	}
	if seq, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return "", "", 0, as, fmt.Errorf("seq: %w", err)
	}
	if as.Agreed, err = strconv.Atoi(f[2]); err != nil || as.Agreed < 0 {
		return "", "", 0, as, fmt.Errorf("agreed %q", f[2])
	}
	switch st := attribution.State(f[1]); st {
	case attribution.Unchecked, attribution.Confirmed:
		if len(f) != 3 {
			return "", "", 0, as, errors.New("trailing fields")
		}
		as.State = st
	case attribution.Contradicted:
		if len(f) != 4 {
			return "", "", 0, as, errors.New("contradiction without its evidence")
		}
		c, err := parseContradiction(f[3])
		if err != nil {
			return "", "", 0, as, err
		}
		c.Epoch, c.Assumption = epoch, a
		as.State, as.Contradiction = st, &c
	default:
		return "", "", 0, as, fmt.Errorf("state %q", f[1])
	}
	return epoch, name, seq, as, nil
}

// parseContradiction decodes `<published before> <quoted id> <quoted detail>`.
func parseContradiction(s string) (attribution.Contradiction, error) {
	var c attribution.Contradiction
	pub, rest, ok := strings.Cut(s, " ")
	n, err := strconv.Atoi(pub)
	if !ok || err != nil || n < 0 {
		return c, errors.New("malformed published count")
	}
	c.PublishedBefore = n
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return c, errors.New("malformed request id")
	}
	c.RequestID, _ = strconv.Unquote(q)
	rest, ok = strings.CutPrefix(rest[len(q):], " ")
	if !ok {
		return c, errors.New("malformed contradiction")
	}
	q, err = strconv.QuotedPrefix(rest)
	if err != nil || len(q) != len(rest) {
		return c, errors.New("malformed detail")
	}
	c.Detail, _ = strconv.Unquote(q)
	return c, nil
}

// recordedAssumptions is the ingester's Metrics: the states are made
// durable before they are shown, and before the values decided with them
// are published (ingest decides in that order).
type recordedAssumptions struct {
	ingest.Metrics
	rec *assumptionRecord
}

func (m recordedAssumptions) SetAssumptions(servers []attribution.ServerAssumptions) {
	m.rec.save(servers)
	m.Metrics.SetAssumptions(servers)
}

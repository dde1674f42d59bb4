package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// recordsHeader is the first line of a records file.
const recordsHeader = "delta-exporter records 1"

// Records is a durable map of keyed records, written next to the state
// file (<state file>.population) for what a scrape showed that is not a
// request: the population hulls (package population); and for what the
// data said about server processes' assumptions (<state file>.assumptions,
// written when they change, package serve). A later record
// with the same key replaces an earlier one. Like the Journal's entries,
// records are written (appended and fsynced) after a scrape gathered and
// before it is answered.
//
// Format, text: a header line, then one record a line in the journal's
// framing (file.go: the record's CRC-32C, 8 hex digits, a space, the
// record), each line checked on its own; a record is a Go-quoted key and
// a Go-quoted value:
//
//	delta-exporter records 1
//	98f1811c "hull/a" "1 2 3"
//
// A last line that is cut short or fails its checksum is the tail of a
// write a crash interrupted: dropped (what it held was never shown). A bad
// line before the last is corruption: the file is moved aside
// (.corrupt-<time>) and the map starts empty.
type Records struct {
	log *slog.Logger

	mu   sync.Mutex
	file appendFile
	live map[string]string
}

// RecordsReport says what OpenRecords found.
type RecordsReport struct {
	Created        bool
	Dropped        int // lines of a cut-short write dropped
	CorruptMovedTo string
	CorruptErr     error
}

// OpenRecords loads path (creating it if missing). Call it while holding
// the state file's lock (after OpenJournal), so that one exporter owns both.
// now names a corrupt file moved aside.
func OpenRecords(path string, log *slog.Logger, now time.Time) (*Records, map[string]string, RecordsReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Records{file: appendFile{path: path}, log: log.With("component", "state"), live: map[string]string{}}
	var rep RecordsReport
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rep.Created = true
	case err != nil:
		return nil, nil, rep, fmt.Errorf("reading %s: %w", path, err)
	default:
		live, dropped, perr := ParseRecords(data)
		if perr != nil {
			moved := path + ".corrupt-" + now.UTC().Format("20060102T150405.000000000Z")
			if err := os.Rename(path, moved); err != nil {
				return nil, nil, rep, fmt.Errorf("moving corrupt %s aside: %w", path, err)
			}
			rep.CorruptMovedTo, rep.CorruptErr = moved, perr
			// The caller says what starting empty costs (serve: the
			// population shown again, assumptions learned again).
			r.log.Error("records file is corrupt; moved it aside and started empty",
				"file", path, "moved_to", moved, "err", perr)
		} else {
			r.live, rep.Dropped = live, dropped
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rep.Created || rep.CorruptMovedTo != "" || rep.Dropped > 0 {
		err = r.rewrite()
	} else {
		err = r.file.openAppend()
	}
	if err != nil {
		return nil, nil, rep, err
	}
	out := make(map[string]string, len(r.live))
	for k, v := range r.live {
		out[k] = v
	}
	return r, out, rep, nil
}

// Write makes records durable: appended and fsynced, or the whole file
// rewritten when it holds much more than the live records.
func (r *Records) Write(recs map[string]string) error {
	if len(recs) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var buf bytes.Buffer
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.live[k] = recs[k]
		writeKeyValue(&buf, k, recs[k])
	}
	if !r.file.canAppend() || r.file.size+int64(buf.Len()) > 2*r.liveSize()+64<<10 {
		return r.rewrite()
	}
	return r.file.append(buf.Bytes())
}

// Delete forgets the records of keys. Nothing is written for them: the
// file is rewritten without them once it holds much more than the live
// records, and until then a restart loads them again (the population
// forgets them again: a record that outlived its use is never wrong).
func (r *Records) Delete(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		delete(r.live, k)
	}
	if r.file.canAppend() && r.file.size <= 2*r.liveSize()+64<<10 {
		return nil
	}
	return r.rewrite()
}

// Len returns the number of live records.
func (r *Records) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// Close releases the file.
func (r *Records) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.file.close()
}

func (r *Records) liveSize() int64 {
	var n int64
	for k, v := range r.live {
		n += int64(len(k) + len(v) + 16)
	}
	return n
}

// writeKeyValue appends one framed key-value record.
func writeKeyValue(buf *bytes.Buffer, k, v string) {
	rec := strconv.AppendQuote(nil, k)
	rec = append(rec, ' ')
	rec = strconv.AppendQuote(rec, v)
	writeRecord(buf, rec)
}

// rewrite writes every live record to a new file and renames it over the
// old one. Called with mu held.
func (r *Records) rewrite() error {
	keys := make([]string, 0, len(r.live))
	for k := range r.live {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.WriteString(recordsHeader + "\n")
	for _, k := range keys {
		writeKeyValue(&buf, k, r.live[k])
	}
	return r.file.rewrite(func(w *bufio.Writer) { w.Write(buf.Bytes()) })
}

// ParseRecords reads a records file: the live records (last one per key
// wins) and the number of lines dropped as the tail of a cut-short write.
func ParseRecords(data []byte) (map[string]string, int, error) {
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || string(first) != recordsHeader {
		return nil, 0, fmt.Errorf("first line is not %q", recordsHeader)
	}
	live := map[string]string{}
	lineNo := 1
	for len(rest) > 0 {
		line, next, complete := bytes.Cut(rest, []byte("\n"))
		lineNo++
		k, v, err := parseKeyValue(line)
		if !complete || err != nil {
			if len(next) == 0 {
				return live, 1, nil // the last line: a write cut short
			}
			if err == nil {
				err = errors.New("no final newline")
			}
			return nil, 0, fmt.Errorf("line %d: %w", lineNo, err)
		}
		live[k] = v
		rest = next
	}
	return live, 0, nil
}

func parseKeyValue(line []byte) (string, string, error) {
	rec, err := verify(line)
	if err != nil {
		return "", "", err
	}
	rest := string(rec)
	kq, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", "", errors.New("malformed key")
	}
	k, _ := strconv.Unquote(kq)
	rest = rest[len(kq):]
	if !strings.HasPrefix(rest, " ") {
		return "", "", errors.New("malformed record")
	}
	v, err := strconv.Unquote(rest[1:])
	if err != nil {
		return "", "", errors.New("malformed value")
	}
	return k, v, nil
}

package capture

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// TimelineID is the request id of timeline snapshots:
// capture_timeline_{ts}.txt.
const TimelineID = "capture"

// MaxIDLen is the longest request id SanitizeID returns. With a suffix
// (idSuffixLen), the longest stage and the timestamp, a name stays within
// the 255 bytes most filesystems allow.
const MaxIDLen = 200

// idSuffixLen is the length of the suffix that tells apart the names of
// requests the server gave the same id: '+' and 8 hex digits.
const idSuffixLen = 9

// InfoVersion is the version of the info sidecar format (Info.Version).
const InfoVersion = 1

// SanitizeID turns an id taken from a response (which vLLM builds from the
// client's X-Request-Id header without checking it) into one that is safe
// as the first part of a file name in the snapshot directory. Letters,
// digits, '-', '_' and '.' (not leading) are kept; every other byte,
// including '%', '/', '\\' and NUL, is written as %XX, so distinct ids stay
// distinct and ordinary ids (chatcmpl-…, cmpl-…, resp_…) are unchanged.
// An id whose encoding is longer than MaxIDLen is cut and ends in '~' and
// 16 hex digits of the SHA-256 of the whole id. The result never contains
// a path separator, never starts with '.', and is "" only for "".
func SanitizeID(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if isIDByte(c) && (c != '.' || i > 0) {
			b.WriteByte(c)
			continue
		}
		const hexDigits = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	s := b.String()
	if len(s) <= MaxIDLen {
		return s
	}
	sum := sha256.Sum256([]byte(raw))
	cut := MaxIDLen - 17
	// Do not leave half of a %XX escape before the marker.
	if j := strings.LastIndexByte(s[:cut], '%'); j >= 0 && j > cut-3 {
		cut = j
	}
	return s[:cut] + "~" + hex.EncodeToString(sum[:8])
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// generatedID is the id of a request whose response named none (an error,
// a client that left before the first byte, a body capture could not read).
func generatedID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "capture-" + hex.EncodeToString(b[:])
}

// Info is the content of the sidecar {request_id}_info_{ts}.json, written
// for every inference request whose response came from the upstream. The
// format is documented in docs/capture.md; fields are only ever added.
type Info struct {
	Version int `json:"version"`
	// RequestID is the id in the file names (sanitised, see SanitizeID).
	RequestID string `json:"request_id"`
	// UpstreamID is the id as the response gave it, when sanitising changed
	// it (cut to 1024 bytes).
	UpstreamID string `json:"upstream_id,omitempty"`
	// ServerID is the id the server gave (sanitised as in the names) when
	// the names carry a suffix: another request had that id recently.
	ServerID string `json:"server_id,omitempty"`
	// IDSource is "response" when the id came from the response body,
	// "generated" otherwise.
	IDSource string `json:"id_source"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	// Model is the response's model field.
	Model  string `json:"model,omitempty"`
	Stream bool   `json:"stream"`
	// Status is the upstream's HTTP status.
	Status int `json:"status"`
	// ClientDisconnected is true when the client went away before the
	// response ended; the upstream request was then cancelled.
	ClientDisconnected bool `json:"client_disconnected"`
	// UpstreamError is set when the response body broke off on the upstream
	// side.
	UpstreamError string `json:"upstream_error,omitempty"`

	// ReceivedAt is when the proxy received the request; FirstByteAt and
	// LastByteAt when the first response body byte and the end of the body
	// arrived from the upstream. All UTC.
	ReceivedAt  time.Time `json:"received_at"`
	FirstByteAt time.Time `json:"first_byte_at,omitzero"`
	LastByteAt  time.Time `json:"last_byte_at,omitzero"`

	// Before, First and After describe the snapshot files written for the
	// request; nil when that file was not written.
	Before *SnapshotRef `json:"before,omitempty"`
	First  *SnapshotRef `json:"first,omitempty"`
	After  *SnapshotRef `json:"after,omitempty"`
	// AfterObserved is true when the after scrape shows the finish
	// histogram's count above the before scrape's: the request's own finish
	// observation has (very likely) landed. False when the after was written
	// at --capture.after-timeout without seeing it move, or the server has
	// no such histogram.
	AfterObserved bool `json:"after_observed"`
	// AfterError says why no after file was written (the pair is abandoned:
	// no after will come for this request).
	AfterError string `json:"after_error,omitempty"`

	// Usage is the response's usage object, when present.
	Usage *Usage `json:"usage,omitempty"`
	// ServerMetrics is vLLM's per-request metrics object
	// (--enable-per-request-metrics), as the response gave it.
	ServerMetrics map[string]any `json:"server_metrics,omitempty"`
}

// SnapshotRef names one snapshot file of a request and when its scrape ran.
type SnapshotRef struct {
	File string `json:"file"`
	// ScrapeStartedAt is when the scrape's GET was sent, ScrapeDoneAt when
	// the upstream's answer arrived (the timestamp in the file name): the
	// content reflects the server at a moment between the two.
	ScrapeStartedAt time.Time `json:"scrape_started_at"`
	ScrapeDoneAt    time.Time `json:"scrape_done_at"`
	// E2ECount is the finish histogram's count in the file (summed over
	// series), when it has one.
	E2ECount *float64 `json:"e2e_count,omitempty"`
}

// Usage is the token usage a response reported. The Responses API's
// input_tokens/output_tokens are stored as prompt/completion tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens,omitempty"`
}

// TempDir is the subdirectory of the snapshot directory where files are
// written before they are renamed into place. Readers see one directory
// entry, not a stream of temporary names.
const TempDir = ".capture-tmp"

// writer writes files into the snapshot directory: each is written under
// TempDir first and renamed into place, so a reader never sees a partial
// file. A scrape shared by several requests is written once; its other
// names are hard links to the first (a link is a fraction of the cost of
// a copy). Names are resolved inside an os.Root, so no name can leave the
// directory even if a check upstream were wrong.
type writer struct {
	dir string
	seq atomic.Uint64

	mu   sync.Mutex
	root *os.Root
	// old are roots replaced after the directory was removed (and maybe
	// made anew). They stay open for a while: a write in progress may
	// still use one, and a root closed under it could neither write nor
	// remove its temporary file.
	old []*os.Root

	// created is told how long each file creation took (nil: not told):
	// the one step of a write whose cost depends on the filesystem more
	// than on capture (docs/capture.md, "Cost").
	created func(d time.Duration)
	// fault, when not nil (tests), is called as the data of the file to be
	// named name is written; an error fails that write as a full disk
	// would.
	fault func(name string) error
}

func newWriter(dir string) (*writer, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening snapshot directory: %w", err)
	}
	w := &writer{dir: dir, root: root}
	w.cleanTemp(root)
	return w, nil
}

// cleanTemp removes temporary files left by a crash: those of an hour ago
// or more (another capture may share the directory).
func (w *writer) cleanTemp(root *os.Root) {
	tmp, err := root.OpenRoot(TempDir)
	if err != nil {
		return
	}
	defer tmp.Close()
	f, err := tmp.Open(".")
	if err != nil {
		return
	}
	ents, _ := f.ReadDir(-1)
	_ = f.Close()
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && time.Since(info.ModTime()) > time.Hour {
			_ = tmp.Remove(e.Name())
		}
	}
}

func (w *writer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.old {
		_ = r.Close()
	}
	w.old = nil
	return w.root.Close()
}

func (w *writer) current() *os.Root {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.root
}

// maxOldRoots bounds the replaced roots kept open. A write lasts
// milliseconds; the directory being replaced this many times during one
// is not a case worth more file descriptors.
const maxOldRoots = 4

// reopen is called after a write through root failed. When the directory
// root refers to is no longer the one at the path (removed, maybe made
// anew), it opens the path again and returns the root to retry with.
// It returns nil when a retry cannot help: the same directory (a full
// disk, a permission), or none to open. The replaced root is not closed
// at once (see old).
func (w *writer) reopen(root *os.Root) *os.Root {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.root != root {
		return w.root // another write has reopened it already
	}
	if was, err := root.Stat("."); err == nil {
		if now, err := os.Stat(w.dir); err == nil && os.SameFile(was, now) {
			return nil
		}
	}
	fresh, err := os.OpenRoot(w.dir)
	if err != nil {
		return nil
	}
	w.old = append(w.old, root)
	if len(w.old) > maxOldRoots {
		_ = w.old[0].Close()
		w.old = w.old[1:]
	}
	w.root = fresh
	return fresh
}

var errBadName = errors.New("refusing file name")

func checkName(name string) error {
	if !filepath.IsLocal(name) || filepath.Base(name) != name || strings.HasPrefix(name, ".") ||
		strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("%w %q", errBadName, name)
	}
	return nil
}

// write stores data as name: prepare, then commit.
func (w *writer) write(name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	tmp, err := w.prepare(name, data)
	if err != nil {
		return err
	}
	return w.commit(tmp, name)
}

// writeScrape stores the content of s (the header line and the body) as
// name, as a hard link to a file already holding it when there is one.
func (w *writer) writeScrape(name string, s *scrape) error {
	if err := checkName(name); err != nil {
		return err
	}
	if src := s.file.Load(); src != nil {
		if err := w.current().Link(*src, name); err == nil {
			return nil
		}
	}
	if err := w.write(name, s.data); err != nil {
		return err
	}
	s.file.Store(&name)
	return nil
}

// temp is a file written under TempDir, not yet renamed into place, and
// the root it was made in.
type temp struct {
	root *os.Root
	name string
}

// prepareScrape is prepare for the content of s, linking when it can.
func (w *writer) prepareScrape(name string, s *scrape) (temp, error) {
	if src := s.file.Load(); src != nil {
		root, tmp := w.current(), w.tempName()
		if err := root.Link(*src, tmp); err == nil {
			return temp{root, tmp}, nil
		}
	}
	return w.prepare(name, s.data)
}

// prepare writes data, to be named name, to a new temporary file. On
// failure it retries once if the directory was replaced (reopen).
func (w *writer) prepare(name string, data []byte) (temp, error) {
	root := w.current()
	tmp, err := w.writeTemp(root, name, data)
	if err == nil {
		return temp{root, tmp}, nil
	}
	if root = w.reopen(root); root == nil {
		return temp{}, err
	}
	if tmp, err = w.writeTemp(root, name, data); err != nil {
		return temp{}, err
	}
	return temp{root, tmp}, nil
}

func (w *writer) tempName() string {
	return TempDir + "/" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(w.seq.Add(1), 36)
}

func (w *writer) writeTemp(root *os.Root, name string, data []byte) (string, error) {
	tmp := w.tempName()
	f, err := w.createIn(root, tmp)
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", filepath.Join(w.dir, tmp), err)
	}
	var werr error
	if w.fault != nil {
		werr = w.fault(name)
	}
	if werr == nil {
		_, werr = f.Write(data)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = root.Remove(tmp)
		return "", fmt.Errorf("writing %s: %w", filepath.Join(w.dir, tmp), werr)
	}
	return tmp, nil
}

// createIn creates the file name under TempDir of root, and TempDir when
// it is missing.
func (w *writer) createIn(root *os.Root, name string) (*os.File, error) {
	t0 := time.Now()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if merr := root.Mkdir(TempDir, 0o755); merr == nil || errors.Is(merr, fs.ErrExist) {
			t0 = time.Now()
			f, err = root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		}
	}
	if err == nil && w.created != nil {
		w.created(time.Since(t0))
	}
	return f, err
}

// commit renames the temporary file tmp to name, or removes it.
func (w *writer) commit(tmp temp, name string) error {
	err := checkName(name)
	if err == nil {
		err = tmp.root.Rename(tmp.name, name)
	}
	if err != nil {
		w.discard(tmp)
		return fmt.Errorf("renaming into %s: %w", filepath.Join(w.dir, name), err)
	}
	return nil
}

// discard removes a temporary file that will not be renamed into place.
func (w *writer) discard(tmp temp) {
	_ = tmp.root.Remove(tmp.name)
}

// snapshotName is the file name of a snapshot of stage taken by s.
func snapshotName(id string, stage parser.Stage, s *scrape) string {
	return parser.FormatName(id, stage, s.responded)
}

// idWindow is how long a request id put in file names is remembered, so
// that another request given the same id gets names of its own. The
// exporter rejects a name id it sees twice while it still remembers the
// first (twice --pairing.ttl after deciding it, 20 minutes by default).
const idWindow = time.Hour

// maxIDsPerWindow bounds the ids remembered per half window (a hash of 8
// bytes each): under more traffic than that the memory is shorter.
const maxIDsPerWindow = 1 << 18

// usedIDs remembers the request ids capture has put in file names lately.
// vLLM builds a response's id from the client's X-Request-Id, so two
// clients can get the same id; with the same name id the exporter cannot
// tell their files apart and rejects both, so one client could cancel
// another's measurement. Ids are remembered as hashes in two generations
// of half a window each: a lookup is two map probes, the memory is
// bounded, and a hash collision only costs a needless suffix.
type usedIDs struct {
	seed maphash.Seed

	mu        sync.Mutex
	cur, prev map[uint64]struct{}
	rotated   time.Time
}

func newUsedIDs() *usedIDs {
	return &usedIDs{seed: maphash.MakeSeed(), cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}}
}

// claim returns the id for the file names of a request the server named
// id (sanitised): id itself, or, when a request named id was seen in the
// last idWindow (at least half of it), id followed by '+' and 8 random hex
// digits. SanitizeID never writes '+', so a suffixed name cannot be
// another request's.
func (u *usedIDs) claim(id string, now time.Time) string {
	h := maphash.String(u.seed, id)
	u.mu.Lock()
	defer u.mu.Unlock()
	if now.Sub(u.rotated) >= idWindow/2 || len(u.cur) >= maxIDsPerWindow {
		u.prev, u.cur, u.rotated = u.cur, make(map[uint64]struct{}, len(u.cur)), now
	}
	_, inCur := u.cur[h]
	_, inPrev := u.prev[h]
	if !inCur && !inPrev {
		u.cur[h] = struct{}{}
		return id
	}
	var b [(idSuffixLen - 1) / 2]byte
	_, _ = rand.Read(b[:])
	return id + "+" + hex.EncodeToString(b[:])
}

package state

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecordsLastWriteWins: records written in several writes are read
// back, the last value per key; a rewrite (compaction) keeps exactly the
// live ones.
func TestRecordsLastWriteWins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state.population")
	r, live, rep, err := OpenRecords(path, nil, time.Now())
	if err != nil || len(live) != 0 || !rep.Created {
		t.Fatalf("open: %v %v %+v", err, live, rep)
	}
	want := map[string]string{}
	for i := range 300 {
		k := []string{"a", "b \"quoted\"", "c\nnewline"}[i%3]
		v := strings.Repeat("v", 100*i) // 4.5 MB written for 90 KB live
		want[k] = v
		if err := r.Write(map[string]string{k: v}); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	data, _ := os.ReadFile(path)
	if n := bytes.Count(data, []byte("\n")); n > 100 {
		t.Errorf("%d lines for 3 live records: never compacted", n)
	}
	_, got, rep, err := OpenRecords(path, nil, time.Now())
	if err != nil || !maps.Equal(got, want) || rep.Dropped != 0 {
		t.Fatalf("reopened: %v, %d records, %+v; want %d", err, len(got), rep, len(want))
	}
}

// TestRecordsDamage: a cut-short or bad last line is dropped as an
// unfinished write; a bad line before the last is corruption: the file is
// moved aside and the map starts empty.
func TestRecordsDamage(t *testing.T) {
	var good bytes.Buffer
	good.WriteString(recordsHeader + "\n")
	writeKeyValue(&good, "k1", "v1")
	writeKeyValue(&good, "k2", "v2")
	for _, tc := range []struct {
		name    string
		data    string
		want    map[string]string
		dropped int
		corrupt bool
	}{
		{"intact", good.String(), map[string]string{"k1": "v1", "k2": "v2"}, 0, false},
		{"cut short", good.String() + `0123abcd "k3" "v`, map[string]string{"k1": "v1", "k2": "v2"}, 1, false},
		{"bad checksum last", good.String()[:len(good.String())-3] + "x\"\n", map[string]string{"k1": "v1"}, 1, false},
		{"bad line before the last", strings.Replace(good.String(), "\"v1\"", "\"vX\"", 1), nil, 0, true},
		{"no header", "garbage\n", nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.state.population")
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			r, got, rep, err := OpenRecords(path, nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if (rep.CorruptMovedTo != "") != tc.corrupt || rep.Dropped != tc.dropped || len(got) != len(tc.want) || (tc.want != nil && !maps.Equal(got, tc.want)) {
				t.Fatalf("got %v, report %+v", got, rep)
			}
			if tc.corrupt {
				if _, err := os.Stat(rep.CorruptMovedTo); err != nil {
					t.Fatalf("corrupt file not moved aside: %v", err)
				}
			}
			// Whatever was found, the file is clean again.
			data, _ := os.ReadFile(path)
			if _, dropped, err := ParseRecords(data); err != nil || dropped != 0 {
				t.Fatalf("file after open: %v, %d dropped", err, dropped)
			}
		})
	}
}

// FuzzParseRecords: any bytes parse or fail without panicking; what parses
// is written back to the same records.
func FuzzParseRecords(f *testing.F) {
	var good bytes.Buffer
	good.WriteString(recordsHeader + "\n")
	writeKeyValue(&good, "k1", "v1")
	writeKeyValue(&good, `{"epoch":"1.7e9"}`, "v\x00two")
	f.Add(good.Bytes())
	f.Add([]byte(recordsHeader + "\n00000000 \"a\" \"b\"\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		live, _, err := ParseRecords(data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		buf.WriteString(recordsHeader + "\n")
		for k, v := range live {
			writeKeyValue(&buf, k, v)
		}
		again, dropped, err := ParseRecords(buf.Bytes())
		if err != nil || dropped != 0 || !maps.Equal(live, again) {
			t.Fatalf("written back: %v, %d dropped, %v != %v", err, dropped, again, live)
		}
	})
}

// TestRecordsWriteFailureRewrites: records share the journal's append
// path: after a failed append (the handle broken, the directory gone) the
// next write rewrites the whole file, which then holds every live record.
func TestRecordsWriteFailureRewrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.state.population")
	r, _, _, err := OpenRecords(path, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Write(map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	r.file.f.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(map[string]string{"b": "2"}); err == nil {
		t.Fatal("a write with the file gone succeeded")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(map[string]string{"c": "3"}); err != nil {
		t.Fatalf("after the disk came back: %v", err)
	}
	data, _ := os.ReadFile(path)
	got, dropped, err := ParseRecords(data)
	if want := map[string]string{"a": "1", "b": "2", "c": "3"}; err != nil || dropped != 0 || !maps.Equal(got, want) {
		t.Fatalf("file after recovery: %v, %d dropped, %v; want %v", err, dropped, got, want)
	}
}

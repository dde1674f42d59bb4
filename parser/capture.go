package parser

import (
	"bytes"
	"time"
)

// ScrapeStartedPrefix starts the first line of every snapshot file that
// `delta-exporter capture` writes; the scrape's start time follows, in
// RFC 3339 with nanoseconds, UTC. It is a comment in the text format. With
// the name's timestamp (when the response arrived) it brackets the moment
// the server generated the content (docs/capture.md).
const ScrapeStartedPrefix = "# delta-exporter capture: scrape_started="

// AppendScrapeStarted appends the capture line of a scrape started at t.
func AppendScrapeStarted(b []byte, t time.Time) []byte {
	b = append(b, ScrapeStartedPrefix...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '\n')
}

// scrapeStarted reads the capture line at the start of data; zero when
// there is none or it does not parse (a comment: never an error).
func scrapeStarted(data []byte) time.Time {
	rest, ok := bytes.CutPrefix(data, []byte(ScrapeStartedPrefix))
	if !ok {
		return time.Time{}
	}
	i := bytes.IndexByte(rest, '\n')
	if i < 0 || i > 64 {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(bytes.TrimSuffix(rest[:i], []byte{'\r'})))
	if err != nil {
		return time.Time{}
	}
	return t
}

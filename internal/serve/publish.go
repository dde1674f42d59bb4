package serve

import (
	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/state"
)

// journaled publishes through the state record: a request an earlier run
// published (and a scrape saw) is not published again, and every
// publication is queued to be recorded by the next scrape.
type journaled struct {
	ingest.Publisher
	j *state.Journal
}

func (p journaled) Publish(r attribution.Result) {
	p.j.Publish([]string{r.BeforeFile, r.AfterFile}, func() { p.Publisher.Publish(r) })
}

// SetAssumptions passes what the data said about the server's
// assumptions on to the collector: not per request, nothing to journal.
func (p journaled) SetAssumptions(a []attribution.ServerAssumptions) {
	if ap, ok := p.Publisher.(ingest.AssumptionPublisher); ok {
		ap.SetAssumptions(a)
	}
}

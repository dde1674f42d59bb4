package serve

import (
	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/state"
)

// journaled publishes through the state record: a request an earlier run
// published (and a scrape saw) is not published again, and every
// publication is queued to be recorded by the next scrape.
type journaled struct {
	publish func(attribution.Result)
	j       *state.Journal
}

// Publish is the ingester's results callback.
func (p journaled) Publish(r attribution.Result) {
	p.j.Publish([]string{r.BeforeFile, r.AfterFile}, func() { p.publish(r) })
}

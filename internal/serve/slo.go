package serve

import (
	"fmt"
	"net/http"
	"time"

	"github.com/delta-exporter/delta-exporter/collector"
	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/recent"
	"github.com/delta-exporter/delta-exporter/internal/slo"
)

// judged publishes a decided request everywhere it shows: the collector's
// families, the objectives' verdicts (llm_request_slo_total) and the
// recent requests page. It sits inside journaled, so a request an earlier
// run published shows nowhere again.
type judged struct {
	ingest.Publisher
	slo        *slo.Reloader         // nil: no objectives
	sloMetrics *collector.SLOMetrics // nil: no objectives
	ring       *recent.Ring
}

func (p judged) Publish(r attribution.Result) {
	p.Publisher.Publish(r)
	js := p.slo.Set().Judge(&r)
	if p.sloMetrics != nil {
		p.sloMetrics.Publish(&r, js)
	}
	p.ring.Add(recent.Entry{Result: r, SLO: js, Decided: time.Now()})
}

// SetAssumptions passes the assumption states on to the collector:
// judged embeds only ingest.Publisher, whose method set lacks it.
func (p judged) SetAssumptions(a []attribution.ServerAssumptions) {
	if ap, ok := p.Publisher.(ingest.AssumptionPublisher); ok {
		ap.SetAssumptions(a)
	}
}

// reloadHandler reloads the objectives on POST (or PUT) /-/reload, as
// Prometheus and statsd_exporter do: 200 when the file was swapped in,
// 500 with the error when it was refused and the old objectives stay.
func reloadHandler(r *slo.Reloader) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost && req.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "use POST or PUT to reload", http.StatusMethodNotAllowed)
			return
		}
		if err := r.Reload(); err != nil {
			http.Error(w, fmt.Sprintf("failed to reload the SLO objectives; the previous ones stay in force: %v", err), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "SLO objectives reloaded")
	}
}

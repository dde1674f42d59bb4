package serve

import (
	"log/slog"
	"time"

	"github.com/delta-exporter/delta-exporter/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

var fixed = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func exactResult(id string) attribution.Result {
	res := attribution.Result{RequestID: id, Model: model, Outcome: attribution.Exact,
		BeforeFile: parser.FormatName(id, parser.Before, fixed), AfterFile: parser.FormatName(id, parser.After, fixed)}
	for m := range res.Values {
		res.Values[m] = attribution.Value{V: 1, Exact: true}
	}
	return res
}

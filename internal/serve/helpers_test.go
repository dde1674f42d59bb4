package serve

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
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

// listenFlags returns a free local address and the web flags that make
// Run listen on it.
func listenFlags(t *testing.T) (string, *web.FlagConfig) {
	t.Helper()
	addr := testutil.FreeAddr(t)
	addrs, systemd, webConfig := []string{addr}, false, ""
	return addr, &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &webConfig}
}

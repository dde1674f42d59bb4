package deploy

import (
	"fmt"
	"os"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

// withCaptureFamilies adds to e the families the exporter exposes only
// for a directory `delta-exporter capture` wrote (the proxy-side
// llm_request_proxy_* families come from its info sidecars, which the
// embedded demo has none of): it simulates a short capture run, scrapes
// the exporter on it, and adds every family e lacks, with its series.
// The demo's families stay as they were.
func withCaptureFamilies(bin string, e *exposition) error {
	dir, err := os.MkdirTemp("", "deploy-capture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := simulate.Config{Seed: 3, Requests: 6, MeanInFlight: 0, Models: []string{"Qwen/Qwen3-8B"}, Engines: 1,
		Capture: true, FirstSnapshots: true, AfterDelay: 2 * time.Millisecond}
	if _, err := simulate.Run(cfg, simulate.DirSink(dir)); err != nil {
		return fmt.Errorf("simulating a capture directory: %w", err)
	}
	c, err := runAndScrape(bin, "--snapshots.dir="+dir, "--state.file=none")
	if err != nil {
		return fmt.Errorf("scraping the exporter on a capture directory: %w", err)
	}
	for fam, typ := range c.families {
		if _, ok := e.families[fam]; ok {
			continue
		}
		e.families[fam] = typ
		if c.native[fam] {
			e.native[fam] = true
		}
		if ls, ok := c.exemplarLabels[fam]; ok {
			e.exemplarLabels[fam] = ls
		}
		for _, n := range []string{fam, fam + "_bucket", fam + "_sum", fam + "_count", fam + "_created", fam + "_total"} {
			if ls, ok := c.series[n]; ok {
				e.series[n] = ls
			}
		}
	}
	return nil
}

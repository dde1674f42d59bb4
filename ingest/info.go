package ingest

import (
	"encoding/json"

	"github.com/delta-exporter/delta-exporter/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// info reads a capture sidecar. Only the token counts are used: they rule
// out candidate observations (docs/attribution.md, fingerprints).
func (in *Ingester) info(name string, n parser.Name, data []byte) {
	var v struct {
		AfterObserved *bool `json:"after_observed"`
		Usage         *struct {
			PromptTokens     *int `json:"prompt_tokens"`
			CompletionTokens *int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		in.cfg.Publisher.SnapshotRejected(name, "parse_error", err)
		in.log.Warn("info file rejected", "file", name, "err", err)
		return
	}
	h, ok := in.pending[n.RequestID]
	if !ok {
		return
	}
	if v.AfterObserved != nil && !*v.AfterObserved {
		h.finishUnobserved = true
	}
	if v.Usage == nil || v.Usage.PromptTokens == nil || v.Usage.CompletionTokens == nil {
		return
	}
	p, g := *v.Usage.PromptTokens, *v.Usage.CompletionTokens
	if p < 0 || g < 0 {
		return
	}
	h.tokens = &attribution.Tokens{Prompt: p, Generation: g}
}

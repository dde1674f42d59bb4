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
		Usage *struct {
			PromptTokens     *int `json:"prompt_tokens"`
			CompletionTokens *int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		in.cfg.Publisher.SnapshotRejected(name, "parse_error", err)
		in.log.Warn("info file rejected", "file", name, "err", err)
		return
	}
	if v.Usage == nil || v.Usage.PromptTokens == nil || v.Usage.CompletionTokens == nil {
		return
	}
	p, g := *v.Usage.PromptTokens, *v.Usage.CompletionTokens
	if p < 0 || g < 0 {
		return
	}
	if h, ok := in.pending[n.RequestID]; ok {
		h.tokens = &attribution.Tokens{Prompt: p, Generation: g}
	}
}

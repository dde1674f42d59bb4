package attribution

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestAllowedAndForcedEdges compares allowedEdges and forcedEdges with
// every left-saturating matching of small random graphs, enumerated.
func TestAllowedAndForcedEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for trial := range 2000 {
		nLeft, nRight := 1+rng.IntN(5), 1+rng.IntN(6)
		adj := make([][]int, nLeft)
		for i := range adj {
			for j := range nRight {
				if rng.IntN(3) == 0 {
					adj[i] = append(adj[i], j)
				}
			}
		}
		// Every left-saturating matching: which edges they use.
		used := make([]map[int]bool, nLeft)
		for i := range used {
			used[i] = map[int]bool{}
		}
		count := 0
		taken := make([]bool, nRight)
		pick := make([]int, nLeft)
		var enum func(i int)
		enum = func(i int) {
			if i == nLeft {
				count++
				for l, j := range pick {
					used[l][j] = true
				}
				return
			}
			for _, j := range adj[i] {
				if !taken[j] {
					taken[j], pick[i] = true, j
					enum(i + 1)
					taken[j] = false
				}
			}
		}
		enum(0)
		matchL, size := maxMatching(adj, nRight)
		if (count > 0) != (size == nLeft) {
			t.Fatalf("trial %d: %d saturating matchings, maximum matching %d of %d", trial, count, size, nLeft)
		}
		if count == 0 {
			continue
		}
		allowed, forced := allowedEdges(adj, nRight, matchL), forcedEdges(adj, nRight, matchL)
		for i := range adj {
			var want []int
			for _, j := range adj[i] {
				if used[i][j] {
					want = append(want, j)
				}
			}
			if !slices.Equal(allowed[i], want) {
				t.Fatalf("trial %d, adj %v, left %d: allowed %v, want %v", trial, adj, i, allowed[i], want)
			}
			if forced[i] != (len(want) == 1) {
				t.Fatalf("trial %d, adj %v, left %d: forced %v, but %d matchings' edges %v", trial, adj, i, forced[i], count, want)
			}
		}
	}
}

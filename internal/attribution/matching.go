package attribution

// maxMatching computes a maximum bipartite matching (Hopcroft-Karp) between
// left nodes 0..len(adj)-1 and right nodes 0..nRight-1. It returns, per
// left node, its matched right node (-1 if none) and the matching size.
func maxMatching(adj [][]int, nRight int) ([]int, int) {
	nLeft := len(adj)
	matchL := make([]int, nLeft)
	matchR := make([]int, nRight)
	for i := range matchL {
		matchL[i] = -1
	}
	for j := range matchR {
		matchR[j] = -1
	}
	const inf = int(^uint(0) >> 1)
	dist := make([]int, nLeft)
	queue := make([]int, 0, nLeft)
	bfs := func() bool {
		queue = queue[:0]
		for i := range adj {
			if matchL[i] < 0 {
				dist[i] = 0
				queue = append(queue, i)
			} else {
				dist[i] = inf
			}
		}
		found := false
		for q := 0; q < len(queue); q++ {
			i := queue[q]
			for _, j := range adj[i] {
				k := matchR[j]
				if k < 0 {
					found = true
				} else if dist[k] == inf {
					dist[k] = dist[i] + 1
					queue = append(queue, k)
				}
			}
		}
		return found
	}
	var dfs func(i int) bool
	dfs = func(i int) bool {
		for _, j := range adj[i] {
			k := matchR[j]
			if k < 0 || (dist[k] == dist[i]+1 && dfs(k)) {
				matchL[i], matchR[j] = j, i
				return true
			}
		}
		dist[i] = inf
		return false
	}
	size := 0
	for bfs() {
		for i := range adj {
			if matchL[i] < 0 && dfs(i) {
				size++
			}
		}
	}
	return matchL, size
}

// forcedEdges reports, for each left node of a matching that saturates the
// left side, whether its matched edge belongs to every left-saturating
// matching. An edge (i, matchL[i]) is avoidable iff i can reach, along
// alternating paths (a non-matching edge left->right, then the matching
// edge right->left), either a free right node (shift the path) or its own
// matched right node (rotate a cycle).
func forcedEdges(adj [][]int, nRight int, matchL []int) []bool {
	reach, comp := alternating(adj, nRight, matchL)
	nLeft := len(adj)
	forced := make([]bool, nLeft)
	for i := range forced {
		forced[i] = !reach[i] && comp[i] != comp[nLeft+matchL[i]]
	}
	return forced
}

// allowedEdges lists, for each left node of a matching that saturates the
// left side, the right nodes that some left-saturating matching gives it:
// its own, and each j of a non-matching edge from which an alternating
// path reaches a free right node (shift the path, i taking j) or i itself
// (rotate the cycle i -> j -> ... -> matchL[i] -> i).
func allowedEdges(adj [][]int, nRight int, matchL []int) [][]int {
	reach, comp := alternating(adj, nRight, matchL)
	nLeft := len(adj)
	out := make([][]int, nLeft)
	for i, js := range adj {
		for _, j := range js {
			if j == matchL[i] || reach[nLeft+j] || comp[nLeft+j] == comp[i] {
				out[i] = append(out[i], j)
			}
		}
	}
	return out
}

// alternating is what forcedEdges and allowedEdges read from the graph of
// alternating paths (left i is node i, right j is node len(adj)+j; a
// non-matching edge goes left->right, a matching edge right->left): which
// nodes reach a free right node, and the strongly connected components.
func alternating(adj [][]int, nRight int, matchL []int) (reach []bool, comp []int) {
	nLeft := len(adj)
	matchR := make([]int, nRight)
	for j := range matchR {
		matchR[j] = -1
	}
	for i, j := range matchL {
		matchR[j] = i
	}
	N := nLeft + nRight
	succ := func(v int, f func(int)) {
		if v < nLeft {
			for _, j := range adj[v] {
				if j != matchL[v] {
					f(nLeft + j)
				}
			}
			return
		}
		if i := matchR[v-nLeft]; i >= 0 {
			f(i)
		}
	}
	// Which nodes reach a free right node: reverse search from them.
	radj := make([][]int, nRight)
	for i := range adj {
		for _, j := range adj[i] {
			if j != matchL[i] {
				radj[j] = append(radj[j], i)
			}
		}
	}
	reach = make([]bool, N)
	var stack []int
	for j := 0; j < nRight; j++ {
		if matchR[j] < 0 {
			reach[nLeft+j] = true
			stack = append(stack, nLeft+j)
		}
	}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if v >= nLeft {
			for _, i := range radj[v-nLeft] {
				if !reach[i] {
					reach[i] = true
					stack = append(stack, i)
				}
			}
		} else if j := matchL[v]; j >= 0 && !reach[nLeft+j] {
			reach[nLeft+j] = true
			stack = append(stack, nLeft+j)
		}
	}
	return reach, scc(N, succ)
}

// scc labels the strongly connected components of a graph given by its
// successor function (Tarjan's algorithm, iterative so that long chains of
// overlapping requests cannot exhaust the stack).
func scc(n int, succ func(int, func(int))) []int {
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	next, ncomp := 0, 0
	type frame struct {
		v    int
		succ []int
		pos  int
	}
	var call []frame
	successors := func(v int) []int {
		var s []int
		succ(v, func(w int) { s = append(s, w) })
		return s
	}
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		call = append(call, frame{v: root, succ: successors(root)})
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.pos < len(f.succ) {
				w := f.succ[f.pos]
				f.pos++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{v: w, succ: successors(w)})
				} else if onStack[w] {
					low[f.v] = min(low[f.v], index[w])
				}
				continue
			}
			v := f.v
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := &call[len(call)-1]
				low[p.v] = min(low[p.v], low[v])
			}
			if low[v] == index[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
		}
	}
	return comp
}

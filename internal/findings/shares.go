package findings

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Attribution of rare events over runs of buckets, shared by the burst and
// rate-limit detectors.

// burst is a run of consecutive flagged buckets.
type burst struct {
	from, to int // buckets [from, to)
}

func runs(flag []bool) []burst {
	var out []burst
	for i := 0; i < len(flag); i++ {
		if !flag[i] {
			continue
		}
		j := i
		// A burst may dip under the threshold for a bucket or two.
		for j < len(flag) && (flag[j] || (j+1 < len(flag) && flag[j+1]) || (j+2 < len(flag) && flag[j+2])) {
			j++
		}
		out = append(out, burst{i, j})
		i = j
	}
	return out
}

func topRuns(rs []burst, n int, score func(burst) float64) []burst {
	sort.SliceStable(rs, func(i, j int) bool { return score(rs[i]) > score(rs[j]) })
	if len(rs) > n {
		rs = rs[:n]
	}
	return rs
}

// compositeShares sums a composite summary (dimension\x00value) over
// buckets and returns, per dimension, values with their share of the total.
func compositeShares(bs []*bucket, from, to int, pick func(*bucket) *topK, dims []Dimension, totalW float64, minShare float64) ([]Contributor, []string) {
	sums := map[string]float64{}
	for i := from; i < to; i++ {
		if bs[i] == nil || pick(bs[i]) == nil {
			continue
		}
		for e := range pick(bs[i]).All() {
			sums[e.Key] += float64(e.W - e.Err)
		}
	}
	return sharesOf(sums, dims, totalW, minShare)
}

// topShares is compositeShares for one summary of the whole log.
func topShares(t *topK, dims []Dimension, totalW float64, minShare float64) ([]Contributor, []string) {
	sums := map[string]float64{}
	for e := range t.All() {
		sums[e.Key] += float64(e.W - e.Err)
	}
	return sharesOf(sums, dims, totalW, minShare)
}

// sharesOf turns "dim\x00value" weights into each dimension's top two
// contributors with at least minShare of totalW.
func sharesOf(sums map[string]float64, dims []Dimension, totalW float64, minShare float64) ([]Contributor, []string) {
	var out []Contributor
	var lines []string
	for _, d := range dims {
		type kv struct {
			v string
			w float64
		}
		var vs []kv
		prefix := string([]byte{byte('0' + d), 0})
		for k, w := range sums {
			if v, ok := strings.CutPrefix(k, prefix); ok {
				vs = append(vs, kv{v, w})
			}
		}
		sort.Slice(vs, func(i, j int) bool {
			if vs[i].w != vs[j].w {
				return vs[i].w > vs[j].w
			}
			return vs[i].v < vs[j].v
		})
		for i, x := range vs {
			share := x.w / math.Max(totalW, 1)
			if i == 2 || share < minShare {
				break
			}
			out = append(out, Contributor{Dimension: d.String(), Value: x.v, Share: round3(math.Min(share, 1))})
			lines = append(lines, fmt.Sprintf("%s %s: %s", d.label(), quoteValue(x.v), pct(math.Min(share, 1))))
		}
	}
	return out, lines
}

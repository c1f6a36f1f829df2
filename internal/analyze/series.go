package analyze

import "slices"

// bucketWidths are the time series resolutions in seconds, finest first. A
// series starts per minute and coarsens when it would hold more than
// maxBuckets buckets, so memory stays bounded whether the logs cover an
// hour or years.
var bucketWidths = []int64{60, 3600, 86400, 7 * 86400}

const maxBuckets = 2880 // two days of minutes, four months of hours

// series is a time series of counters with an adaptive bucket width.
type series struct {
	width   int64 // seconds
	buckets map[int64]*counters
	lastIdx int64
	last    *counters
}

func newSeries() *series {
	return &series{width: bucketWidths[0], buckets: map[int64]*counters{}}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// at returns the bucket holding unix second sec. Lines come mostly in time
// order, so the previous bucket is checked before the map.
func (s *series) at(sec int64) *counters {
	idx := floorDiv(sec, s.width)
	if s.last != nil && idx == s.lastIdx {
		return s.last
	}
	c, ok := s.buckets[idx]
	if !ok {
		if len(s.buckets) >= maxBuckets && s.coarsenTo(s.nextWidth()) {
			return s.at(sec)
		}
		c = &counters{}
		s.buckets[idx] = c
	}
	s.lastIdx, s.last = idx, c
	return c
}

func (s *series) nextWidth() int64 {
	for i, w := range bucketWidths {
		if w == s.width && i+1 < len(bucketWidths) {
			return bucketWidths[i+1]
		}
	}
	return s.width
}

// coarsenTo re-buckets at width (a multiple of the current width); false
// when width is not wider.
func (s *series) coarsenTo(width int64) bool {
	if width <= s.width {
		return false
	}
	old, oldWidth := s.buckets, s.width
	s.width = width
	s.buckets = make(map[int64]*counters, len(old)/8+1)
	s.last = nil
	for idx, c := range old {
		n := floorDiv(idx*oldWidth, width)
		d, ok := s.buckets[n]
		if !ok {
			d = &counters{}
			s.buckets[n] = d
		}
		d.add(c)
	}
	return true
}

func (s *series) merge(o *series) {
	if o.width > s.width {
		s.coarsenTo(o.width)
	}
	for idx, c := range o.buckets {
		sec := idx * o.width
		s.at(sec).add(c)
	}
}

// point is one bucket of a dense series.
type point struct {
	Start int64 // unix seconds
	counters
}

// dense returns the buckets from first to last with empty ones filled in,
// coarsening first so that there are at most maxPoints.
func (s *series) dense(maxPoints int) []point {
	if len(s.buckets) == 0 {
		return nil
	}
	for {
		lo, hi := s.bounds()
		if hi-lo+1 <= int64(maxPoints) || s.nextWidth() == s.width {
			break
		}
		s.coarsenTo(s.nextWidth())
	}
	lo, hi := s.bounds()
	if hi-lo+1 > int64(maxPoints) { // the widest width still spans too much
		idxs := make([]int64, 0, len(s.buckets))
		for idx := range s.buckets {
			idxs = append(idxs, idx)
		}
		slices.Sort(idxs)
		out := make([]point, 0, len(idxs))
		for _, idx := range idxs {
			out = append(out, point{Start: idx * s.width, counters: *s.buckets[idx]})
		}
		return out
	}
	out := make([]point, 0, hi-lo+1)
	for idx := lo; idx <= hi; idx++ {
		p := point{Start: idx * s.width}
		if c, ok := s.buckets[idx]; ok {
			p.counters = *c
		}
		out = append(out, p)
	}
	return out
}

func (s *series) bounds() (lo, hi int64) {
	first := true
	for idx := range s.buckets {
		if first || idx < lo {
			lo = idx
		}
		if first || idx > hi {
			hi = idx
		}
		first = false
	}
	return lo, hi
}

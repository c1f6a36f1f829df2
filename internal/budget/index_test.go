package budget

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// tableModel drives a table beside a Go map, the truth it must agree with.
type tableModel struct {
	tab  table
	want map[string]modelKey
	hash func(string) uint64
}

type modelKey struct {
	h   uint64
	gen uint32
	tag int64 // written to the key's fleet data, which must move with its cell
}

func newTableModel(hash func(string) uint64, fleet bool) *tableModel {
	m := &tableModel{want: map[string]modelKey{}, hash: hash}
	if fleet {
		m.tab.fleet = []fleetEntry{}
	}
	return m
}

// add inserts k if absent (reporting whether it did) or finds it.
func (m *tableModel) add(k string) (bool, error) {
	h := m.hash(k)
	i, ok := m.tab.find(h, k)
	w, wok := m.want[k]
	if ok != wok {
		return false, fmt.Errorf("find(%q) found=%v, the map says %v", k, ok, wok)
	}
	if ok {
		if g := m.tab.cells[i].gen; g != w.gen {
			return false, fmt.Errorf("find(%q) at %d has generation %d, want %d", k, i, g, w.gen)
		}
		return false, nil
	}
	i = m.tab.insert(h, k, i)
	w = modelKey{h: h, gen: m.tab.cells[i].gen, tag: int64(len(m.want) + 1)}
	if m.tab.fleet != nil {
		m.tab.fleet[i].since = w.tag
	}
	m.want[k] = w
	return true, nil
}

func (m *tableModel) del(k string) error {
	i, ok := m.tab.find(m.hash(k), k)
	if !ok {
		return fmt.Errorf("find(%q) missed a key the map holds", k)
	}
	m.tab.remove(i)
	delete(m.want, k)
	return nil
}

// check verifies every key in the map, and that every cell is reachable
// from its home without crossing an empty cell (the invariant that
// linear probing and backward-shift deletion keep).
func (m *tableModel) check() error {
	if m.tab.n != len(m.want) {
		return fmt.Errorf("n = %d, the map holds %d", m.tab.n, len(m.want))
	}
	if m.tab.n > 0 && m.tab.n*4 > len(m.tab.cells)*3 {
		return fmt.Errorf("load %d/%d over 3/4", m.tab.n, len(m.tab.cells))
	}
	for k, w := range m.want {
		i, ok := m.tab.find(w.h, k)
		if !ok {
			return fmt.Errorf("find(%q) missed", k)
		}
		if got := m.tab.keyAt(i); got != k {
			return fmt.Errorf("keyAt(%d) = %q, want %q", i, got, k)
		}
		if got := string(m.tab.appendKey(nil, i)); got != k {
			return fmt.Errorf("appendKey(%d) = %q, want %q", i, got, k)
		}
		if j, ok := m.tab.findGen(w.h, w.gen); !ok || j != i {
			return fmt.Errorf("findGen(%q) = %d,%v, want %d", k, j, ok, i)
		}
		if m.tab.fleet != nil && m.tab.fleet[i].since != w.tag {
			return fmt.Errorf("%q: fleet data did not move with its cell", k)
		}
	}
	size := len(m.tab.cells)
	if len(m.tab.fps) != size {
		return fmt.Errorf("%d fingerprints for %d cells", len(m.tab.fps), size)
	}
	held := 0
	for i := range m.tab.cells {
		e := &m.tab.cells[i]
		if want := fpOf(e.tag) * uint16(min(e.tag, 1)); m.tab.fps[i] != want {
			return fmt.Errorf("cell %d: fingerprint %#x, want %#x", i, m.tab.fps[i], want)
		}
		if e.tag == 0 {
			continue
		}
		held++
		for j := e.homeIn(size); j != i; j = (j + 1) % size {
			if m.tab.cells[j].tag == 0 {
				return fmt.Errorf("cell %d (home %d) is cut off by the empty cell %d", i, e.homeIn(size), j)
			}
		}
	}
	if held != m.tab.n {
		return fmt.Errorf("%d cells hold a key, n = %d", held, m.tab.n)
	}
	return nil
}

// hashes returns a hash function for keys whose tags are drawn from
// spread values: with few, tags collide, so the key compare decides and
// probe runs are long and wrap around the table's end.
func hashes(r *rand.Rand, spread uint64) func(string) uint64 {
	memo := map[string]uint64{}
	return func(k string) uint64 {
		if h, ok := memo[k]; ok {
			return h
		}
		var top uint64
		if spread == 0 {
			top = r.Uint64() >> 32
		} else {
			top = (r.Uint64N(spread) + 1) * (1<<32 - 1) / (spread + 1)
		}
		h := top<<32 | uint64(r.Uint32())
		memo[k] = h
		return h
	}
}

// TestTableMatchesMap drives the table with random inserts and removes
// (and the shrinking that follows removals), with and without fleet data,
// short and long keys, and checks it against a map after every step.
func TestTableMatchesMap(t *testing.T) {
	for _, c := range []struct {
		name   string
		spread uint64 // distinct tags; 0 = random
		keys   int
		fleet  bool
		long   bool
	}{
		{"random tags", 0, 500, false, false},
		{"three tags", 3, 200, false, false},
		{"64 tags", 64, 500, true, false},
		{"random tags, fleet", 0, 2000, true, false},
		{"long keys", 0, 300, true, true},
		{"long keys, two tags", 2, 100, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(c.spread, uint64(c.keys)))
			m := newTableModel(hashes(r, c.spread), c.fleet)
			key := func(i int) string {
				if c.long && i%2 == 0 {
					return fmt.Sprintf("%s-%d", strings.Repeat("x", inlineKey), i) // over inlineKey
				}
				return fmt.Sprintf("k%d", i)
			}
			for step := range 20000 {
				k := key(r.IntN(c.keys))
				// Phases: mostly inserting, then mostly removing, so the
				// table grows and shrinks.
				remove := r.IntN(10) < 3
				if step/4000%2 == 1 {
					remove = r.IntN(10) < 7
				}
				if _, held := m.want[k]; held && remove {
					if err := m.del(k); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					if m.tab.sparse() {
						m.tab.resize(cellsFor(m.tab.n))
					}
				} else if _, err := m.add(k); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if step%97 == 0 || m.tab.n < 20 {
					if err := m.check(); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
				}
			}
			if err := m.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTableRemoveAtTheEdges removes cells whose probe runs wrap around the
// end of the table, where backward shifting moves cells from the start of
// the table to its end.
func TestTableRemoveAtTheEdges(t *testing.T) {
	const size = 16
	top := func(home int) uint64 { return uint64(home)<<28 | 1<<27 } // tag whose home in 16 cells is home
	for _, c := range []struct {
		name   string
		homes  []int // keys k0, k1, … inserted with these homes
		remove []int // then these keys removed, in order
	}{
		{"wrap, remove the first", []int{15, 15, 15}, []int{0}},
		{"wrap, remove the middle", []int{15, 15, 15}, []int{1}},
		{"wrap, remove the last", []int{15, 15, 15}, []int{2}},
		{"mixed homes across the end", []int{14, 15, 14, 0, 15, 1}, []int{0, 3}},
		{"a key at its home stays", []int{15, 15, 0, 1}, []int{0}},
		{"remove everything", []int{15, 0, 15, 0, 14}, []int{4, 0, 1, 2, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			hs := map[string]uint64{}
			m := newTableModel(func(k string) uint64 { return hs[k] }, true)
			m.tab.cells = make([]entry, size)
			m.tab.fps = make([]uint16, size)
			m.tab.fleet = make([]fleetEntry, size)
			for i, h := range c.homes {
				k := fmt.Sprintf("k%d", i)
				hs[k] = (top(h)|uint64(i))<<32 | 7
				if home(tagOf(hs[k]), size) != h {
					t.Fatalf("test setup: %s's home is %d, want %d", k, home(tagOf(hs[k]), size), h)
				}
				if _, err := m.add(k); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.check(); err != nil {
				t.Fatal(err)
			}
			for _, i := range c.remove {
				if err := m.del(fmt.Sprintf("k%d", i)); err != nil {
					t.Fatal(err)
				}
				if err := m.check(); err != nil {
					t.Fatalf("after removing k%d: %v", i, err)
				}
			}
		})
	}
}

// FuzzTable runs the map model over an operation stream from the fuzzer:
// each byte inserts or removes one of 32 keys (long ones among them),
// with tags from a few values so that runs collide and wrap.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0x80, 0x81, 4, 5})
	f.Add([]byte("the quick brown fox jumps over the lazy dog"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		m := newTableModel(func(k string) uint64 {
			var x uint64
			for _, c := range []byte(k) {
				x = x*31 + uint64(c)
			}
			return (x%5)<<61 | x<<32 | x
		}, true)
		for step, op := range ops {
			k := fmt.Sprintf("k%d", op&31)
			if op&8 != 0 {
				k += strings.Repeat("-", inlineKey)
			}
			if _, held := m.want[k]; held && op&0x80 != 0 {
				if err := m.del(k); err != nil {
					t.Fatalf("op %d: %v", step, err)
				}
				if m.tab.sparse() {
					m.tab.resize(cellsFor(m.tab.n))
				}
			} else if _, err := m.add(k); err != nil {
				t.Fatalf("op %d: %v", step, err)
			}
			if err := m.check(); err != nil {
				t.Fatalf("op %d: %v", step, err)
			}
		}
	})
}

// TestTicketsFollowMovedEntries: tickets taken before their entries moved
// (a table growing under new keys, shifts after idle keys were swept, a
// shrink) still finish their own requests, and only theirs.
func TestTicketsFollowMovedEntries(t *testing.T) {
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk, Shards: 1})
	lim := Limits{Window: time.Minute}
	tickets := map[string]Ticket{}
	for i := range 50 {
		k := fmt.Sprintf("running-%d", i)
		_, tickets[k] = l.Admit(k, lim)
	}
	// Many more keys: the table grows several times, moving every cell.
	for i := range 5000 {
		_, tk := l.Admit(fmt.Sprintf("brief-%d", i), lim)
		l.Finish(tk, sec)
	}
	// They go idle and are swept: the running keys shift back and the
	// table shrinks.
	clk.Advance(2 * time.Minute)
	for i := range 20000 { // a sweep looks at one cell per Admit
		_, tk := l.Admit(fmt.Sprintf("new-%d", i%3), lim)
		l.Cancel(tk)
	}
	if got := l.Len(); got != 53 {
		t.Fatalf("Len = %d after sweeping, want 53 (50 running, 3 new)", got)
	}
	if c := len(l.shards[0].tab.cells); c > 4*53 {
		t.Errorf("table of %d cells for 53 keys: it did not shrink", c)
	}
	for k, tk := range tickets {
		if d := l.Finish(tk, 3*sec); d.InFlight != 0 || d.Used != 3*sec {
			t.Fatalf("%s: Finish after its entry moved = %+v, want its 3 s charged and nothing in flight", k, d)
		}
	}
	for i := range 50 {
		k := fmt.Sprintf("running-%d", i)
		if st := l.Status(k, lim); st.InFlight != 0 {
			t.Fatalf("%s still in flight: %+v", k, st)
		}
	}
	for i := range 3 {
		if st := l.Status(fmt.Sprintf("new-%d", i), lim); st.WorkerSeconds != 0 {
			t.Fatalf("new-%d was charged another key's time: %+v", i, st)
		}
	}
}

func TestEntryLayout(t *testing.T) {
	var e entry
	if n := unsafe.Sizeof(e); n != cellSize {
		t.Errorf("entry is %d bytes, want %d (five cache lines)", n, cellSize)
	}
	// What Admit reads on every decision shares the first cache line.
	if off := unsafe.Offsetof(e.klen); off >= 64 {
		t.Errorf("the decision's fields end at %d, past the first cache line", off)
	}
	if off := unsafe.Offsetof(e.work); off%64 != 0 {
		t.Errorf("work starts at %d, not on a cache line", off)
	}
}

func TestShardSize(t *testing.T) {
	if n := unsafe.Sizeof(shard{}); n%64 != 0 {
		t.Errorf("shard is %d bytes, not a multiple of a cache line", n)
	}
}

package budget

import "unsafe"

// table holds a shard's entries in the cells of an open-addressed hash
// table (linear probing), so that finding a key and reading its state is
// one memory fetch: the cell a key hashes to carries its tag, its key and
// its whole state. With a separate index, a key at a million keys cost two
// dependent cache misses (the index cell, then the entry it pointed to),
// which left the decision at ~500 ns (issue 12).
//
// Cells are 320 bytes, five cache lines; a lookup loads the home cell's
// lines and the next cell's first line at once, so a key at its home cell
// or the next one (about 85% of keys at the table's usual load) costs one
// round trip to memory. Keys up to inlineKey bytes (fingerprints, client
// addresses) live in the cell, so the table is pointer-free (the collector
// never scans it) and comparing a key touches no other memory; longer keys
// are kept in long, by an id stored in the cell.
//
// Entries move: deletion shifts later cells of the probe run back (no
// tombstones, so probe runs stay as short as the load allows), and the
// table is rebuilt when it grows or shrinks. So a position is only a hint:
// tickets carry the key's hash and the entry's generation, which is unique
// in the shard, and find a moved entry again from its home cell. The fleet
// store's per-key data (fleet, once enabled) moves with its cell.
type table struct {
	cells []entry
	fps   []uint16     // fps[i] is fpOf(cells[i].tag), 0 for an empty cell: what a probe reads
	mem   []byte       // the mapping cells live in, when outside the Go heap (cells_linux.go)
	fpmem []byte       // and fps'
	fmem  []byte       // and fleet's
	fleet []fleetEntry // fleet[i] belongs to cells[i]; nil until a fleet store asks
	long  []string     // keys longer than inlineKey, by the id in their cell
	free  []uint32     // unused ids in long
	n     int          // keys held
	gen   uint32       // the last generation handed out
	sink  int64        // receives warm's loads, so the compiler keeps them
}

const (
	// inlineKey is how many bytes of key a cell holds: the rest of the
	// cell's second cache line.
	inlineKey = 74
	// longKey is the klen of a longer key, kept in table.long.
	longKey = 0xffff
	// minCells is the smallest table.
	minCells = 8
	// cellSize is asserted by a test: five whole cache lines.
	cellSize = 320
)

// The load is kept between 1/4 and 3/4: growing multiplies the size by
// 3/2 (the size need not be a power of two, as the home cell comes from a
// multiply, not a mask), shrinking rebuilds at a load of 1/2, so memory
// follows the keys held in both directions.

// full reports whether one more key would take the load over 3/4.
func (t *table) full() bool { return (t.n+1)*4 > len(t.cells)*3 }

// sparse reports whether the table should shrink: under 1/4 loaded.
func (t *table) sparse() bool { return len(t.cells) > minCells && t.n*4 < len(t.cells) }

// cellsFor is the table size that holds n keys at a load of 1/2 (at least
// minCells).
func cellsFor(n int) int { return max(2*n, minCells) }

// tagOf is the part of the hash a cell keeps; never 0, which marks an
// empty cell. The low bits picked the shard, so they are left out.
func tagOf(h uint64) uint32 { return uint32(h>>32) | 1 }

// home is the cell a tag starts probing at: the high half of tag×size maps
// the tag onto [0, size) without a division (Lemire's fast range). Keys
// sharing a home share the tag's top bits; the rest of the tag (about 18
// bits at a million keys) still tells them apart before any key compare.
func home(tag uint32, size int) int { return int(uint64(tag) * uint64(size) >> 32) }

func (e *entry) homeIn(size int) int { return home(e.tag, size) }

// fpOf is the part of a tag fps keeps: its low 16 bits, never 0 (tagOf
// sets bit 0). The high bits pick the home cell, so keys probing the same
// run differ in these; two of them share a fingerprint once in 32,768.
func fpOf(tag uint32) uint16 { return uint16(tag) }

// sameKey reports whether cell e holds key.
func (t *table) sameKey(e *entry, key string) bool {
	if len(key) <= inlineKey {
		return int(e.klen) == len(key) && string(e.key[:len(key)]) == key
	}
	return e.klen == longKey && t.long[e.longID()] == key
}

func (e *entry) longID() uint32 { return *(*uint32)(unsafe.Pointer(&e.key[0])) }

// keyAt returns the key cell i holds.
func (t *table) keyAt(i int) string {
	e := &t.cells[i]
	if e.klen != longKey {
		return string(e.key[:e.klen])
	}
	return t.long[e.longID()]
}

// appendKey appends the key cell i holds to dst.
func (t *table) appendKey(dst []byte, i int) []byte {
	e := &t.cells[i]
	if e.klen != longKey {
		return append(dst, e.key[:e.klen]...)
	}
	return append(dst, t.long[e.longID()]...)
}

// find returns the position of key (whose hash is h), or, when it is
// absent, the empty cell where its probe ended.
//
// The probe reads fps, 2 bytes a cell (about 3.4 MB at a million keys,
// which the caches keep), not the cells: only the cell whose fingerprint
// matches is fetched from memory, all its lines at once. Probing the
// 320-byte cells themselves cost a dependent round trip to memory for
// every cell a key sits past its home, and 30% of keys sit past it at the
// table's usual load: ~190 ns of the ~530 a decision took at a million
// keys (issue 12, BENCHMARKS.md).
func (t *table) find(h uint64, key string) (int, bool) {
	size := len(t.fps)
	if size == 0 {
		return 0, false
	}
	tag := tagOf(h)
	fp := fpOf(tag)
	for i := home(tag, size); ; {
		c := t.fps[i]
		if c == 0 {
			return i, false
		}
		if c == fp {
			t.warm(i)
			if e := &t.cells[i]; e.tag == tag && t.sameKey(e, key) {
				return i, true
			}
		}
		if i++; i == size {
			i = 0
		}
	}
}

// warm loads a word from each cache line of cell i, none depending on
// another, so that the CPU fetches them all at once instead of one after
// the other as the key compare and then the decision reach them.
func (t *table) warm(i int) {
	e := &t.cells[i]
	w := int64(e.tag) ^ int64(e.key[20]) ^ e.work[2] ^ e.work[10] ^ int64(e.reqs[4])
	if t.fleet != nil { // and the fleet data a decision reads beside the cell
		f := &t.fleet[i]
		w ^= f.own[2] ^ f.own[10] ^ f.since ^ f.lease.limit ^ f.lease.budget
	}
	t.sink = w
}

// findGen returns the position of the entry with generation gen and tag
// tag, probing from h's home cell: where a ticket's entry went when cells
// moved after its Admit.
func (t *table) findGen(h uint64, gen uint32) (int, bool) {
	size := len(t.fps)
	if size == 0 {
		return 0, false
	}
	tag := tagOf(h)
	fp := fpOf(tag)
	for i := home(tag, size); ; {
		c := t.fps[i]
		if c == 0 {
			return 0, false
		}
		if e := &t.cells[i]; c == fp && e.gen == gen && e.tag == tag {
			return i, true
		}
		if i++; i == size {
			i = 0
		}
	}
}

// insert adds key, known to be absent, with hash h; i is where find
// stopped. It returns the key's position, its entry zeroed but for its tag,
// key and a new generation.
func (t *table) insert(h uint64, key string, i int) int {
	if len(t.cells) == 0 || t.full() {
		t.resize(max(len(t.cells)*3/2, minCells))
		i = t.free1(h)
	}
	t.gen++
	if t.gen == 0 { // 0 marks the zero Ticket
		t.gen = 1
	}
	e := &t.cells[i]
	*e = entry{tag: tagOf(h), gen: t.gen, klen: uint16(len(key))}
	t.fps[i] = fpOf(e.tag)
	if len(key) <= inlineKey {
		copy(e.key[:], key)
	} else {
		e.klen = longKey
		var id uint32
		if n := len(t.free); n > 0 {
			id, t.free = t.free[n-1], t.free[:n-1]
			t.long[id] = key
		} else {
			id = uint32(len(t.long))
			t.long = append(t.long, key)
		}
		*(*uint32)(unsafe.Pointer(&e.key[0])) = id
	}
	if t.fleet != nil {
		t.fleet[i] = fleetEntry{}
	}
	t.n++
	return i
}

// free1 is the first empty cell of h's probe run.
func (t *table) free1(h uint64) int {
	size := len(t.fps)
	i := home(tagOf(h), size)
	for t.fps[i] != 0 {
		if i++; i == size {
			i = 0
		}
	}
	return i
}

// remove empties cell i, shifting back the later cells of its probe run
// whose home is not between i and them.
func (t *table) remove(i int) {
	e := &t.cells[i]
	if e.tag == 0 {
		return
	}
	if e.klen == longKey {
		id := e.longID()
		t.long[id] = ""
		t.free = append(t.free, id)
	}
	t.n--
	size := len(t.cells)
	for j := i; ; {
		if j++; j == size {
			j = 0
		}
		if t.fps[j] == 0 {
			break
		}
		h := t.cells[j].homeIn(size)
		var stays bool
		if i <= j {
			stays = i < h && h <= j
		} else {
			stays = h > i || h <= j
		}
		if !stays {
			t.move(i, j)
			i = j
		}
	}
	t.cells[i] = entry{}
	t.fps[i] = 0
	if t.fleet != nil {
		t.fleet[i] = fleetEntry{}
	}
}

// move copies cell j (its fingerprint, its fleet data) to cell i.
func (t *table) move(i, j int) {
	t.cells[i] = t.cells[j]
	t.fps[i] = t.fps[j]
	if t.fleet != nil {
		t.fleet[i] = t.fleet[j]
	}
}

// resize rebuilds the table with size cells.
func (t *table) resize(size int) {
	old, oldFleet, oldMem, oldFmem, oldFpmem := t.cells, t.fleet, t.mem, t.fmem, t.fpmem
	t.cells, t.mem = allocCells(size)
	size = len(t.cells) // allocCells may round up
	t.fps, t.fpmem = allocHuge[uint16](size)
	if oldFleet != nil {
		t.fleet, t.fmem = allocFleet(size)
	}
	for j := range old {
		if old[j].tag == 0 {
			continue
		}
		i := old[j].homeIn(size)
		for t.fps[i] != 0 {
			if i++; i == size {
				i = 0
			}
		}
		t.cells[i] = old[j]
		t.fps[i] = fpOf(old[j].tag)
		if oldFleet != nil {
			t.fleet[i] = oldFleet[j]
		}
	}
	freeCells(oldMem)
	freeCells(oldFmem)
	freeCells(oldFpmem)
	if len(t.long) > 0 && len(t.free) == len(t.long) {
		t.long, t.free = nil, nil // every long key gone: let the strings go
	}
}

// reset empties the table, sized for n keys.
func (t *table) reset(n int) {
	t.release()
	cells, mem := allocCells(cellsFor(n))
	fleet := t.fleet
	*t = table{cells: cells, mem: mem, gen: t.gen}
	t.fps, t.fpmem = allocHuge[uint16](len(cells))
	if fleet != nil {
		t.fleet, t.fmem = allocFleet(len(t.cells))
	}
}

// release releases the mappings outside the Go heap the table holds.
func (t *table) release() {
	freeCells(t.mem)
	freeCells(t.fmem)
	freeCells(t.fpmem)
}

package budget

// keyIndex maps a shard's keys to their slots: open addressing with linear
// probing over 8-byte cells, each packing a 32-bit tag of the key's hash
// (high half) and slot+1 (low half; 0 marks an empty cell). The hash is the
// one that picked the shard, computed once per call; the tag's low bits
// give the home cell. A lookup reads one or two neighbouring cells, usually
// one cache line, and compares the key itself (keys[slot]) only when a tag
// matches, so the answer is exact. Deletion shifts later cells back (no
// tombstones), so probe runs stay as short as the load allows.
type keyIndex struct {
	cells []uint64
	n     int // keys held
}

const minIndexCells = 8

func tagOf(h uint64) uint32 { return uint32(h >> 32) }

// cellsFor is the table size that holds n keys at a load of at most 3/4.
func cellsFor(n int) int {
	c := minIndexCells
	for c*3 < n*4 {
		c <<= 1
	}
	return c
}

// reset empties the index, sized for n keys.
func (ix *keyIndex) reset(n int) {
	ix.cells = make([]uint64, cellsFor(n))
	ix.n = 0
}

// find returns key's slot. keys[slot] is each slot's key.
func (ix *keyIndex) find(h uint64, key string, keys []string) (uint32, bool) {
	cells := ix.cells
	if len(cells) == 0 {
		return 0, false
	}
	mask := uint32(len(cells) - 1)
	tag := tagOf(h)
	for i := tag & mask; ; i = (i + 1) & mask {
		c := cells[i]
		if c == 0 {
			return 0, false
		}
		if uint32(c>>32) == tag {
			if slot := uint32(c) - 1; keys[slot] == key {
				return slot, true
			}
		}
	}
}

// insert adds a key known to be absent, with hash h, at slot.
func (ix *keyIndex) insert(h uint64, slot uint32) {
	if (ix.n+1)*4 > len(ix.cells)*3 {
		ix.grow()
	}
	ix.place(uint64(tagOf(h))<<32 | uint64(slot+1))
	ix.n++
}

func (ix *keyIndex) place(c uint64) {
	mask := uint32(len(ix.cells) - 1)
	i := uint32(c>>32) & mask
	for ix.cells[i] != 0 {
		i = (i + 1) & mask
	}
	ix.cells[i] = c
}

func (ix *keyIndex) grow() {
	old := ix.cells
	ix.cells = make([]uint64, max(2*len(old), minIndexCells))
	for _, c := range old {
		if c != 0 {
			ix.place(c)
		}
	}
}

// remove deletes the key with hash h held at slot.
func (ix *keyIndex) remove(h uint64, slot uint32) {
	cells := ix.cells
	if len(cells) == 0 {
		return
	}
	mask := uint32(len(cells) - 1)
	want := uint64(tagOf(h))<<32 | uint64(slot+1)
	i := tagOf(h) & mask
	for cells[i] != want {
		if cells[i] == 0 {
			return // not held
		}
		i = (i + 1) & mask
	}
	ix.n--
	// Shift back the cells after i whose home is not in (i, j].
	for j := i; ; {
		j = (j + 1) & mask
		c := cells[j]
		if c == 0 {
			cells[i] = 0
			return
		}
		k := uint32(c>>32) & mask
		var stays bool
		if i <= j {
			stays = i < k && k <= j
		} else {
			stays = k > i || k <= j
		}
		if !stays {
			cells[i] = c
			i = j
		}
	}
}

package budget

import (
	"syscall"
	"unsafe"
)

// Big tables live outside the Go heap, in memory mapped on 2 MiB
// boundaries and marked for transparent huge pages. At a million keys the
// cells take ~450 MB; with 4 KiB pages every decision also missed the TLB,
// and on a virtual machine a TLB miss walks two page tables: a random read
// measured ~220 ns with 4 KiB pages against ~135 ns with huge pages on the
// machine issue 12 was measured on. The Go heap gets no huge pages where
// THP is "madvise" (Debian's default), and its large objects are not
// aligned to them. Cells hold no pointers, so the collector need not see
// them; the mapping is released when the table is replaced and, for the
// last one, when the Ledger is collected (New registers a cleanup).
const hugePage = 2 << 20

// madvHugepage is Linux's MADV_HUGEPAGE.
const madvHugepage = 14

// allocCells returns at least n zeroed cells and the mapping to release
// (nil for cells on the Go heap).
func allocCells(n int) ([]entry, []byte) {
	if b := n * cellSize; b >= hugePage {
		n = ((b + hugePage - 1) &^ (hugePage - 1)) / cellSize // use the whole pages
	}
	return allocHuge[entry](n)
}

// allocFleet is allocCells for the fleet data beside the cells, which a
// decision reads too.
func allocFleet(n int) ([]fleetEntry, []byte) { return allocHuge[fleetEntry](n) }

// allocHuge returns n zeroed values of a pointer-free T, in memory mapped
// on huge pages when they take 2 MiB or more, and that mapping (nil when
// they are on the Go heap). Only the n values are used, so a fleet slice
// stays as long as its table's cells.
func allocHuge[T any](n int) ([]T, []byte) {
	var zero T
	sz := int(unsafe.Sizeof(zero))
	bytes := n * sz
	if bytes < hugePage {
		return make([]T, n), nil
	}
	size := (bytes + hugePage - 1) &^ (hugePage - 1)
	m, err := syscall.Mmap(-1, 0, size+hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([]T, n), nil // the heap will do, with small pages
	}
	off := 0
	if r := int(uintptr(unsafe.Pointer(&m[0])) % hugePage); r != 0 {
		off = hugePage - r
	}
	region := m[off : off+size]
	_ = syscall.Madvise(region, madvHugepage) // a hint: without THP, small pages
	return unsafe.Slice((*T)(unsafe.Pointer(&region[0])), n), m
}

// freeCells releases a mapping allocHuge returned.
func freeCells(m []byte) {
	if m != nil {
		_ = syscall.Munmap(m)
	}
}

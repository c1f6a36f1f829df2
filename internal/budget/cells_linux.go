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
	bytes := n * cellSize
	if bytes < hugePage {
		return make([]entry, n), nil
	}
	size := (bytes + hugePage - 1) &^ (hugePage - 1)
	m, err := syscall.Mmap(-1, 0, size+hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([]entry, n), nil // the heap will do, with small pages
	}
	off := 0
	if r := int(uintptr(unsafe.Pointer(&m[0])) % hugePage); r != 0 {
		off = hugePage - r
	}
	region := m[off : off+size]
	_ = syscall.Madvise(region, madvHugepage) // a hint: without THP, small pages
	return unsafe.Slice((*entry)(unsafe.Pointer(&region[0])), size/cellSize), m
}

// freeCells releases a mapping allocCells returned.
func freeCells(m []byte) {
	if m != nil {
		_ = syscall.Munmap(m)
	}
}

package budget

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The snapshot encoding, version 1:
//
//	magic "HRLEDGER" | uvarint version | varint written-at (unix ns)
//	records: byte 1 | uvarint len(key) | key | varint width (ns)
//	         | varint head (bucket index = unix ns / width)
//	         | varint restricted-until (unix ns, 0 = none)
//	         | 16 x (uvarint worker ns, uvarint requests), oldest bucket first
//	byte 0 | uint32 big-endian CRC-32 (IEEE) of everything before it
//
// Buckets are aligned to Unix time, not to the process, so a restarted
// ledger reads them in place. Times are absolute, so a snapshot restored
// later has simply slid further out of the window.
const (
	snapshotMagic   = "HRLEDGER"
	SnapshotVersion = 1

	maxKeyLen = 64 << 10
)

var (
	// ErrCorruptSnapshot is returned (wrapped) by ReadSnapshot for input
	// that is not a whole, valid snapshot. The ledger is left unchanged.
	ErrCorruptSnapshot = errors.New("corrupt ledger snapshot")
	// ErrSnapshotVersion is returned (wrapped) by ReadSnapshot for a
	// snapshot written by a different, incompatible version.
	ErrSnapshotVersion = errors.New("unsupported ledger snapshot version")
)

// snapRecord is one key's state as it travels in a snapshot.
type snapRecord struct {
	key   string // on reading; on writing, the key is keys[k0:k1] of its shard's batch
	k0    int
	k1    int
	width int64
	head  int64
	until int64
	work  [ringSize]int64 // oldest bucket first
	reqs  [ringSize]uint32
}

// record copies e into r, with the in-flight requests' elapsed time charged
// to the newest bucket: if the process dies before they finish, their time
// so far is not lost.
func (r *snapRecord) from(e *entry, off, abs int64) {
	r.width, r.until = e.width, e.until
	r.head = max(abs/e.width, e.head)
	for i := range ringSize {
		idx := r.head - ringSize + 1 + int64(i)
		if idx <= e.head && idx > e.head-ringSize {
			r.work[i] = e.work[idx%ringSize]
			r.reqs[i] = e.reqs[idx%ringSize]
		} else {
			r.work[i], r.reqs[i] = 0, 0
		}
	}
	r.work[ringSize-1] += e.inFlightElapsed(off)
}

// WriteSnapshot writes every key's usage and restriction to w. Each shard
// is copied under its lock and encoded outside it, so a slow writer does
// not stall requests. Keys with nothing in their window and no restriction
// are left out.
func (l *Ledger) WriteSnapshot(w io.Writer) error {
	crc := crc32.NewIEEE()
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	var buf [binary.MaxVarintLen64]byte
	putU := func(v uint64) { bw.Write(buf[:binary.PutUvarint(buf[:], v)]) }
	putI := func(v int64) { bw.Write(buf[:binary.PutVarint(buf[:], v)]) }

	off, abs := l.now()
	bw.WriteString(snapshotMagic)
	putU(SnapshotVersion)
	putI(abs)
	var recs []snapRecord
	var keys []byte
	for i := range l.shards {
		s := &l.shards[i]
		recs, keys = recs[:0], keys[:0]
		s.mu.Lock()
		for slot := range s.tab.cells {
			e := &s.tab.cells[slot]
			if e.tag == 0 || e.idle(abs) {
				continue
			}
			recs = append(recs, snapRecord{k0: len(keys)})
			keys = s.tab.appendKey(keys, slot)
			r := &recs[len(recs)-1]
			r.k1 = len(keys)
			r.from(e, off, abs)
		}
		s.mu.Unlock()
		for k := range recs {
			r := &recs[k]
			bw.WriteByte(1)
			putU(uint64(r.k1 - r.k0))
			bw.Write(keys[r.k0:r.k1])
			putI(r.width)
			putI(r.head)
			putI(r.until)
			for b := range ringSize {
				putU(uint64(r.work[b]))
				putU(uint64(r.reqs[b]))
			}
		}
	}
	bw.WriteByte(0)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write ledger snapshot: %w", err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("write ledger snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot restores usage and restrictions from a snapshot written by
// WriteSnapshot. The whole input is checked before anything is applied: on
// error (wrapping ErrCorruptSnapshot or ErrSnapshotVersion) the ledger is
// unchanged. Keys in the snapshot replace the ledger's completed usage and
// restriction for those keys; their in-flight requests, if any, keep running.
func (l *Ledger) ReadSnapshot(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read ledger snapshot: %w", err)
	}
	// Two passes over the bytes: check everything first (nothing is
	// applied from a bad snapshot), then apply record by record, without
	// holding a decoded copy of the whole ledger.
	n, err := decodeSnapshot(data, nil)
	if err != nil {
		return err
	}
	_, abs := l.now()
	if l.Len() == 0 {
		per := n/len(l.shards) + n/(4*len(l.shards)) + 1
		for i := range l.shards {
			s := &l.shards[i]
			s.mu.Lock()
			s.tab.reset(per)
			s.mu.Unlock()
		}
	}
	_, err = decodeSnapshot(data, func(rec *snapRecord) {
		h, s := l.shardOf(rec.key)
		s.mu.Lock()
		slot, _ := s.lookup(rec.key, h, rec.width, abs, true)
		e := &s.tab.cells[slot]
		e.width, e.head, e.until = rec.width, rec.head, rec.until
		e.total = 0
		f := s.fleetAt(slot)
		for i := range ringSize {
			idx := rec.head - ringSize + 1 + int64(i)
			e.total += rec.work[i]
			e.work[idx%ringSize] = rec.work[i]
			e.reqs[idx%ringSize] = rec.reqs[i]
			if f != nil {
				f.own[idx%ringSize] = rec.work[i] // restored usage is this ledger's own
				f.dirty |= dirtyUsage
			}
		}
		s.mu.Unlock()
	})
	return err
}

// decodeSnapshot checks data and, when apply is set, calls it for each
// record (the record is reused between calls; its key is a new string).
// It returns the number of records.
func decodeSnapshot(data []byte, apply func(*snapRecord)) (int, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
	}
	if len(data) < len(snapshotMagic) || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return 0, corrupt("not a headroom ledger snapshot (bad magic)")
	}
	rd := bytes.NewReader(data[len(snapshotMagic):])
	version, err := binary.ReadUvarint(rd)
	if err != nil {
		return 0, corrupt("truncated header")
	}
	if version != SnapshotVersion {
		return 0, fmt.Errorf("%w: file has version %d, this headroom reads version %d", ErrSnapshotVersion, version, SnapshotVersion)
	}
	if len(data) < len(snapshotMagic)+5 {
		return 0, corrupt("truncated")
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if apply == nil && crc32.ChecksumIEEE(body) != sum {
		return 0, corrupt("checksum mismatch (truncated or damaged file)")
	}
	rd = bytes.NewReader(body[len(snapshotMagic):])
	if _, err := binary.ReadUvarint(rd); err != nil {
		return 0, corrupt("truncated header")
	}
	if _, err := binary.ReadVarint(rd); err != nil {
		return 0, corrupt("truncated header")
	}
	var rec snapRecord
	n := 0
	for ; ; n++ {
		tag, err := rd.ReadByte()
		if err != nil {
			return 0, corrupt("record %d: missing end marker", n)
		}
		if tag == 0 {
			break
		}
		if tag != 1 {
			return 0, corrupt("record %d: bad tag %d", n, tag)
		}
		klen, err := binary.ReadUvarint(rd)
		if err != nil || klen > maxKeyLen || klen > uint64(rd.Len()) {
			return 0, corrupt("record %d: bad key length", n)
		}
		off := len(body) - rd.Len()
		key := body[off : off+int(klen)]
		if _, err := rd.Seek(int64(klen), io.SeekCurrent); err != nil {
			return 0, corrupt("record %d: truncated key", n)
		}
		if rec.width, err = binary.ReadVarint(rd); err != nil || rec.width <= 0 {
			return 0, corrupt("record %d (%d-byte key): bad bucket width", n, klen)
		}
		if rec.head, err = binary.ReadVarint(rd); err != nil || rec.head < ringSize {
			return 0, corrupt("record %d: bad bucket index", n)
		}
		if rec.until, err = binary.ReadVarint(rd); err != nil || rec.until < 0 {
			return 0, corrupt("record %d: bad restriction time", n)
		}
		for b := range ringSize {
			w, err1 := binary.ReadUvarint(rd)
			q, err2 := binary.ReadUvarint(rd)
			if err1 != nil || err2 != nil || w > uint64(1<<56) || q > 1<<32-1 {
				return 0, corrupt("record %d: bad bucket %d", n, b)
			}
			rec.work[b], rec.reqs[b] = int64(w), uint32(q)
		}
		if apply != nil {
			rec.key = string(key)
			apply(&rec)
		}
	}
	if rd.Len() != 0 {
		return 0, corrupt("%d bytes after the end marker", rd.Len())
	}
	return n, nil
}

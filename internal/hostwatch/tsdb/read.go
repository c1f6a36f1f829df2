package tsdb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ScanStats describes what a Scan read.
type ScanStats struct {
	Segments int `json:"segments"`
	Records  int `json:"records"`
	// Torn counts segments that ended in an incomplete or corrupt record:
	// a crash's torn tail, or a record still being written.
	Torn int `json:"torn"`
}

// Scan calls fn for every record with from <= ts < to (zero times mean
// unbounded), in file order. It takes no lock, so it is safe while a writer
// appends; the payload slice is only valid during the call.
func Scan(dir string, from, to time.Time, fn func(ts time.Time, payload []byte) error) (ScanStats, error) {
	var st ScanStats
	segs, err := listSegments(dir)
	if err != nil {
		return st, err
	}
	var lo, hi int64 = -1 << 63, 1<<63 - 1
	if !from.IsZero() {
		lo = from.UnixNano()
	}
	if !to.IsZero() {
		hi = to.UnixNano()
	}
	for i, s := range segs {
		if s.firstTS >= hi {
			continue
		}
		if i+1 < len(segs) && segs[i+1].firstTS < lo {
			continue // every record here precedes the next segment's first
		}
		f, err := os.Open(filepath.Join(dir, s.name))
		if errors.Is(err, os.ErrNotExist) {
			continue // removed by retention while we listed
		}
		if err != nil {
			return st, fmt.Errorf("open segment %s: %w", s.name, err)
		}
		st.Segments++
		var good int64
		_, err = scanSegment(f, func(ts int64, p []byte) error {
			if ts < lo || ts >= hi {
				return nil
			}
			st.Records++
			return fn(time.Unix(0, ts), p)
		}, &good)
		f.Close()
		if errors.Is(err, ErrCorrupt) {
			st.Torn++
			continue
		}
		if err != nil {
			return st, fmt.Errorf("read segment %s: %w", s.name, err)
		}
	}
	return st, nil
}

// scanSegment reads a segment from r, calling fn per good record, and sets
// *good to the byte length of the valid prefix. It returns ErrCorrupt
// (wrapped) when it stops at a bad header or record, nil at a clean end.
func scanSegment(r io.Reader, fn func(ts int64, payload []byte) error, good *int64) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [headerSize]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil // empty file: nothing written yet
		}
		return 0, fmt.Errorf("%w: short segment header", ErrCorrupt)
	}
	if string(hdr[:]) != segmentMagic {
		return 0, fmt.Errorf("%w: bad segment header %q", ErrCorrupt, hdr[:])
	}
	*good = int64(headerSize)
	n := 0
	var payload []byte
	for {
		ts, p, err := readRecord(br, payload)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		payload = p
		if err := fn(ts, p); err != nil {
			return n, err
		}
		*good += int64(recordHeader + len(p))
		n++
	}
}

// readRecord reads one record into buf (grown as needed). It returns io.EOF
// only at a clean record boundary.
func readRecord(r io.Reader, buf []byte) (int64, []byte, error) {
	var h [recordHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, buf, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, buf, fmt.Errorf("%w: torn record header", ErrCorrupt)
		}
		return 0, buf, err
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	if n > MaxRecord {
		return 0, buf, fmt.Errorf("%w: record length %d over limit", ErrCorrupt, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, buf, fmt.Errorf("%w: torn record payload", ErrCorrupt)
		}
		return 0, buf, err
	}
	crc := crc32.Update(0, castagnoli, h[8:16])
	crc = crc32.Update(crc, castagnoli, buf)
	if crc != binary.LittleEndian.Uint32(h[4:8]) {
		return 0, buf, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return int64(binary.LittleEndian.Uint64(h[8:16])), buf, nil
}

// DecodeRecords decodes a byte stream of records (no segment header) and
// calls fn for each good one, stopping at the first bad one. It is the
// decoder Scan uses, exposed for fuzzing and for tools that carry records
// outside segment files.
func DecodeRecords(r io.Reader, fn func(ts time.Time, payload []byte) error) (int, error) {
	br := bufio.NewReader(r)
	n := 0
	var buf []byte
	for {
		ts, p, err := readRecord(br, buf)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		buf = p
		if err := fn(time.Unix(0, ts), p); err != nil {
			return n, err
		}
		n++
	}
}

// EncodeRecord appends one record's bytes to dst.
func EncodeRecord(dst []byte, ts time.Time, payload []byte) []byte {
	return appendRecord(dst, ts.UnixNano(), payload)
}

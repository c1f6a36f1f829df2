// Package tsdb is the small embedded time-series file that `headroom host
// watch` writes and `headroom host explain` reads: an append-only log of
// timestamped records in a directory of segment files, bounded in total size
// and in age.
//
// It is built for the host that dies mid-incident (seed 02: a t2.micro that
// ran out of memory during the daily apt upgrade and had to be rebooted). The
// minutes before the death are the ones that matter, so every record carries
// its own length and CRC, each append is one write(2) followed by fsync, and
// Open cuts a torn tail (a record half-written when the process or the machine
// died) instead of refusing the file. Readers never need the writer's lock:
// a record that is still being written simply fails its CRC and ends the scan.
//
// On disk, DIR holds LOCK and segments named <seq>-<first unix nano>.hrts.
// A segment is an 8-byte header followed by records:
//
//	uint32 LE payload length | uint32 LE CRC-32C of (timestamp, payload) |
//	int64 LE timestamp (unix nanoseconds) | payload
package tsdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// segmentMagic starts every segment; the last byte is the format version.
	segmentMagic = "HRTSDB\x00\x01"
	headerSize   = len(segmentMagic)
	// recordHeader is length + CRC + timestamp.
	recordHeader = 4 + 4 + 8
	// MaxRecord bounds one payload. A length field above it is treated as
	// corruption rather than an instruction to allocate gigabytes.
	MaxRecord = 16 << 20
	segSuffix = ".hrts"
)

// Defaults for the zero Options.
const (
	DefaultMaxSize   = 64 << 20
	DefaultRetention = 7 * 24 * time.Hour
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a record whose length or checksum does not hold. Scan
// reports it in ScanStats, not as an error: the records before it are good.
var ErrCorrupt = errors.New("corrupt record")

// Options configure a writer. The zero value of every field is usable.
type Options struct {
	// Dir holds the segments; it is created if missing.
	Dir string
	// MaxSize bounds the total bytes of all segments; the oldest segments
	// are deleted to stay under it. Zero means DefaultMaxSize.
	MaxSize int64
	// Retention deletes segments whose records are all older than this.
	// Zero means DefaultRetention.
	Retention time.Duration
	// SegmentSize is the size at which a new segment is started; retention
	// works in whole segments, so it is also the granularity of deletion.
	// Zero means MaxSize/16, clamped to [64 KiB, 8 MiB].
	SegmentSize int64
	// NoSync skips the fsync after each append. The default syncs, because
	// the records written just before a host dies are the point of the file.
	NoSync bool
	// Now is the clock used for retention; nil means time.Now.
	Now func() time.Time
}

// Recovery says what Open had to repair.
type Recovery struct {
	// Segment is the segment whose tail was cut, if any.
	Segment string
	// TruncatedBytes is how many bytes of torn tail were removed.
	TruncatedBytes int64
}

// DB is an open writer. It is not safe for concurrent use by several
// goroutines; the sampler appends from one loop.
type DB struct {
	opts     Options
	lock     *os.File
	f        *os.File
	seq      uint64
	size     int64
	buf      []byte
	recovery Recovery
}

type segment struct {
	name    string
	seq     uint64
	firstTS int64
	size    int64
}

// Open takes the directory's lock, repairs a torn tail in the newest segment
// and returns a writer appending to it.
func Open(opts Options) (*DB, error) {
	if opts.Dir == "" {
		return nil, errors.New("tsdb: no data directory given")
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = min(max(opts.MaxSize/16, 64<<10), 8<<20)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	db := &DB{opts: opts, lock: lock}
	segs, err := listSegments(opts.Dir)
	if err != nil {
		db.Close()
		return nil, err
	}
	if len(segs) == 0 {
		return db, nil
	}
	last := segs[len(segs)-1]
	path := filepath.Join(opts.Dir, last.name)
	good, err := validLength(path)
	if err != nil {
		db.Close()
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open segment %s: %w", path, err)
	}
	if good < int64(headerSize) {
		// A segment created but never given its header: start it over.
		good = 0
	}
	if good < last.size {
		if err := f.Truncate(good); err != nil {
			f.Close()
			db.Close()
			return nil, fmt.Errorf("truncate torn tail of %s: %w", path, err)
		}
		db.recovery = Recovery{Segment: last.name, TruncatedBytes: last.size - good}
	}
	if good == 0 {
		if _, err := f.WriteAt([]byte(segmentMagic), 0); err != nil {
			f.Close()
			db.Close()
			return nil, fmt.Errorf("write header of %s: %w", path, err)
		}
		good = int64(headerSize)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		db.Close()
		return nil, fmt.Errorf("seek %s: %w", path, err)
	}
	db.f, db.seq, db.size = f, last.seq, good
	return db, nil
}

// Recovered reports the repair Open made, if any.
func (db *DB) Recovered() Recovery { return db.recovery }

// Append writes one record. The whole record goes out in a single write so
// that a crash leaves at most one torn record, at the tail.
func (db *DB) Append(ts time.Time, payload []byte) error {
	if len(payload) > MaxRecord {
		return fmt.Errorf("tsdb: record of %d bytes is over the %d-byte limit", len(payload), MaxRecord)
	}
	n := int64(recordHeader + len(payload))
	if db.f == nil || (db.size > int64(headerSize) && db.size+n > db.opts.SegmentSize) {
		if err := db.rotate(ts); err != nil {
			return err
		}
	}
	db.buf = appendRecord(db.buf[:0], ts.UnixNano(), payload)
	if _, err := db.f.Write(db.buf); err != nil {
		return fmt.Errorf("append to %s: %w", db.f.Name(), err)
	}
	db.size += n
	if !db.opts.NoSync {
		if err := db.f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", db.f.Name(), err)
		}
	}
	return nil
}

func appendRecord(dst []byte, ts int64, payload []byte) []byte {
	var h [recordHeader]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], uint64(ts))
	crc := crc32.Update(0, castagnoli, h[8:16])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:8], crc)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// rotate closes the current segment, starts the next and applies retention.
func (db *DB) rotate(ts time.Time) error {
	if db.f != nil {
		if err := db.f.Close(); err != nil {
			return fmt.Errorf("close segment: %w", err)
		}
		db.f = nil
	}
	db.seq++
	name := fmt.Sprintf("%010d-%d%s", db.seq, ts.UnixNano(), segSuffix)
	path := filepath.Join(db.opts.Dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create segment %s: %w", path, err)
	}
	if _, err := f.Write([]byte(segmentMagic)); err != nil {
		f.Close()
		return fmt.Errorf("write header of %s: %w", path, err)
	}
	db.f, db.size = f, int64(headerSize)
	if !db.opts.NoSync {
		syncDir(db.opts.Dir)
	}
	return db.enforce()
}

// enforce deletes whole segments, oldest first, that are past retention or
// over the size budget. The active segment is never deleted.
func (db *DB) enforce() error {
	segs, err := listSegments(db.opts.Dir)
	if err != nil {
		return err
	}
	var total int64
	for _, s := range segs {
		total += s.size
	}
	cutoff := db.opts.Now().Add(-db.opts.Retention).UnixNano()
	for i := 0; i < len(segs)-1; i++ {
		// Segment i holds records up to the first record of segment i+1.
		expired := segs[i+1].firstTS < cutoff
		if !expired && total <= db.opts.MaxSize {
			break
		}
		if err := os.Remove(filepath.Join(db.opts.Dir, segs[i].name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("retention: remove %s: %w", segs[i].name, err)
		}
		total -= segs[i].size
	}
	return nil
}

// Close syncs and closes the active segment and releases the lock.
func (db *DB) Close() error {
	var errs []error
	if db.f != nil {
		if !db.opts.NoSync {
			errs = append(errs, db.f.Sync())
		}
		errs = append(errs, db.f.Close())
		db.f = nil
	}
	if db.lock != nil {
		errs = append(errs, unlockDir(db.lock))
		db.lock = nil
	}
	return errors.Join(errs...)
}

func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list data directory %s: %w", dir, err)
	}
	var segs []segment
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		seqS, tsS, ok := strings.Cut(strings.TrimSuffix(name, segSuffix), "-")
		if !ok {
			continue
		}
		seq, err1 := strconv.ParseUint(seqS, 10, 64)
		ts, err2 := strconv.ParseInt(tsS, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted by retention between ReadDir and Info
		}
		segs = append(segs, segment{name: name, seq: seq, firstTS: ts, size: info.Size()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seq < segs[j].seq })
	return segs, nil
}

// validLength returns the length of the segment's prefix made of a good
// header and whole, checksummed records.
func validLength(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open segment %s: %w", path, err)
	}
	defer f.Close()
	var good int64
	_, err = scanSegment(f, func(int64, []byte) error { return nil }, &good)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return 0, fmt.Errorf("read segment %s: %w", path, err)
	}
	return good, nil
}

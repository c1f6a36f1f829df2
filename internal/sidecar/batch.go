package sidecar

import (
	"strings"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
)

// LineBatch reads the access log file the sidecar follows (--access-log)
// a read at a time. A line with a ticket finishes it as it comes, as
// IngestLine does; the lines no check opened a ticket for (a listed
// caller's, a cached allow's: at high rates, nearly all of them) are
// summed by caller and pool, each line capped on its own, and each
// caller's sum is charged in one ledger step when the read ends (Flush):
// a map update per line instead of a key copy, a lookup, two ledger steps
// and five clock readings. A caller is charged at most one read (256 KiB
// of lines, a few milliseconds) later than line by line would.
//
// A LineBatch is used from one goroutine, the follower's.
type LineBatch struct {
	s       *Sidecar
	lp      *lineParser // its own: no pool round trip per line
	idx     map[string]int
	entries []batchEntry
	id      []byte // key + "\x00" + pool, the index's key, reused
}

// batchEntry is one caller's lines in the batch so far.
type batchEntry struct {
	adm     admit.Admission
	limit   time.Duration // capLine's pool limit, looked up once
	limited bool
	listed  bool // its lines say how long its pool's requests take (unchecked list)
	n       int
	worker  time.Duration
	longest time.Duration
}

// NewLineBatch returns a LineBatch for s.
func (s *Sidecar) NewLineBatch() *LineBatch {
	return &LineBatch{s: s, lp: s.parsers.Get().(*lineParser), idx: map[string]int{}}
}

// Ingest reads one line of the file; see IngestLine. A line without a
// ticket is charged at the next Flush.
func (b *LineBatch) Ingest(line []byte) (string, error) {
	res, err := b.s.ingestParsed(b.lp, line, b)
	b.s.m.countLine(res)
	return res, err
}

func (b *LineBatch) add(rec *accesslog.Record, upTime time.Duration) {
	b.id = append(append(append(b.id[:0], rec.Key...), 0), rec.Pool...)
	i, ok := b.idx[string(b.id)]
	if !ok {
		s := b.s
		i = len(b.entries)
		b.entries = append(b.entries, batchEntry{})
		e := &b.entries[i]
		// A copy of the key: the ledger may keep it; rec.Key aliases
		// the line.
		s.core.Lookup(&e.adm, strings.Clone(rec.Key), rec.Pool)
		e.limit, e.limited = s.lineLimit(e.adm.Pool.Name(), false, e.adm.Key)
		e.listed = s.unchecked != nil && s.granted(e.adm.Key)
		b.idx[string(b.id)] = i
	}
	e := &b.entries[i]
	upTime = b.s.capLine(upTime, e.adm.Key, e.adm.Pool.Name(), e.limit, e.limited)
	e.n++
	e.worker += upTime
	e.longest = max(e.longest, upTime)
	b.s.core.Count(&e.adm, lineOutcome(rec, false), upTime, true)
}

// Flush charges the lines gathered since the last Flush.
func (b *LineBatch) Flush() {
	for i := range b.entries {
		e := &b.entries[i]
		if e.listed {
			// A listed caller's requests say whether its pool's
			// requests are still short enough for its callers to
			// stay listed.
			b.s.unchecked.noteDuration(e.adm.Pool.Name(), e.longest)
		}
		b.s.core.ChargeN(&e.adm, e.n, e.worker)
	}
	clear(b.idx)
	clear(b.entries) // drop the keys and configs they point to
	b.entries = b.entries[:0]
}

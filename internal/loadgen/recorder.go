package loadgen

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/headroom-dev/headroom/internal/loadgen/h1"
)

// Latencies are recorded in microseconds from 1 µs to 10 minutes with three
// significant digits: 0.1% resolution whatever the magnitude.
const (
	histLowest  = 1
	histHighest = int64(10 * time.Minute / time.Microsecond)
	histDigits  = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histLowest, histHighest, histDigits) }

func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < histLowest {
		us = histLowest
	}
	if us > histHighest {
		us = histHighest
	}
	_ = h.RecordValue(us) // cannot fail: the value is clamped into range
}

// outcome is one request as the generator saw it.
type outcome struct {
	intended  time.Time // when the schedule wanted it sent
	sent      time.Time // when the generator started sending it
	firstByte time.Time // zero when no response arrived
	done      time.Time
	status    int
	bytes     int64
	err       error
	// cut marks a request stopped by the end of the run's graceful stop
	// rather than by its own timeout.
	cut bool
}

// shard collects outcomes between two ticks. Workers spread over several
// shards so they rarely wait on each other's lock.
type shard struct {
	mu        sync.Mutex
	corrected *hdrhistogram.Histogram // from the intended send time
	raw       *hdrhistogram.Histogram // from the actual send time
	lag       *hdrhistogram.Histogram // actual minus intended send time
	counts    intervalCounts
}

type intervalCounts struct {
	completed, errors, bytes int64
	failed                   int64 // no response at all
	sumLatency, sumReceive   time.Duration
	status                   map[int]int64
	errKinds                 map[string]int64
}

func (c *intervalCounts) add(o *intervalCounts) {
	c.completed += o.completed
	c.errors += o.errors
	c.failed += o.failed
	c.bytes += o.bytes
	c.sumLatency += o.sumLatency
	c.sumReceive += o.sumReceive
	if c.status == nil {
		c.status = map[int]int64{}
	}
	for k, v := range o.status {
		c.status[k] += v
	}
	if c.errKinds == nil {
		c.errKinds = map[string]int64{}
	}
	for k, v := range o.errKinds {
		c.errKinds[k] += v
	}
}

func newShard() *shard {
	return &shard{corrected: newHist(), raw: newHist(), lag: newHist(),
		counts: intervalCounts{status: map[int]int64{}, errKinds: map[string]int64{}}}
}

func (s *shard) record(o *outcome) {
	lat := o.done.Sub(o.intended)
	raw := o.done.Sub(o.sent)
	lag := o.sent.Sub(o.intended)
	var recv time.Duration
	if !o.firstByte.IsZero() {
		recv = o.done.Sub(o.firstByte)
	}
	s.mu.Lock()
	recordDur(s.corrected, lat)
	recordDur(s.raw, raw)
	recordDur(s.lag, lag)
	c := &s.counts
	c.completed++
	c.bytes += o.bytes
	c.sumLatency += raw
	c.sumReceive += recv
	if o.err != nil {
		c.errors++
		c.failed++
		if o.cut {
			c.errKinds["unfinished at the end of the run"]++
		} else {
			c.errKinds[errorKind(o.err)]++
		}
	} else {
		c.status[o.status]++
		if o.status >= 500 {
			c.errors++
		}
	}
	s.mu.Unlock()
}

// drain moves the shard's interval into the given histograms and counts and
// resets it.
func (s *shard) drain(corrected, raw, lag *hdrhistogram.Histogram, c *intervalCounts) {
	s.mu.Lock()
	corrected.Merge(s.corrected)
	raw.Merge(s.raw)
	lag.Merge(s.lag)
	s.corrected.Reset()
	s.raw.Reset()
	s.lag.Reset()
	c.add(&s.counts)
	s.counts = intervalCounts{status: map[int]int64{}, errKinds: map[string]int64{}}
	s.mu.Unlock()
}

// errorKind names a transport error by what it means for the test, so the
// breakdown stays short whatever the addresses and ports in the messages.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, h1.ErrInterrupted), errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "out of local sockets or files"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "EOF"):
		return "connection closed early"
	case strings.Contains(msg, "malformed"):
		return "malformed response"
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509"):
		return "tls"
	case strings.Contains(msg, "no such host"):
		return "dns"
	}
	return "other"
}

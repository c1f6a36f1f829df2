package sidecar

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// fileLine is the access log line of one request as nginx writes it to
// the file the sidecar follows: line's datagram without its syslog header.
func fileLine(t *testing.T, id, key string, status int, upstream string) []byte {
	t.Helper()
	msg, err := ParseSyslog(line(id, key, status, upstream), DefaultSyslogTag)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestLineBatchChargesAsLineByLine: the same lines read a read at a time
// (LineBatch, flushed every few lines) and line by line (IngestLine) give
// the same result per line, the same ledger for every key, and the same
// metrics: tickets finished, caps applied to each line on its own (the
// bound and the pool's longest checked request), a key taken over its
// budget, lines without upstream time, a 499 that came before its check.
// The one difference allowed: a key the lines take over its budget is
// restricted at the Flush, up to one batch's time later.
func TestLineBatchChargesAsLineByLine(t *testing.T) {
	const cfg = "budget: {worker_time: 20s, window: 10m, restrict_for: 5m}\ntimeouts: {upstream: 30s}\n"
	for _, every := range []int{1, 3, 7, 1000} {
		t.Run(fmt.Sprintf("flush every %d", every), func(t *testing.T) {
			byLine, batched := newSidecarEnv(t, cfg), newSidecarEnv(t, cfg)
			batch := batched.sc.NewLineBatch()
			c := byLine.sc.Core()
			fp := func(k string) string { return c.Fingerprint(k) }
			type step struct {
				check string // a check with this id and key first (id:key)
				line  []byte
			}
			var steps []step
			add := func(check string, l []byte) { steps = append(steps, step{check, l}) }
			add("r1:k1", fileLine(t, "r1", fp("k1"), 200, "0.400"))  // sets the pool's longest checked
			add("", fileLine(t, "-", fp("k2"), 200, "0.100"))        // unmatched
			add("", fileLine(t, "-", fp("k2"), 200, "5.000"))        // capped at 0.4 (pool_max)
			add("", fileLine(t, "-", fp("k3"), 200, "0.300"))        //
			add("r2:k3", fileLine(t, "r2", fp("k3"), 200, "45.000")) // capped at the 30 s bound
			add("", fileLine(t, "-", fp("k2"), 499, "-"))            // no upstream
			add("", fileLine(t, "early-1", fp("k1"), 499, "-"))      // before its check
			add("", fileLine(t, "x", fp("k2"), 502, "0.200, 0.150")) // an upstream error, two tries
			add("r3:k1", fileLine(t, "r3", fp("k1"), 200, "0.050"))  //
			for i := range 60 {                                      // k4 goes over its budget
				add("", fileLine(t, "-", fp("k4"), 200, "0.400"))
				if i%20 == 0 {
					add(fmt.Sprintf("c%d:k4", i), fileLine(t, fmt.Sprintf("c%d", i), fp("k4"), 200, "0.390"))
				}
			}
			add("", fileLine(t, "-", fp("k1"), 200, "0.010"))
			add("", []byte("not a line"))

			var gotRes, wantRes []string
			for i, st := range steps {
				if st.check != "" {
					id, key, _ := strings.Cut(st.check, ":")
					for _, e := range []*sidecarEnv{byLine, batched} {
						if w := e.check(id, "/api/report", "X-Api-Key: "+key); w.Code != http.StatusNoContent && w.Code != http.StatusForbidden {
							t.Fatalf("check %s = %d", st.check, w.Code)
						}
					}
				}
				res, _ := byLine.sc.IngestLine(st.line)
				wantRes = append(wantRes, res)
				res, _ = batch.Ingest(st.line)
				gotRes = append(gotRes, res)
				if (i+1)%every == 0 {
					batch.Flush()
				}
				byLine.clock.Advance(50 * time.Millisecond)
				batched.clock.Advance(50 * time.Millisecond)
			}
			batch.Flush()
			if !slices.Equal(gotRes, wantRes) {
				t.Errorf("results batched %v\nline by line %v", gotRes, wantRes)
			}
			batchSpan := time.Duration(every) * 50 * time.Millisecond
			for _, k := range []string{"k1", "k2", "k3", "k4"} {
				got, want := batched.status(k), byLine.status(k)
				if late := got.RestrictedUntil.Sub(want.RestrictedUntil); late >= 0 && late < batchSpan {
					got.RestrictedUntil = want.RestrictedUntil
				}
				if got != want {
					t.Errorf("%s: batched %+v\nline by line %+v", k, got, want)
				}
			}
			if got, want := batched.status("k4"), byLine.status("k4"); got.RestrictedUntil.IsZero() || want.RestrictedUntil.IsZero() {
				t.Errorf("k4 over its budget is not restricted: batched %+v, line by line %+v", got, want)
			}
			if got, want := headroomMetrics(batched.metrics()), headroomMetrics(byLine.metrics()); !slices.Equal(got, want) {
				t.Errorf("metrics differ:\nbatched %s\nline by line %s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func headroomMetrics(m string) []string {
	var out []string
	for l := range strings.SplitSeq(m, "\n") {
		if strings.HasPrefix(l, "headroom_") {
			out = append(out, l)
		}
	}
	return out
}

// TestLineBatchAllocatesNothingPerLine: a caller's lines in a read cost
// no allocation beyond the first (its key copied for the ledger).
func TestLineBatchAllocatesNothingPerLine(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	e := newSidecarEnv(t, "budget: {worker_time: 1h}\n")
	b := e.sc.NewLineBatch()
	l := fileLine(t, "-", e.sc.Core().Fingerprint("k1"), 200, "0.002")
	b.Ingest(l)
	b.Flush()
	n := testing.AllocsPerRun(100, func() {
		b.Ingest(l)
		for range 99 {
			b.Ingest(l)
		}
		b.Flush()
	})
	if n > 3 {
		t.Errorf("%v allocations per 100 lines and a flush, want at most 3 (the caller's entry)", n)
	}
}

package guard

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/requestid"
	"github.com/headroom-dev/headroom/internal/testenv"
)

// benchHeader is a parsed head's fields as the fast path shows them to the
// core (admit.Header over its views), without net/http's map. A pointer
// in the interface, as fastproxy's headerView, so passing it allocates
// nothing.
type benchHeader struct{ f []admit.Field }

func (h *benchHeader) Get(name string) string {
	for i := range h.f {
		if strings.EqualFold(h.f[i].Name, name) {
			return h.f[i].Value
		}
	}
	return ""
}

func (h *benchHeader) Values(name string) []string {
	var vs []string
	for i := range h.f {
		if strings.EqualFold(h.f[i].Name, name) {
			vs = append(vs, h.f[i].Value)
		}
	}
	return vs
}

// countingClock is the system clock, counting its readings.
type countingClock struct{ n atomic.Int64 }

func (c *countingClock) Now() time.Time { c.n.Add(1); return time.Now() }

// workConfig is a realistic guard: keys from a header, a budget with a
// concurrency limit, a pool by path prefix, the headroom log format.
const workConfig = `upstream: http://127.0.0.1:1
keys:
  sources: [{header: X-Api-Key}]
budget: {worker_time: 1h, window: 1m, restrict_for: 5m, max_in_flight: 100}
pools:
  - {name: api, path_prefixes: [/api/], max_concurrent: 1000}
`

// BenchmarkGuardWork is the guard's own work for one proxied request, as
// the fast path (internal/fastproxy conn.handle and conn.finish) does it,
// without sockets: Begin, the request id, Admit, the upstream's start and
// end readings, Finish, and the access-log line formatted and appended to
// the buffered log (writing to io.Discard when full). keys is how many API
// keys the requests cycle through; clock=counting reads the clock through
// a counter and reports clock-reads/op (the front-end's two upstream
// readings included), at the cost of the ledger's cheaper monotonic read.
// finish-at charges with Core.FinishAt and the upstream's end reading, as a
// front-end can (fastproxy calls Finish); at also begins with BeginAt (a
// reading when the head is in) and admits with AdmitAt (the upstream's
// start), so the core reads no clock of its own.
func BenchmarkGuardWork(b *testing.B) {
	for _, c := range []struct {
		name     string
		keys     int
		counting bool
		at       int // 1: FinishAt with the upstream's end; 2: BeginAt, AdmitAt and FinishAt
	}{
		{"keys=1", 1, false, 0},
		{"keys=1000", 1000, false, 0},
		{"clock=counting/keys=1", 1, true, 0},
		{"finish-at/keys=1", 1, false, 1},
		{"clock=counting/finish-at/keys=1", 1, true, 1},
		{"at/keys=1", 1, false, 2},
		{"at/keys=1000", 1000, false, 2},
		{"clock=counting/at/keys=1", 1, true, 2},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg, err := config.Parse([]byte(workConfig))
			if err != nil {
				b.Fatal(err)
			}
			var clk budget.Clock = budget.SystemClock{}
			cc := &countingClock{}
			if c.counting {
				clk = cc
			}
			g, err := New(Options{
				Config: cfg, Secret: []byte("bench-secret-0123456789"),
				Clock:     clk,
				AccessLog: io.Discard,
				Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			core := g.core
			heads := make([]benchHeader, c.keys)
			for i := range heads {
				heads[i] = benchHeader{f: []admit.Field{
					{Name: "Host", Value: "api.example.com"},
					{Name: "User-Agent", Value: "bench/1.0"},
					{Name: "Accept", Value: "*/*"},
					{Name: "X-Api-Key", Value: "sk_live_" + strconv.Itoa(i) + "_0123456789abcdef"},
				}}
			}
			peer := netip.MustParseAddr("203.0.113.7")
			const target = "/api/v2/applications/33591900/metrics.json?page=2"
			var (
				ak    admit.AddrKey
				adm   admit.Admission
				ridB  [requestid.Len]byte
				ctx   = context.Background()
				i     int
				reads int64
			)
			b.ReportAllocs()
			cpu := testenv.StartCPU()
			cc.n.Store(0)
			for b.Loop() {
				areq := admit.Request{Header: &heads[i], Peer: peer, Host: "api.example.com",
					Path: "/api/v2/applications/33591900/metrics.json", Query: "page=2", AddrKey: &ak}
				var (
					o       admit.Outcome
					ok      bool
					upStart time.Time
				)
				if c.at == 2 {
					core.BeginAt(&areq, &adm, clk.Now())
				} else {
					core.Begin(&areq, &adm)
				}
				_ = adm.TrustedPeer(peer)
				rid := requestid.Append(ridB[:0])
				if c.at == 2 {
					upStart = clk.Now()
					o, ok = core.AdmitAt(ctx, &adm, upStart)
				} else {
					o, ok = core.Admit(ctx, &adm)
					upStart = clk.Now()
				}
				if !ok {
					b.Fatalf("refused: %v", o)
				}
				upEnd := clk.Now()
				if c.at > 0 {
					core.FinishAt(&adm, upEnd, upEnd.Sub(upStart), true, o)
				} else {
					core.Finish(&adm, upEnd.Sub(upStart), true, o)
				}
				rec := accesslog.Record{
					Time:            upEnd,
					Key:             adm.Key,
					Method:          "GET",
					Path:            adm.RedactQuery(target),
					Proto:           "HTTP/1.1",
					Host:            "api.example.com",
					Status:          200,
					BytesSent:       128,
					RequestTime:     upEnd.Sub(adm.Start),
					UpstreamStatus:  200,
					UpstreamTime:    upEnd.Sub(upStart),
					HasUpstreamTime: true,
					UserAgent:       "bench/1.0",
					Pool:            adm.Pool.Name(),
				}
				g.logRecord(&rec, adm.Client, o, unsafe.String(&rid[0], len(rid)))
				if i++; i == len(heads) {
					i = 0
				}
			}
			reads = cc.n.Load()
			cpu.Report(b)
			if c.counting {
				b.ReportMetric(float64(reads)/float64(b.N), "clock-reads/op")
			}
		})
	}
}

package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/lifecycle"
	"github.com/headroom-dev/headroom/internal/tailfile"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// RunOptions configures Run. Config is required; its Listen is the check
// endpoint's address.
type RunOptions struct {
	// Config is the validated starting configuration (NoUpstream set).
	Config *config.Config
	// Syslog is the UDP address nginx's access_log syslog:server= sends
	// to. "" means DefaultSyslogListen, or no syslog listener when
	// AccessLog is set.
	Syslog string
	// AccessLog is a file nginx writes its access log to (nginx-config
	// --log-file), which the sidecar follows from its end, across
	// rotations, instead of (or beside) the syslog listener.
	AccessLog string
	// Unchecked keeps the list of callers nginx answers for itself
	// (nginx-config --map-dir); nil: none.
	Unchecked *UncheckedOptions
	// Tag is the syslog tag to accept; "" accepts any.
	Tag string
	// Senders are the addresses syslog datagrams are accepted from (see
	// Options.Senders); empty: nginx's, as its checks show, and loopback's
	// 127.0.0.1 and ::1.
	Senders []netip.Prefix
	// CheckCache is Options.CacheMax: how long nginx may reuse an allow.
	CheckCache time.Duration

	// LoadConfig, Reload, Snapshots, Logger and Clock are as in
	// guard.ServerOptions: a Snapshots that is also a lifecycle.Syncer (the
	// Redis fleet store) shares budgets with other sidecars and proxies.
	LoadConfig func() (*config.Config, error)
	Reload     <-chan struct{}
	Snapshots  lifecycle.Snapshotter
	Logger     *slog.Logger
	Clock      budget.Clock

	// Ready, if set, is called once the listeners are open (admin is nil
	// when the admin API is off).
	Ready func(check, syslog, admin net.Addr)
}

// Run serves the check endpoint, the syslog listener and the admin
// API until ctx is cancelled, then stops accepting checks, reads the log
// lines still queued, charges the tickets still pending their elapsed time,
// and writes a last snapshot.
func Run(ctx context.Context, o RunOptions) error {
	cfg := o.Config
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	syslogAddr := o.Syslog
	if syslogAddr == "" && o.AccessLog == "" {
		syslogAddr = DefaultSyslogListen
	}
	var err error
	var lineDelay time.Duration
	var follower *tailfile.Follower
	if o.AccessLog != "" {
		// nginx's buffer flushes at least once a second (flush=1s in the
		// snippet); the follower looks for new lines every 100 ms.
		lineDelay = time.Second + 200*time.Millisecond
		follower, err = tailfile.New(tailfile.Options{Path: o.AccessLog, Logger: lg})
		if err != nil {
			return fmt.Errorf("--access-log: %w", err)
		}
	}
	ledger := lifecycle.OpenLedger(cfg, o.Clock, lg, o.Snapshots)
	core, err := admit.New(admit.Options{Config: cfg, Ledger: ledger, Clock: o.Clock, Logger: lg})
	if err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	if err := lifecycle.RegisterStore(core.Registry(), o.Snapshots); err != nil {
		return err
	}
	sc, err := New(Options{Core: core, Tag: o.Tag, Logger: lg, Senders: o.Senders, CacheMax: o.CheckCache,
		Unchecked: o.Unchecked, LineDelay: lineDelay})
	if err != nil {
		return err
	}
	if follower != nil {
		if err := registerAll(core.Registry(), followerMetrics(follower)...); err != nil {
			return fmt.Errorf("sidecar: register metrics: %w", err)
		}
	}
	if o.Unchecked != nil {
		had, err := clearMaps(o.Unchecked.Dir)
		if err != nil {
			return err
		}
		if had {
			// Callers listed before a restart may be near their budget now.
			if err := o.Unchecked.Reload(); err != nil {
				lg.Warn("the unchecked list from before was emptied, but nginx did not reload it", "err", err.Error())
			}
		}
	}
	health, _ := o.Snapshots.(admin.StoreHealth)
	adminAPI := admin.Handler(admin.Options{Core: core, Health: health, Logger: lg, Role: "sidecar"})

	var pc *net.UDPConn
	if syslogAddr != "" {
		ua, err := net.ResolveUDPAddr("udp", syslogAddr)
		if err != nil {
			return fmt.Errorf("listen for nginx's syslog (--syslog %s): %w", syslogAddr, err)
		}
		if pc, err = net.ListenUDP("udp", ua); err != nil {
			return fmt.Errorf("listen for nginx's syslog (--syslog %s): %w", syslogAddr, err)
		}
		defer pc.Close()
		// Bursts of lines must wait in the kernel, not be dropped, while
		// the reader works: every lost line is charged the bound instead
		// of the real time.
		_ = pc.SetReadBuffer(4 << 20)
		if !config.IsLoopback(syslogAddr) {
			lg.Warn("the syslog listener is not on loopback: firewall it; datagrams are taken only from --syslog-senders (default: the address nginx's checks come from)", "syslog", syslogAddr)
		}
	}
	cl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen for nginx's checks (--listen %s): %w", cfg.Listen, err)
	}
	errLog := lifecycle.ErrorLog(lg)
	// The check endpoint's lean server (checkserver.go); Sidecar.ServeHTTP
	// answers the same for an embedder's net/http server.
	checkSrv := newCheckServer(sc, cfg.Timeouts.Idle.D(), cfg.Timeouts.ReadHeader.D(), lg)
	errc := make(chan error, 3)
	go func() { errc <- checkSrv.Serve(cl) }()

	readDone := make(chan struct{})
	if pc != nil {
		go func() {
			defer close(readDone)
			if err := readSyslog(pc, sc, lg); err != nil {
				errc <- err
			}
		}()
	} else {
		close(readDone)
	}
	// The file's reader stops after ctx ends and it has read to the file's
	// end once more: the lines nginx flushed at its own shutdown count.
	followCtx, stopFollow := context.WithCancel(context.Background())
	defer stopFollow()
	followDone := make(chan struct{})
	if follower != nil {
		go func() {
			defer close(followDone)
			var lastWarn time.Time
			batch := sc.NewLineBatch()
			err := follower.RunBatched(followCtx, func(line []byte) {
				res, err := batch.Ingest(line)
				if err != nil && res == LineMalformed && time.Since(lastWarn) > time.Minute {
					lastWarn = time.Now()
					lg.Warn("malformed line in nginx's access log (is its log_format the one `headroom nginx-config` prints?)",
						"file", o.AccessLog, "err", err, "bytes", len(line))
				}
			}, batch.Flush)
			if err != nil {
				errc <- fmt.Errorf("follow %s: %w", o.AccessLog, err)
			}
		}()
	} else {
		close(followDone)
	}
	reviewDone := make(chan struct{})
	if o.Unchecked != nil {
		// Its own goroutine: a review waits for nginx's reload.
		go func() {
			defer close(reviewDone)
			t := time.NewTicker(sc.unchecked.o.Interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					sc.ReviewUnchecked()
				}
			}
		}()
	} else {
		close(reviewDone)
	}

	adminSrv, adminAddr, err := lifecycle.ServeAdmin(adminAPI, cfg, errLog, errc)
	if err != nil {
		checkSrv.Close()
		return err
	}
	var syslogLocal net.Addr
	if pc != nil {
		syslogLocal = pc.LocalAddr()
	}
	lg.Info("headroom sidecar listening", "check", cl.Addr().String(), "syslog", lifecycle.AddrString(syslogLocal), "access_log", o.AccessLog,
		"admin", lifecycle.AddrString(adminAddr), "bound", cfg.Timeouts.Upstream.String(), "shadow", cfg.Shadow)
	if len(cfg.Pools) > 0 {
		lg.Info("pools sort requests for the metrics here; their max_concurrent and queue are not enforced beside nginx (use limit_conn or upstream max_conns)",
			"pools", len(cfg.Pools))
	}
	if o.Ready != nil {
		o.Ready(cl.Addr(), syslogLocal, adminAddr)
	}

	p := lifecycle.Persist(o.Snapshots, ledger, cfg.Store.SnapshotInterval.D())
	defer p.Stop()
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = fmt.Errorf("serve: %w", err)
			break loop
		case <-o.Reload:
			lifecycle.ReloadFrom(core, o.LoadConfig, lg)
		case <-expire.C:
			sc.Expire()
		case <-p.Tick:
			p.Save(lg)
		}
	}

	lg.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Shutdown.D())
	defer cancel()
	if err := checkSrv.Shutdown(sctx); err != nil {
		checkSrv.Close()
	}
	// Lines already in the socket's buffer are read before the reader
	// stops: a short deadline, not an immediate close.
	if pc != nil {
		_ = pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	<-readDone
	stopFollow()
	<-followDone
	<-reviewDone
	sc.Close()
	lifecycle.StopAdmin(adminSrv)
	if err := p.Close(cfg, lg); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// Batches of syslog datagrams: nginx writes one line per datagram, at most
// its syslog limit of 4 KiB, so 8 KiB buffers hold any (a longer datagram
// is cut and counted malformed), and one recvmmsg takes up to 32.
const (
	syslogBatch       = 32
	syslogMaxDatagram = 8 << 10
)

// readSyslog reads datagrams until the connection is closed or its read
// deadline passes (nil), or reading fails: in batches (recvmmsg, through
// x/net's ReadBatch), each parsed in place. Malformed lines are counted
// (and logged at most once a minute, so junk cannot flood the log).
func readSyslog(pc *net.UDPConn, sc *Sidecar, lg *slog.Logger) error {
	var rb interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	} = ipv4.NewPacketConn(pc)
	if la, ok := pc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		rb = ipv6.NewPacketConn(pc)
	}
	msgs := make([]ipv4.Message, syslogBatch)
	bufs := make([]byte, syslogBatch*syslogMaxDatagram)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{bufs[i*syslogMaxDatagram : (i+1)*syslogMaxDatagram]}
	}
	var lastWarn time.Time
	for {
		n, err := rb.ReadBatch(msgs, 0)
		if err != nil {
			var ne net.Error
			if errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return fmt.Errorf("read syslog: %w", err)
		}
		for i := range msgs[:n] {
			m := &msgs[i]
			var from netip.Addr
			if ua, ok := m.Addr.(*net.UDPAddr); ok {
				from = ua.AddrPort().Addr()
			}
			b := m.Buffers[0][:m.N]
			if m.Flags&syscall.MSG_TRUNC != 0 {
				b = nil // cut: no line to trust; counted malformed
			}
			res, err := sc.IngestFrom(b, from)
			if err != nil && res == LineMalformed && time.Since(lastWarn) > time.Minute {
				lastWarn = time.Now()
				lg.Warn("malformed syslog line from nginx (is the log_format the one `headroom nginx-config` prints?)", "err", err, "bytes", m.N)
			}
		}
	}
}

// followerMetrics show how the sidecar keeps up with nginx's access log
// file (--access-log): a sidecar that falls behind charges late, and its
// tickets expire at the bound; an overlong line is skipped, not charged.
func followerMetrics(f *tailfile.Follower) []prometheus.Collector {
	stat := func(v func(tailfile.Stats) float64) func() float64 {
		return func() float64 { return v(f.Stats()) }
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "headroom_sidecar_access_log_behind_bytes",
			Help: "Bytes of the --access-log file not read yet, as of the last poll (every 100 ms): above a few hundred KiB for long, the sidecar does not keep up with nginx.",
		}, stat(func(s tailfile.Stats) float64 { return float64(s.Behind()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "headroom_sidecar_access_log_overlong_lines_total",
			Help: "Lines of the --access-log file longer than 64 KiB, skipped and not charged (their tickets expire at the bound).",
		}, stat(func(s tailfile.Stats) float64 { return float64(s.Overlong) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "headroom_sidecar_access_log_rotations_total",
			Help: "Times the --access-log path was found naming a new file (logrotate's rename or create), which was then followed.",
		}, stat(func(s tailfile.Stats) float64 { return float64(s.Rotations) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "headroom_sidecar_access_log_truncations_total",
			Help: "Times the --access-log file was found truncated (copytruncate) and read again from its start.",
		}, stat(func(s tailfile.Stats) float64 { return float64(s.Truncations) })),
	}
}

package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/admin"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/store"
	"github.com/headroom-dev/headroom/internal/testenv"
)

type sidecarRun struct {
	check, syslog, admin string
	stop                 func() error
}

func startSidecar(t *testing.T, o RunOptions) *sidecarRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *sidecarRun, 1)
	done := make(chan error, 1)
	o.Syslog = "127.0.0.1:0"
	o.Logger = slogTo(&testenv.Buffer{})
	o.Ready = func(c, s, a net.Addr) {
		ready <- &sidecarRun{check: c.String(), syslog: s.String(), admin: "http://" + a.String()}
	}
	go func() { done <- Run(ctx, o) }()
	var r *sidecarRun
	select {
	case r = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("sidecar: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("sidecar did not start")
	}
	stopped := false
	r.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("sidecar did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func sidecarConfig(t *testing.T, budget time.Duration, snapshot string) *config.Config {
	t.Helper()
	wt := config.Duration(budget)
	cfg := &config.Config{
		Listen: "127.0.0.1:0", NoUpstream: true,
		Admin:  config.Admin{Listen: "127.0.0.1:0"},
		Keys:   config.Keys{Secret: "0123456789abcdef0123456789abcdef"},
		Budget: config.Limits{WorkerTime: &wt},
		Store:  config.Store{Snapshot: snapshot},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func getKey(t *testing.T, adminURL, key string) admin.KeyJSON {
	t.Helper()
	res, err := http.Get(adminURL + "/v1/keys/" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var k admin.KeyJSON
	if err := json.NewDecoder(res.Body).Decode(&k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSidecarRunReloadsAndKeepsUsageAcrossRestarts drives RunSidecar over
// its sockets: a check over HTTP, a log line over UDP, a reload, a
// graceful stop with a request still pending, and a restart from the
// snapshot.
func TestSidecarRunReloadsAndKeepsUsageAcrossRestarts(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "usage.snapshot")
	st, err := store.NewFile(store.FileOptions{Path: snap})
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{}, 1)
	run := startSidecar(t, RunOptions{
		Config: sidecarConfig(t, time.Minute, snap), Tag: DefaultSyslogTag, Snapshots: st, Reload: reload,
		LoadConfig: func() (*config.Config, error) { return sidecarConfig(t, 90*time.Second, snap), nil },
	})
	check := func(id string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+run.check+CheckPath, nil)
		req.Header.Set(hdrRequestID, id)
		req.Header.Set(hdrClient, "198.51.100.4")
		req.Header.Set("X-Api-Key", "k1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := check("r1")
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("check = %d", res.StatusCode)
	}
	fp := res.Header.Get(hdrKey)
	conn, err := net.Dial("udp", run.syslog)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(line("r1", fp, 200, "2.000")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the line charged 2 s", func() bool {
		k := getKey(t, run.admin, "k1")
		return k.InFlight == 0 && k.WorkerSeconds == 2
	})
	check("r2") // its line never comes

	reload <- struct{}{}
	testenv.Eventually(t, "the reloaded budget", func() bool { return getKey(t, run.admin, "k1").BudgetSeconds == 90 })

	// r2 is still running: wait until its time so far shows in the ledger
	// (at ms resolution), so the stop below has something to charge.
	testenv.Eventually(t, "r2's running time shows", func() bool { return getKey(t, run.admin, "k1").WorkerSeconds >= 2.02 })
	if err := run.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	st2, err := store.NewFile(store.FileOptions{Path: snap})
	if err != nil {
		t.Fatal(err)
	}
	run2 := startSidecar(t, RunOptions{Config: sidecarConfig(t, time.Minute, snap), Tag: DefaultSyslogTag, Snapshots: st2})
	k := getKey(t, run2.admin, "k1")
	// 2 s from the line, plus r2's 20 ms or more until the stop charged it.
	if k.WorkerSeconds < 2.02 || k.InFlight != 0 || k.Key != fp {
		t.Fatalf("after restart: %+v, want at least 2.02 s (r2 charged at stop), none in flight", k)
	}
}

// Issue 17: the syslog listener took charge lines from anyone. A datagram
// from another local address is refused and counted, over real UDP; the
// same line from nginx's address charges.
func TestSidecarSyslogRefusesOtherSenders(t *testing.T) {
	run := startSidecar(t, RunOptions{Config: sidecarConfig(t, time.Minute, ""), Tag: DefaultSyslogTag})
	fp := getKey(t, run.admin, "k1").Key
	send := func(from string) {
		t.Helper()
		laddr, err := net.ResolveUDPAddr("udp", from+":0")
		if err != nil {
			t.Fatal(err)
		}
		raddr, err := net.ResolveUDPAddr("udp", run.syslog)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.DialUDP("udp", laddr, raddr)
		if err != nil {
			t.Fatalf("send from %s: %v", from, err)
		}
		defer conn.Close()
		if _, err := conn.Write(line("forged", fp, 200, "0.500")); err != nil {
			t.Fatal(err)
		}
	}
	metrics := func() string {
		res, err := http.Get(run.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	send("127.0.0.2")
	testenv.Eventually(t, "the datagram from 127.0.0.2 refused", func() bool {
		return strings.Contains(metrics(), `headroom_sidecar_syslog_lines_total{result="refused"} 1`)
	})
	if k := getKey(t, run.admin, "k1"); k.WorkerSeconds != 0 {
		t.Fatalf("a datagram from 127.0.0.2 charged %v s", k.WorkerSeconds)
	}
	send("127.0.0.1")
	testenv.Eventually(t, "the line from 127.0.0.1 charged", func() bool { return getKey(t, run.admin, "k1").WorkerSeconds == 0.5 })
}

// The check endpoint's own HTTP/1.1 server: keep-alive and pipelined
// checks answered in order, bodyless answers, 404 off the check path,
// Connection: close honoured, a malformed head refused with 400.
func TestCheckServerSpeaksHTTP11(t *testing.T) {
	run := startSidecar(t, RunOptions{Config: sidecarConfig(t, time.Minute, ""), Tag: DefaultSyslogTag})
	conn, err := net.Dial("tcp", run.check)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	pipelined := "GET /check HTTP/1.1\r\nHost: s\r\nX-Api-Key: k1\r\nX-Headroom-Request-Id: p1\r\n\r\n" +
		"GET /other HTTP/1.1\r\nHost: s\r\n\r\n" +
		"GET /check HTTP/1.1\r\nHost: s\r\nx-api-key: k2\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, pipelined); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	want := []struct {
		status int
		key    string
	}{{204, "k1"}, {404, ""}, {204, "k2"}}
	for i, w := range want {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != w.status || len(b) != 0 {
			t.Errorf("answer %d: %d with %d body bytes, want %d and none", i, res.StatusCode, len(b), w.status)
		}
		if w.key != "" {
			if got := res.Header.Get(hdrKey); !strings.HasPrefix(got, "fp-") || got != getKey(t, run.admin, w.key).Key {
				t.Errorf("answer %d: key %q, want %s's fingerprint", i, got, w.key)
			}
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the server did not close (%v)", err)
	}

	// A client's large cookie reaches the check as it is: answered, not
	// refused (a 431 would let nginx pass the request unguarded).
	large, err := net.Dial("tcp", run.check)
	if err != nil {
		t.Fatal(err)
	}
	defer large.Close()
	_ = large.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(large, "GET /check HTTP/1.1\r\nHost: s\r\nX-Api-Key: k1\r\nCookie: "+strings.Repeat("c", 40<<10)+"\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(large), nil); err != nil || res.StatusCode != 204 {
		t.Fatalf("a check with a 40 KiB cookie: %v %v, want 204", res, err)
	}

	bad, err := net.Dial("tcp", run.check)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_ = bad.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(bad, "GET /check HTTP/1.1\r\nHost: s\r\nBad Field\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(bad), nil)
	if err != nil || res.StatusCode != 400 {
		t.Fatalf("malformed head: %v %v, want 400", res, err)
	}
}

// Datagrams are read in batches: a burst of lines is charged whole, and a
// datagram longer than a batch buffer is counted malformed, not half read.
func TestSidecarSyslogBurstAndOversized(t *testing.T) {
	run := startSidecar(t, RunOptions{Config: sidecarConfig(t, time.Hour, ""), Tag: DefaultSyslogTag})
	fp := getKey(t, run.admin, "k1").Key
	conn, err := net.Dial("udp", run.syslog)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const burst = 200
	for i := range burst {
		if _, err := conn.Write(line("b"+strconv.Itoa(i), fp, 200, "0.010")); err != nil {
			t.Fatal(err)
		}
	}
	big := append(line("big", fp, 200, "1.000"), bytes.Repeat([]byte("x"), syslogMaxDatagram)...)
	if _, err := conn.Write(big); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the burst charged and the oversized datagram refused", func() bool {
		k := getKey(t, run.admin, "k1")
		return math.Abs(k.WorkerSeconds-burst*0.010) < 1e-6 && strings.Contains(adminMetricsOf(t, run.admin), `headroom_sidecar_syslog_lines_total{result="malformed"} 1`)
	})
}

func adminMetricsOf(t *testing.T, adminURL string) string {
	t.Helper()
	res, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

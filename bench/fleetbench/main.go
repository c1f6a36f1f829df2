// Command fleetbench measures how far a fleet of guards lets one key
// overshoot its worker-time budget: N guards in front of one upstream whose
// requests take -work each, one key sending -parallel requests at a time
// spread over the guards, for -for. It reports the worker time the upstream
// spent for the key against the budget, and against one guard's own bound
// (the budget plus what the requests running when it was crossed still ran
// after that moment).
//
// Designs: "headroom" runs -bin (a headroom binary) -proxies times with
// --store redis://…: with this tree's binary that is the lease design, with
// an older binary the design it had (bench/fleet.sh passes main as it was
// before leases: a sync every second). "seed" builds the seed's fleet for
// real: nginx with an access_by_lua asking Redis per request whether the
// key is restricted, nginx's access log sent over UDP syslog to an
// aggregator (here) that charges each request's $upstream_response_time on
// completion and writes the restriction to Redis every second.
//
// bench/fleet.sh runs the matrix; this program is one cell.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	design         string
	bin            string
	proxies        int
	parallel       int
	work, budget   time.Duration
	duration       time.Duration
	redisPort      int
	portBase       int
	dir            string
	aggregateEvery time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.design, "design", "headroom", "headroom or seed")
	flag.StringVar(&o.bin, "bin", "", "headroom binary (design headroom)")
	flag.IntVar(&o.proxies, "proxies", 3, "guards in the fleet")
	flag.IntVar(&o.parallel, "parallel", 4, "the key's requests at a time, spread over the guards")
	flag.DurationVar(&o.work, "work", 500*time.Millisecond, "upstream time per request")
	flag.DurationVar(&o.budget, "budget", 6*time.Second, "the key's budget per minute")
	flag.DurationVar(&o.duration, "for", 6*time.Second, "how long the key sends (well inside the 1 m window)")
	flag.IntVar(&o.redisPort, "redis-port", 16390, "a running redis-server on 127.0.0.1")
	flag.IntVar(&o.portBase, "port-base", 18200, "first of the ports the guards use")
	flag.StringVar(&o.dir, "dir", "", "scratch directory")
	flag.DurationVar(&o.aggregateEvery, "aggregate-every", time.Second, "the seed aggregator's period")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(1)
	}
}

// workLog records when each upstream request ran.
type workLog struct {
	mu   sync.Mutex
	runs [][2]time.Time
}

func (w *workLog) add(a, b time.Time) {
	w.mu.Lock()
	w.runs = append(w.runs, [2]time.Time{a, b})
	w.mu.Unlock()
}

// bound: total worker time, and budget + what the requests running at the
// crossing still ran after it.
func (w *workLog) bound(budget time.Duration) (total, allowed time.Duration) {
	w.mu.Lock()
	runs := append([][2]time.Time(nil), w.runs...)
	w.mu.Unlock()
	for _, r := range runs {
		total += r[1].Sub(r[0])
	}
	if total < budget || len(runs) == 0 {
		return total, budget
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i][0].Before(runs[j][0]) })
	usage := func(at time.Time) (u time.Duration) {
		for _, r := range runs {
			switch {
			case !r[1].After(at):
				u += r[1].Sub(r[0])
			case r[0].Before(at):
				u += at.Sub(r[0])
			}
		}
		return u
	}
	lo, hi := runs[0][0], runs[0][0]
	for _, r := range runs {
		if r[1].After(hi) {
			hi = r[1]
		}
	}
	for hi.Sub(lo) > 100*time.Microsecond {
		mid := lo.Add(hi.Sub(lo) / 2)
		if usage(mid) >= budget {
			hi = mid
		} else {
			lo = mid
		}
	}
	allowed = budget
	for _, r := range runs {
		if r[0].Before(hi) && r[1].After(hi) {
			allowed += r[1].Sub(hi)
		}
	}
	return total, allowed
}

func run(o options) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "fleetbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	key := fmt.Sprintf("bench-key-%d", time.Now().UnixNano())
	work := &workLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		time.Sleep(o.work) // the work itself
		if r.Header.Get("X-Api-Key") == key {
			work.add(start, time.Now())
		}
		io.WriteString(w, "ok\n")
	})}
	go up.Serve(ln)
	defer up.Close()
	upURL := "http://" + ln.Addr().String()

	var urls []string
	var stop func()
	switch o.design {
	case "headroom":
		urls, stop, err = startHeadroom(o, upURL)
	case "seed":
		urls, stop, err = startSeed(o, upURL, key)
	default:
		err = fmt.Errorf("design %q: want headroom or seed", o.design)
	}
	if err != nil {
		return err
	}
	defer stop()

	var ok, refused, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.parallel}}
	var wg sync.WaitGroup
	for i := range o.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := urls[i%len(urls)] + "/work"
			for ctx.Err() == nil {
				req, _ := http.NewRequest("GET", u, nil)
				req.Header.Set("X-Api-Key", key)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
					// A refused client retries at once: the worst case.
				default:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	total, allowed := work.bound(o.budget)
	fmt.Printf("%-9s proxies=%d parallel=%-3d worker=%7.2fs budget=%s overshoot=%+7.1f%% beyond-own-bound=%+7.1f%% ok=%d refused=%d failed=%d\n",
		o.design+label(o), o.proxies, o.parallel, total.Seconds(), o.budget,
		100*(total-o.budget).Seconds()/o.budget.Seconds(), 100*(total-allowed).Seconds()/o.budget.Seconds(),
		ok.Load(), refused.Load(), failed.Load())
	return nil
}

func label(o options) string {
	if o.design == "headroom" {
		return ":" + filepath.Base(o.bin)
	}
	return ""
}

// portFree fails when something (a guard left over) already listens on addr.
func portFree(addr string) error {
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use", addr)
	}
	return nil
}

func waitPort(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s", addr)
}

func startHeadroom(o options, upURL string) ([]string, func(), error) {
	secret := filepath.Join(o.dir, "secret")
	if err := os.WriteFile(secret, []byte("fleetbench-secret-0123456789abcdef\n"), 0o600); err != nil {
		return nil, nil, err
	}
	prefix := fmt.Sprintf("fb%d:", time.Now().UnixNano())
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}
	var urls []string
	for i := range o.proxies {
		listen := fmt.Sprintf("127.0.0.1:%d", o.portBase+2*i)
		admin := fmt.Sprintf("127.0.0.1:%d", o.portBase+2*i+1)
		cfg := filepath.Join(o.dir, fmt.Sprintf("p%d.yaml", i))
		yml := fmt.Sprintf("store:\n  type: redis\n  url: redis://127.0.0.1:%d/0\n  prefix: %q\n", o.redisPort, prefix)
		if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
			return nil, stop, err
		}
		if err := portFree(listen); err != nil {
			return nil, stop, err
		}
		c := exec.Command(o.bin, "proxy", "--config", cfg, "--listen", listen, "--admin", admin, "--upstream", upURL,
			"--budget", o.budget.String(), "--window", "1m", "--restrict-for", "1m", "--secret-file", secret, "--access-log", "")
		c.Stderr = io.Discard
		if err := c.Start(); err != nil {
			return nil, stop, err
		}
		cmds = append(cmds, c)
		if err := waitPort(listen); err != nil {
			return nil, stop, err
		}
		urls = append(urls, "http://"+listen)
	}
	// Let every proxy sync once and see the others.
	time.Sleep(1500 * time.Millisecond)
	return urls, stop, nil
}

// startSeed runs the seed's fleet: N nginx with the Lua bouncer, and the
// aggregator.
func startSeed(o options, upURL, key string) ([]string, func(), error) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	var used sync.Map // key -> *int64 (µs)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			// syslog: "<PRI>TIMESTAMP HOST TAG: KEY UPSTREAM_TIME"
			line := string(buf[:n])
			if i := strings.Index(line, "fleetseed: "); i >= 0 {
				f := strings.Fields(line[i+len("fleetseed: "):])
				if len(f) == 2 {
					if s, err := strconv.ParseFloat(f[1], 64); err == nil {
						v, _ := used.LoadOrStore(f[0], new(int64))
						atomic.AddInt64(v.(*int64), int64(s*1e6))
					}
				}
			}
		}
	}()
	redisAddr := fmt.Sprintf("127.0.0.1:%d", o.redisPort)
	aggDone := make(chan struct{})
	go func() {
		t := time.NewTicker(o.aggregateEvery)
		defer t.Stop()
		for {
			select {
			case <-aggDone:
				return
			case <-t.C:
			}
			used.Range(func(k, v any) bool {
				if time.Duration(atomic.LoadInt64(v.(*int64)))*time.Microsecond >= o.budget {
					redisSet(redisAddr, "restricted:"+k.(string))
				}
				return true
			})
		}
	}()
	upHost := strings.TrimPrefix(upURL, "http://")
	var cmds []*exec.Cmd
	stop := func() {
		close(aggDone)
		udp.Close()
		for _, c := range cmds {
			// SIGTERM to the master stops its workers too; SIGKILL would
			// leave them listening on the port for the next run.
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}
	var urls []string
	for i := range o.proxies {
		dir := filepath.Join(o.dir, fmt.Sprintf("nginx%d", i))
		os.MkdirAll(dir, 0o755)
		listen := fmt.Sprintf("127.0.0.1:%d", o.portBase+2*i)
		conf := fmt.Sprintf(seedConf, dir, dir, dir, dir, dir, dir, dir, upHost, listen, o.redisPort, udp.LocalAddr().String())
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
			return nil, stop, err
		}
		nginx, err := exec.LookPath("nginx")
		if err != nil {
			nginx = "/usr/sbin/nginx"
		}
		if err := portFree(listen); err != nil {
			return nil, stop, err
		}
		c := exec.Command(nginx, "-e", dir+"/error.log", "-p", dir, "-c", dir+"/nginx.conf", "-g", "daemon off;")
		out := &strings.Builder{}
		c.Stderr = out
		if err := c.Start(); err != nil {
			return nil, stop, err
		}
		cmds = append(cmds, c)
		if err := waitPort(listen); err != nil {
			return nil, stop, fmt.Errorf("nginx: %w: %s", err, out)
		}
		urls = append(urls, "http://"+listen)
	}
	return urls, stop, nil
}

// redisSet writes KEY 1 with a minute's expiry (the aggregator's
// restriction), one short connection per write as a cron-style
// aggregator would.
func redisSet(addr, k string) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n$2\r\nEX\r\n$2\r\n60\r\n", len(k), k)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "+OK") {
		fmt.Fprintln(os.Stderr, "fleetbench: aggregator SET:", line, err)
	}
}

// seedConf: the seed's nginx (bench/lib.sh's Lua bouncer) plus its log
// shipped to the aggregator over UDP syslog.
const seedConf = `load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid %s/nginx.pid;
events { worker_connections 1024; }
http {
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  error_log %s/error.log warn;
  log_format fleetseed '$http_x_api_key $upstream_response_time';
  upstream app {
    server %s;
    keepalive 64;
  }
  server {
    listen %s;
    location / {
      access_by_lua_block {
        local key = ngx.var.http_x_api_key or ngx.var.remote_addr
        local sock = ngx.socket.tcp()
        sock:settimeout(1000)
        local ok, err = sock:connect("127.0.0.1", %d)
        if not ok then
          ngx.log(ngx.ERR, "redis: ", err)
          return
        end
        local name = "restricted:" .. key
        sock:send("*2\r\n$3\r\nGET\r\n$" .. #name .. "\r\n" .. name .. "\r\n")
        local line = sock:receive("*l")
        if line and line:sub(1, 1) == "$" and line ~= "$-1" then
          sock:receive(tonumber(line:sub(2)) + 2)
          sock:setkeepalive(10000, 64)
          return ngx.exit(429)
        end
        sock:setkeepalive(10000, 64)
      }
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      access_log syslog:server=%s,tag=fleetseed fleetseed;
    }
  }
}
`

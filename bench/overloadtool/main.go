// Command overloadtool is the aggregator of the design the seed replaced
// (seeds/03, steps 4 and 6): nginx reports each request's upstream time
// in a UDP packet ("<key> <seconds>", sent by a post_action's Lua), and
// this tool sums it per API key over a window and, when a key is over its
// budget, sets restricted:<key> in Redis with an expiry, which the
// bouncer's access_by_lua GETs on every request. bench/proxy.sh measures
// that design whole (bouncer, reports and aggregator) beside headroom,
// which does both the check and the charge itself.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18099", "UDP address to receive reports on (loopback)")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "the bouncer's redis-server")
	budget := flag.Duration("budget", time.Hour, "upstream time allowed per key per window")
	window := flag.Duration("window", time.Minute, "the budget's window")
	restrictFor := flag.Duration("restrict-for", time.Minute, "how long an over-budget key is restricted")
	flag.Parse()
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		fail(err)
	}
	rc, err := net.Dial("tcp", *redisAddr)
	if err != nil {
		fail(err)
	}
	rw := bufio.NewReadWriter(bufio.NewReader(rc), bufio.NewWriter(rc))
	used := map[string]float64{}
	windowEnd := time.Now().Add(*window)
	buf := make([]byte, 2048)
	var reports, bad atomic.Int64
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		// bench/proxy.sh checks that the reports came.
		fmt.Fprintf(os.Stderr, "overloadtool: %d reports, %d malformed\n", reports.Load(), bad.Load())
		os.Exit(0)
	}()
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			fail(err)
		}
		key, secs, ok := parse(buf[:n])
		if !ok {
			bad.Add(1)
			continue
		}
		reports.Add(1)
		if now := time.Now(); now.After(windowEnd) {
			clear(used)
			windowEnd = now.Add(*window)
		}
		k := string(key)
		used[k] += secs
		if used[k] > budget.Seconds() {
			if err := restrict(rw, k, *restrictFor); err != nil {
				fail(err)
			}
			used[k] = 0
		}
	}
}

// parse reads "<key> <seconds>"; nginx's $upstream_response_time may be a
// list ("0.001, 0.002" after a retry) or "-": the first number counts.
func parse(p []byte) (key []byte, secs float64, ok bool) {
	key, rest, ok := bytes.Cut(bytes.TrimSpace(p), []byte(" "))
	if !ok || len(key) == 0 {
		return nil, 0, false
	}
	if i := bytes.IndexByte(rest, ','); i >= 0 {
		rest = rest[:i]
	}
	secs, err := strconv.ParseFloat(string(bytes.TrimSpace(rest)), 64)
	if err != nil {
		return key, 0, true // "-": no upstream time
	}
	return key, secs, true
}

// restrict sets restricted:<key> for d (SET key 1 PX ms).
func restrict(rw *bufio.ReadWriter, key string, d time.Duration) error {
	name := "restricted:" + key
	ms := strconv.FormatInt(d.Milliseconds(), 10)
	fmt.Fprintf(rw, "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n$2\r\nPX\r\n$%d\r\n%s\r\n", len(name), name, len(ms), ms)
	if err := rw.Flush(); err != nil {
		return fmt.Errorf("redis SET %s: %w", name, err)
	}
	line, err := rw.ReadString('\n')
	if err != nil {
		return fmt.Errorf("redis SET %s: %w", name, err)
	}
	if line != "+OK\r\n" {
		return fmt.Errorf("redis SET %s: %q", name, line)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "overloadtool:", err)
	os.Exit(1)
}

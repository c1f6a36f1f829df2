// Command epollproxy is a minimal reverse proxy written as event loops over
// raw epoll, the way nginx's workers (and gnet, evio) are built, instead of
// a goroutine per connection on Go's netpoller. It answers one question
// for issue 12: is the gap between a Go proxy and nginx's proxy_pass Go's
// scheduling (goroutine parks and wake-ups per request), i.e. would an
// event-loop data path in Go reach nginx's level? bench/proxy.sh runs it
// beside nginx, the fasthttp floor (bench/fasthttpproxy) and headroom.
//
// Design: -loops event loops (default GOMAXPROCS), each on a locked OS
// thread with its own epoll descriptor (edge-triggered; a descriptor's
// readiness is remembered and cleared on EAGAIN or a short read or write,
// as nginx does, so no read is tried before epoll says there is data), its
// own SO_REUSEPORT listener on the same address (the kernel spreads the
// connections) and its own pool of keep-alive upstream connections. Per
// request: read the client's head, forward it (hop-by-hop fields and the
// ones Connection names removed, X-Forwarded-For appended) to an idle
// upstream connection of the loop (or a new one, connected non-blocking),
// read the answer's head, forward head and body to the client as they
// arrive, return the upstream connection to the pool and read the client
// again. With -access-log each loop appends a combined-format line per
// request to a 64 KiB buffer of its own, written out when full and each
// second (whole lines only, so the loops' writes do not interleave).
//
// It is a floor, NOT a guard, and handles only what the benchmark sends:
// GET/HEAD-style requests without a body (a request with a Content-Length
// other than 0 or any Transfer-Encoding is answered 400 and the connection
// closed), answers framed by Content-Length (chunked or unframed answers
// are a 502), no timeouts, no TLS, no Expect or Upgrade, HTTP/1.0 clients
// served one request per connection. It identifies no key and charges
// nothing; its head checks are basic (no strict RFC 9112 policy as
// headroom's internal/httpwire has).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "address to serve on")
	upstream := flag.String("upstream", "127.0.0.1:18080", "upstream host:port (plain HTTP/1.1)")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops (each on a locked OS thread with its own epoll and listener)")
	accessLog := flag.String("access-log", "", "file to append a combined-format access log to, buffered and written each second (empty: none)")
	flag.Parse()

	p, err := start(*listen, *upstream, *loops, *accessLog)
	if err != nil {
		fmt.Fprintln(os.Stderr, "epollproxy:", err)
		os.Exit(1)
	}
	err = <-p.errs
	fmt.Fprintln(os.Stderr, "epollproxy:", err)
	os.Exit(1)
}

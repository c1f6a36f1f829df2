// Command loadserver is a small, fast HTTP server for `headroom load`'s
// benchmarks and manual runs: a fixed body, an optional delay, and an
// optional fixed pool of workers (a server whose capacity is known).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8089", "listen address (loopback only)")
	size := flag.Int("size", 13, "response body size in bytes")
	delay := flag.Duration("delay", 0, "time each request holds a worker")
	workers := flag.Int("workers", 0, "fixed worker pool size; 0 means unbounded")
	flag.Parse()

	body := make([]byte, *size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var pool chan struct{}
	if *workers > 0 {
		pool = make(chan struct{}, *workers)
	}
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pool != nil {
			// A client that gave up must not leave work queued behind it,
			// or the next run meets the last one's backlog.
			select {
			case pool <- struct{}{}:
			case <-r.Context().Done():
				return
			}
			defer func() { <-pool }()
		}
		if *delay > 0 {
			time.Sleep(*delay)
		}
		w.Header().Set("Content-Length", length)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The URL goes to stdout, so a script or test that asked for port 0
	// learns the port.
	fmt.Printf("http://%s/\n", l.Addr())
	log.Printf("loadserver on http://%s/ (body %d bytes, delay %s, workers %d)", l.Addr(), *size, *delay, *workers)
	log.Fatal(http.Serve(l, h))
}

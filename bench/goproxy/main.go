// Command goproxy is a bare net/http/httputil.ReverseProxy, the floor for
// any Go proxy: bench/proxy.sh runs it next to headroom and nginx so the
// cost of headroom's own work (keys, budgets, pools, access log) can be told
// apart from the cost of Go's HTTP stack.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18084", "address to serve on (loopback)")
	upstream := flag.String("upstream", "http://127.0.0.1:18080", "upstream base URL")
	flag.Parse()
	u, err := url.Parse(*upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goproxy: --upstream:", err)
		os.Exit(2)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	// The same connection reuse headroom's transport has.
	rp.Transport = &http.Transport{Proxy: nil, MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 120 * time.Second}
	rp.ErrorLog = log.New(io.Discard, "", 0) // wrk's disconnects at the end are not news
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "goproxy:", err)
		os.Exit(1)
	}
}

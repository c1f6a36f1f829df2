// Command upstream is the fast application server bench/proxy.sh measures
// proxies against: it answers every request at once with a small body, so
// what the benchmark sees is the cost of the proxy in front of it.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address to serve on (loopback)")
	size := flag.Int("size", 128, "response body bytes")
	flag.Parse()
	body := []byte(strings.Repeat("x", max(*size-1, 0)) + "\n")
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", length)
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

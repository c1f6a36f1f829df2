// Command goproxy is a bare net/http/httputil.ReverseProxy, the floor for
// any Go proxy: bench/proxy.sh runs it next to headroom and nginx so the
// cost of headroom's own work (keys, budgets, pools, access log) can be told
// apart from the cost of Go's HTTP stack.
//
// With -tuned it is net/http tuned as far as httputil.ReverseProxy allows
// (issue 12 asked for that to be measured before choosing an own parser):
// copy buffers from a pool instead of 32 KiB per response, no Accept-Encoding
// added and no gzip handling in the transport, HTTP/1.1 to the upstream
// only, idle upstream connections at or above the benchmark's concurrency.
// The header clones left (the outgoing request's, in ReverseProxy.ServeHTTP,
// and the copy of the upstream's header into the ResponseWriter's) are
// inside ReverseProxy and not avoidable without replacing it. -access-log
// adds a buffered access log as nginx and headroom write one in the
// benchmark. Either way it is not a budget guard.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18084", "address to serve on (loopback)")
	upstream := flag.String("upstream", "http://127.0.0.1:18080", "upstream base URL")
	tuned := flag.Bool("tuned", false, "pooled copy buffers, no transparent gzip, HTTP/1.1 only, 1024 idle upstream connections")
	accessLog := flag.String("access-log", "", "file to append a combined-format access log to, buffered and flushed each second (empty: none)")
	flag.Parse()
	u, err := url.Parse(*upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goproxy: --upstream:", err)
		os.Exit(2)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	// The same connection reuse headroom's transport has.
	rp.Transport = &http.Transport{Proxy: nil, MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 120 * time.Second}
	if *tuned {
		rp.Transport = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0, // no limit in all; per host below
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     120 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
			// A non-nil empty map turns HTTP/2 off for good.
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		}
		rp.BufferPool = &bufferPool{}
	}
	rp.ErrorLog = log.New(io.Discard, "", 0) // wrk's disconnects at the end are not news
	var h http.Handler = rp
	if *accessLog != "" {
		l, err := openLog(*accessLog)
		if err != nil {
			fmt.Fprintln(os.Stderr, "goproxy:", err)
			os.Exit(2)
		}
		h = l.handler(rp)
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "goproxy:", err)
		os.Exit(1)
	}
}

// bufferPool is httputil.BufferPool over a sync.Pool of 32 KiB buffers
// (ReverseProxy's size when it allocates its own).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// accessLog is nginx's combined format, written through a 64 KiB buffer
// flushed each second (nginx's buffer=64k flush=1s in bench/lib.sh).
type accessLog struct {
	mu      sync.Mutex
	w       *bufio.Writer
	now     atomic.Pointer[string] // [02/Jan/2006:15:04:05 -0700], once a second
	writers sync.Pool              // *statusWriter
}

func openLog(path string) (*accessLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	l := &accessLog{w: bufio.NewWriterSize(f, 64<<10)}
	l.writers.New = func() any { return &statusWriter{line: make([]byte, 0, 256)} }
	l.tick(time.Now())
	go func() {
		for t := range time.Tick(time.Second) {
			l.tick(t)
			l.mu.Lock()
			_ = l.w.Flush()
			l.mu.Unlock()
		}
	}()
	return l, nil
}

func (l *accessLog) tick(t time.Time) {
	s := t.Format("[02/Jan/2006:15:04:05 -0700]")
	l.now.Store(&s)
}

// statusWriter records what the access log needs; pooled, since the
// handler is done with it when ServeHTTP returns.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	line   []byte
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (l *accessLog) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w := l.writers.Get().(*statusWriter)
		w.ResponseWriter, w.status, w.bytes = rw, 0, 0
		next.ServeHTTP(w, r)
		b := w.line[:0]
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			b = ap.Addr().AppendTo(b)
		} else {
			b = append(b, '-')
		}
		b = append(b, " - - "...)
		b = append(b, *l.now.Load()...)
		b = append(b, " \""...)
		b = append(b, r.Method...)
		b = append(b, ' ')
		b = append(b, r.RequestURI...)
		b = append(b, ' ')
		b = append(b, r.Proto...)
		b = append(b, "\" "...)
		if w.status == 0 {
			w.status = http.StatusOK // nothing written: net/http sends a 200
		}
		b = strconv.AppendInt(b, int64(w.status), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, w.bytes, 10)
		b = append(b, " \""...)
		b = appendOrDash(b, r.Referer())
		b = append(b, "\" \""...)
		b = appendOrDash(b, r.UserAgent())
		b = append(b, "\"\n"...)
		l.mu.Lock()
		_, _ = l.w.Write(b)
		l.mu.Unlock()
		w.line, w.ResponseWriter = b, nil
		l.writers.Put(w)
	})
}

// appendOrDash appends v, or nginx's "-" for an empty value.
func appendOrDash(b []byte, v string) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	return append(b, v...)
}

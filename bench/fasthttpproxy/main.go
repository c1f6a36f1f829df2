// Command fasthttpproxy is a minimal reverse proxy on valyala/fasthttp
// (fasthttp.Server in front, fasthttp.HostClient to the upstream): the
// floor of the fasthttp approach, which issue 12 named as the alternative
// to headroom's own parser (internal/httpwire, internal/fastproxy).
// bench/proxy.sh runs it next to headroom and nginx. It is not a budget
// guard: it identifies no key, charges nothing and watches no client; it
// does only what any proxy must (hop-by-hop headers, X-Forwarded-For, a 502
// when the upstream fails) and, with -access-log, writes a buffered access
// log as nginx and headroom do in the benchmark.
//
// It is a module of its own (bench/fasthttpproxy/go.mod) so that headroom's
// binary and go.mod do not depend on fasthttp.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18089", "address to serve on (loopback)")
	upstream := flag.String("upstream", "127.0.0.1:18080", "upstream host:port (plain HTTP/1.1)")
	maxConns := flag.Int("max-conns", 1024, "upstream connections at most (at or above the benchmark's concurrency)")
	stream := flag.Bool("stream", false, "stream request and response bodies instead of buffering them (fasthttp buffers by default)")
	accessLog := flag.String("access-log", "", "file to append a combined-format access log to, buffered and flushed each second (empty: none)")
	flag.Parse()

	p := &proxy{client: &fasthttp.HostClient{
		Addr:                     *upstream,
		MaxConns:                 *maxConns,
		MaxIdleConnDuration:      120 * time.Second,
		ReadTimeout:              30 * time.Second,
		WriteTimeout:             30 * time.Second,
		NoDefaultUserAgentHeader: true,
		// A proxy forwards the path as it came (fasthttp would otherwise
		// clean it, so the upstream could see a different path).
		DisablePathNormalizing: true,
		StreamResponseBody:     *stream,
	}}
	if *accessLog != "" {
		l, err := openLog(*accessLog)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fasthttpproxy:", err)
			os.Exit(2)
		}
		p.log = l
	}
	srv := &fasthttp.Server{
		Handler:               p.serve,
		ReadTimeout:           10 * time.Second, // as bench/goproxy's ReadHeaderTimeout
		NoDefaultServerHeader: true,
		StreamRequestBody:     *stream,
		Logger:                discard{}, // wrk's disconnects at the end are not news
	}
	if err := srv.ListenAndServe(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "fasthttpproxy:", err)
		os.Exit(1)
	}
}

type discard struct{}

func (discard) Printf(string, ...any) {}

type proxy struct {
	client *fasthttp.HostClient
	log    *accessLog // nil: none
}

// hopByHop are the fields RFC 9110 section 7.6.1 says a proxy must not
// forward (and the ones httputil.ReverseProxy drops as well), besides the
// ones a Connection field names.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func (p *proxy) serve(ctx *fasthttp.RequestCtx) {
	req, resp := &ctx.Request, &ctx.Response
	// Deleting Connection below also clears fasthttp's close flag, which its
	// server reads after the handler: keep the client's wish.
	closeAfter := req.Header.ConnectionClose()
	http11 := req.Header.IsHTTP11()
	stripRequest(&req.Header)
	if !http11 {
		req.Header.SetProtocol("HTTP/1.1") // keep-alive to the upstream
	}
	if ip := ctx.RemoteIP().String(); ip != "" {
		if prior := req.Header.Peek("X-Forwarded-For"); len(prior) > 0 {
			req.Header.Set("X-Forwarded-For", string(prior)+", "+ip)
		} else {
			req.Header.Set("X-Forwarded-For", ip)
		}
	}
	err := p.client.Do(req, resp)
	if !http11 {
		req.Header.SetProtocol("HTTP/1.0") // what the server answers to
	}
	if err != nil {
		resp.Reset()
		code := fasthttp.StatusBadGateway
		if errors.Is(err, fasthttp.ErrTimeout) {
			code = fasthttp.StatusGatewayTimeout
		}
		resp.SetStatusCode(code)
	} else {
		stripResponse(&resp.Header)
	}
	if closeAfter {
		resp.SetConnectionClose()
	}
	if p.log != nil {
		p.log.write(ctx)
	}
}

// connectionOptions calls f with each name the Connection field lists.
func connectionOptions(v []byte, f func(name []byte)) {
	for len(v) > 0 {
		var name []byte
		name, v, _ = bytes.Cut(v, []byte{','})
		if name = bytes.TrimSpace(name); len(name) > 0 {
			f(name)
		}
	}
}

func stripRequest(h *fasthttp.RequestHeader) {
	connectionOptions(h.Peek("Connection"), func(name []byte) { h.DelBytes(name) })
	for _, name := range hopByHop {
		h.Del(name)
	}
}

func stripResponse(h *fasthttp.ResponseHeader) {
	connectionOptions(h.Peek("Connection"), func(name []byte) { h.DelBytes(name) })
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// accessLog is nginx's combined format, written through a 64 KiB buffer
// flushed each second (nginx's buffer=64k flush=1s in bench/lib.sh).
type accessLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	now  atomic.Pointer[string] // [02/Jan/2006:15:04:05 -0700], once a second
	bufs sync.Pool
}

func openLog(path string) (*accessLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	l := &accessLog{w: bufio.NewWriterSize(f, 64<<10)}
	l.bufs.New = func() any { b := make([]byte, 0, 256); return &b }
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

func (l *accessLog) write(ctx *fasthttp.RequestCtx) {
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		b = a.AddrPort().Addr().Unmap().AppendTo(b)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - - "...)
	b = append(b, *l.now.Load()...)
	b = append(b, " \""...)
	b = append(b, ctx.Method()...)
	b = append(b, ' ')
	b = append(b, ctx.Request.Header.RequestURI()...)
	b = append(b, ' ')
	b = append(b, ctx.Request.Header.Protocol()...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(ctx.Response.StatusCode()), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(ctx.Response.Body())), 10)
	b = append(b, " \""...)
	b = appendOrDash(b, ctx.Referer())
	b = append(b, "\" \""...)
	b = appendOrDash(b, ctx.UserAgent())
	b = append(b, "\"\n"...)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	l.bufs.Put(bp)
}

// appendOrDash appends v, or nginx's "-" for an empty value.
func appendOrDash(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	return append(b, v...)
}

package sidecar

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/headroom-dev/headroom/internal/httpwire"
)

// checkServer is the check endpoint's own HTTP/1.1 server (issue 13): its
// one client is nginx, over keep-alive connections, sending small bodyless
// GETs with a few fixed fields; it answers bodyless 204 and 403. It reads
// heads with httpwire (RFC 9112, as the proxy's fast path does) and
// writes each answer into the connection's buffer, flushed when no other
// request is already waiting: none of net/http's per-request machinery
// (a goroutine's context, a Request, a Header map per side) is paid per
// check.
type checkServer struct {
	sc   *Sidecar
	log  *slog.Logger
	idle time.Duration // keep-alive between checks (timeouts.idle)
	head time.Duration // to read a head once it started (timeouts.read_header)

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]*checkConn
	closed bool
	wg     sync.WaitGroup
}

type checkConn struct {
	busy bool // a check is being answered: Shutdown waits for it
}

// maxCheckHead bounds a check's head as net/http's default MaxHeaderBytes
// did: the original request's fields plus the snippet's.
const maxCheckHead = 1 << 20

func newCheckServer(sc *Sidecar, idle, head time.Duration, lg *slog.Logger) *checkServer {
	return &checkServer{sc: sc, log: lg, idle: idle, head: head, conns: map[net.Conn]*checkConn{}}
}

// errServerClosed is what Serve returns after Shutdown or Close.
var errServerClosed = errors.New("check server closed")

// Serve accepts nginx's connections on ln until Shutdown or Close.
func (s *checkServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return errServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return errServerClosed
		}
		st := &checkConn{}
		s.conns[c] = st
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c, st)
	}
}

// Shutdown stops accepting, closes idle connections, and waits (until ctx
// ends) for checks being answered.
func (s *checkServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c, st := range s.conns {
		if !st.busy {
			c.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes the listener and every connection.
func (s *checkServer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	return nil
}

// setBusy marks the connection; false when the server is shutting down
// (the connection should close instead of answering more).
func (s *checkServer) setBusy(st *checkConn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.busy = busy
	return !s.closed
}

func (s *checkServer) serveConn(c net.Conn, st *checkConn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		s.wg.Done()
	}()
	peer := netip.Addr{}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		peer = ap.Addr().Unmap()
	}
	br := bufio.NewReaderSize(c, 8<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	var req httpwire.Request
	var out answer
	for {
		if br.Buffered() == 0 {
			_ = c.SetReadDeadline(time.Now().Add(s.idle))
			if _, err := br.Peek(1); err != nil {
				return // nginx closed it, or it idled out
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(s.head))
		err := httpwire.ReadRequest(br, &req, maxCheckHead)
		var we *httpwire.Error
		if errors.As(err, &we) && we.Status == 431 && br.Size() < maxCheckHead {
			// A head past the small buffer: nginx passes the client's
			// fields as they are. A 431 here would make nginx let the
			// request through unguarded, so the buffer grows (for this
			// connection) to net/http's limit instead.
			br = bufio.NewReaderSize(br, maxCheckHead)
			err = httpwire.ReadRequest(br, &req, maxCheckHead)
		}
		if err != nil {
			var we *httpwire.Error
			if errors.As(err, &we) {
				writeStatus(bw, we.Status, true)
				_ = bw.Flush()
			}
			return
		}
		if !s.setBusy(st, true) {
			return
		}
		keep := req.KeepAlive
		if req.HasBody() {
			// nginx sends the check without a body (proxy_pass_request_body
			// off); anything else is read away, or the connection closed.
			if req.Chunked || req.ContentLength > 64<<10 {
				keep = false
			} else if _, err := io.CopyN(io.Discard, br, req.ContentLength); err != nil {
				return
			}
		}
		if view(req.Path()) != CheckPath {
			writeStatus(bw, 404, !keep)
		} else {
			h := fieldView{&req}
			in := checkIn{id: h.Get(hdrRequestID), cache: h.Get(hdrCacheKey), mapDecl: h.Get(hdrMapKey), remote: peer}
			in.req = identity(h, peer, view(req.Host))
			out = answer{}
			s.sc.check(&in, &out)
			writeAnswer(bw, &out, !keep)
		}
		if br.Buffered() == 0 || !keep {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		if !s.setBusy(st, false) || !keep {
			return
		}
	}
}

var statusText = map[int]string{
	204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
	413: "Content Too Large", 431: "Request Header Fields Too Large", 501: "Not Implemented",
}

func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, statusText[code]...)
	return append(b, "\r\n"...)
}

// writeStatus writes a bodyless answer with only a status.
func writeStatus(bw *bufio.Writer, code int, closing bool) {
	var buf [128]byte
	b := appendStatusLine(buf[:0], code)
	b = append(b, "Content-Length: 0\r\n"...)
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	_, _ = bw.Write(b)
}

// writeAnswer writes a check's answer. A 204 carries no Content-Length
// (RFC 9110 §8.6); a 403 has "Content-Length: 0" among its fields.
func writeAnswer(bw *bufio.Writer, a *answer, closing bool) {
	var buf [2048]byte
	b := appendStatusLine(buf[:0], a.status)
	b = append(b, dateField()...)
	for _, f := range a.fields[:a.n] {
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	_, _ = bw.Write(b)
}

// fieldView gives the core and the check the request's fields
// (admit.Header) without copying them: the strings alias the head's
// bytes, valid while the check is answered (check clones what it keeps).
type fieldView struct{ r *httpwire.Request }

func (h fieldView) Get(name string) string {
	for i := range h.r.Fields {
		if httpwire.EqualFoldName(h.r.Fields[i].Name, name) {
			return view(h.r.Fields[i].Value)
		}
	}
	return ""
}

func (h fieldView) Values(name string) []string {
	var vs []string
	for i := range h.r.Fields {
		if httpwire.EqualFoldName(h.r.Fields[i].Name, name) {
			vs = append(vs, view(h.r.Fields[i].Value))
		}
	}
	return vs
}

func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// dateField is "Date: <now>\r\n", formatted at most once a second.
var dateCache struct {
	mu   sync.Mutex
	sec  int64
	line []byte
}

func dateField() []byte {
	now := time.Now()
	dateCache.mu.Lock()
	defer dateCache.mu.Unlock()
	if dateCache.sec != now.Unix() || dateCache.line == nil {
		dateCache.sec = now.Unix()
		dateCache.line = append(append([]byte("Date: "), now.UTC().AppendFormat(nil, "Mon, 02 Jan 2006 15:04:05 GMT")...), "\r\n"...)
	}
	return dateCache.line
}

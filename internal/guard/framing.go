package guard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/fastproxy"
	"github.com/headroom-dev/headroom/internal/httpwire"
)

// Issue 17: a request with both Content-Length and Transfer-Encoding kept
// its connection open on the net/http path, and the bytes after its chunked
// body were served as a second request. net/http follows RFC 9112 §6.3 by
// letting Transfer-Encoding win and deleting Content-Length before the
// handler sees the request, so the handler cannot tell; behind a load
// balancer that frames by Content-Length, one client's bytes then become
// another request. §6.3 lets a server reject such a request, and it must
// close the connection after answering it either way.
//
// framingListener frames each connection's requests before net/http reads
// them: it reads every request head first (httpwire.ReadHead), follows the
// body's framing to find the next head, and replaces a head carrying both
// fields with a line net/http answers with 400 Bad Request and
// "Connection: close", so the bytes after it are never read as a request.
// The fast path (internal/fastproxy) refuses such heads itself.

// framedServer is the net/http front server with its connections framed,
// and their writes bounded by timeouts.client_send (fastproxy.SendConn,
// as on the fast path).
type framedServer struct {
	*http.Server
	maxHead      int
	log          *slog.Logger
	send         time.Duration
	sendTimedOut func(net.Conn)
}

func (s *framedServer) Serve(l net.Listener) error {
	return s.Server.Serve(&framingListener{Listener: l, s: s})
}

// framingListener wraps the front server's listener.
type framingListener struct {
	net.Listener
	s *framedServer
}

func (l *framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	s := l.s
	sc := &fastproxy.SendConn{Conn: c, Timeout: s.send, TimedOut: s.sendTimedOut}
	return newFramedConn(sc, s.maxHead, s.log), nil
}

// refusedHead replaces a refused head: a start line net/http rejects with
// "400 Bad Request" and "Connection: close".
var refusedHead = []byte("REFUSED\r\n\r\n")

type framingMode int

const (
	modeHead     framingMode = iota // the next bytes start a request head
	modeLength                      // left bytes of a Content-Length body
	modeChunk                       // a chunk-size line is next
	modeChunkEnd                    // the CRLF after a chunk's data
	modeTrailer                     // trailer lines until an empty one
	modeTunnel                      // no more requests: pass bytes through
)

// framedConn hands net/http its connection's bytes one framed piece at a
// time: a checked head, then its body, then the next head.
type framedConn struct {
	net.Conn
	log     *slog.Logger
	maxHead int

	mu   sync.Mutex // Read against Read (net/http's background read)
	br   *bufio.Reader
	mode framingMode
	// pass bytes of the stream are cleared to go to net/http as they are;
	// then the mode's next piece is read.
	pass int64
	left int64 // modeLength, modeChunk data: body bytes still to come
	// sub, when set, is served instead of the stream's bytes (refusedHead).
	sub []byte
	// tunnel is set once a 101 Switching Protocols was written back:
	// the connection then carries another protocol, not requests.
	tunnel atomic.Bool
}

func newFramedConn(c net.Conn, maxHead int, log *slog.Logger) *framedConn {
	if maxHead < httpwire.DefaultMaxHeadBytes {
		maxHead = httpwire.DefaultMaxHeadBytes
	}
	return &framedConn{Conn: c, log: log, maxHead: maxHead, br: bufio.NewReaderSize(c, maxHead)}
}

// Write watches for a 101 Switching Protocols: after it the connection
// carries another protocol, whose bytes are not requests.
func (c *framedConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("HTTP/1.1 101 ")) {
		c.tunnel.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *framedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.sub) > 0 {
			n := copy(p, c.sub)
			c.sub = c.sub[n:]
			return n, nil
		}
		if c.pass > 0 || c.mode == modeTunnel || c.tunnel.Load() {
			return c.passThrough(p)
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
}

// passThrough hands over up to c.pass bytes (all of them in a tunnel).
func (c *framedConn) passThrough(p []byte) (int, error) {
	if c.mode != modeTunnel && !c.tunnel.Load() && int64(len(p)) > c.pass {
		p = p[:c.pass]
	}
	n, err := c.br.Read(p)
	c.pass -= int64(n)
	if c.pass < 0 {
		c.pass = 0
	}
	return n, err
}

// next reads the next piece of the stream and decides how many of its
// bytes go to net/http, and what comes after them.
func (c *framedConn) next() error {
	switch c.mode {
	case modeHead:
		return c.nextHead()
	case modeLength:
		c.pass, c.left = c.left, 0
		c.mode = modeHead
		return nil
	case modeChunk:
		line, err := c.peekLine()
		if err != nil {
			return c.giveUp(err)
		}
		size, ok := chunkSize(line)
		if !ok {
			// net/http refuses it and closes; nothing more to frame.
			c.mode = modeTunnel
			return nil
		}
		c.pass = int64(len(line)) + size
		if size == 0 {
			c.mode = modeTrailer
		} else {
			c.mode = modeChunkEnd
		}
		return nil
	case modeChunkEnd:
		c.pass, c.mode = 2, modeChunk
		return nil
	case modeTrailer:
		line, err := c.peekLine()
		if err != nil {
			return c.giveUp(err)
		}
		c.pass = int64(len(line))
		if len(line) <= 2 { // the empty line that ends the message
			c.mode = modeHead
		}
		return nil
	}
	return nil
}

func (c *framedConn) nextHead() error {
	head, err := httpwire.ReadHead(c.br, c.maxHead)
	if err != nil {
		var he *httpwire.Error
		if errors.As(err, &he) {
			// A head the strict reader refuses: net/http answers 400 too.
			c.refuse("malformed request head: " + he.Reason)
			return nil
		}
		return err // EOF, a timeout (net/http's deadlines), a reset
	}
	f := framingOf(head)
	if f.contentLength && f.chunked || f.contentLength && f.transferEncoding {
		c.refuse("a request with both Content-Length and Transfer-Encoding")
		return nil
	}
	c.pass = int64(len(head))
	switch {
	case f.connect:
		c.mode = modeTunnel
	case f.chunked:
		c.mode = modeChunk
	case f.transferEncoding || f.badLength:
		// A coding other than chunked, or a Content-Length that is no
		// number: net/http refuses it and closes.
		c.mode = modeTunnel
	case f.length > 0:
		c.mode, c.left = modeLength, f.length
	default:
		c.mode = modeHead
	}
	return nil
}

// refuse serves net/http refusedHead instead of the stream's next head:
// it answers 400 with Connection: close and reads nothing more.
func (c *framedConn) refuse(why string) {
	c.log.Warn("refused a request and closed its connection", "why", why, "client", c.RemoteAddr().String())
	c.sub = refusedHead
	c.mode = modeTunnel
	c.pass = 0
	// The stream's bytes stay unread: net/http closes after its answer.
	c.br.Reset(eofReader{})
}

// giveUp ends framing when the stream cannot be followed (it ended, or
// broke off, inside a body): the error goes to net/http as it would have.
func (c *framedConn) giveUp(err error) error {
	if errors.Is(err, bufio.ErrBufferFull) {
		c.mode = modeTunnel // a chunk line past any sane length: net/http refuses it
		return nil
	}
	return err
}

// peekLine returns the next line, CRLF included, without consuming it.
func (c *framedConn) peekLine() ([]byte, error) {
	n := 1
	for {
		b, err := c.br.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i+1], nil
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(b) >= 4096 {
			return nil, bufio.ErrBufferFull
		}
		// What is buffered already, else wait for one more byte.
		n = max(len(b)+1, c.br.Buffered())
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// headFraming is what a request head says about its body.
type headFraming struct {
	contentLength, badLength bool
	length                   int64
	transferEncoding         bool // any Transfer-Encoding field
	chunked                  bool // chunked is its final coding
	connect                  bool
}

// framingOf reads the fields of a head that frame its body. The head is
// complete (httpwire.ReadHead), CRLF-terminated lines.
func framingOf(head []byte) headFraming {
	var f headFraming
	lines := bytes.Split(head, []byte("\r\n"))
	if len(lines) > 0 && bytes.HasPrefix(lines[0], []byte("CONNECT ")) {
		f.connect = true
	}
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.Trim(value, " \t")
		switch {
		case httpwire.EqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || f.contentLength && n != f.length {
				f.badLength = true
			}
			f.contentLength, f.length = true, n
		case httpwire.EqualFold(name, "transfer-encoding"):
			f.transferEncoding = true
			codings := bytes.Split(value, []byte(","))
			last := bytes.Trim(codings[len(codings)-1], " \t")
			f.chunked = httpwire.EqualFold(last, "chunked")
		}
	}
	return f
}

// chunkSize parses a chunk-size line ("1a;ext\r\n").
func chunkSize(line []byte) (int64, bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line), 16, 64)
	return n, err == nil && n >= 0
}

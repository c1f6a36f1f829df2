package fastproxy

import (
	"errors"
	"io"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/httpwire"
)

// reqBody is the request body as it goes upstream: whole (buf, sent with
// its length), or buf followed by the rest streamed from the client (with
// the client's Content-Length, or re-encoded chunked when the length is
// unknown).
type reqBody struct {
	buf    []byte
	rest   io.Reader // nil: buf is the whole body
	length int64     // the whole length when known, else -1 (chunked)
	none   bool      // the request has no body at all
}

var errTooLarge = errors.New("request body over request_body.max")

// readBody reads the request's body before the request may take a pool
// slot, be admitted or reach the upstream (config.RequestBody), as the
// net/http front-end does: a client that trickles its upload holds a
// goroutine of the proxy, never an upstream worker. The whole body must
// arrive within timeouts.body. done means the request was answered (408,
// 413, 400) or the client left mid-body; o says which.
func (c *conn) readBody(cfg *config.Config) (b reqBody, o admit.Outcome, done bool) {
	r := &c.req
	if !r.HasBody() {
		// A Content-Length: 0 is forwarded as such (a POST's empty body).
		return reqBody{none: r.ContentLength < 0, length: 0}, 0, false
	}
	rb := cfg.RequestBody
	if rb.Max > 0 && r.ContentLength > rb.Max {
		c.answerBodyFault(cfg, admit.BodyTooLarge)
		return b, admit.BodyTooLarge, true
	}
	var src io.Reader
	if r.Chunked {
		c.chunk.Reset(c.br)
		src = &c.chunk
	} else {
		c.length = httpwire.LengthReader{R: c.br, N: r.ContentLength}
		src = &c.length
	}
	c.dl.read(after(cfg.Timeouts.Body.D()), 0)
	limit := rb.Buffer
	if limit < 0 {
		limit = 0
	}
	if rb.Max > 0 && rb.Max < limit {
		limit = rb.Max
	}
	c.body = c.body[:0]
	if r.ContentLength >= 0 && r.ContentLength <= limit {
		c.body = grow(c.body, int(r.ContentLength))
		_, err := io.ReadFull(src, c.body)
		if err != nil {
			return b, c.bodyFailed(cfg, err), true
		}
		c.dl.read(time.Time{}, 0)
		return reqBody{buf: c.body, length: r.ContentLength}, 0, false
	}
	if limit > 0 {
		var err error
		c.body, err = readUpTo(c.body, src, limit+1)
		if err != nil {
			return b, c.bodyFailed(cfg, err), true
		}
		if int64(len(c.body)) <= limit {
			c.dl.read(time.Time{}, 0)
			return reqBody{buf: c.body, length: int64(len(c.body))}, 0, false
		}
		if rb.Max > 0 && limit == rb.Max {
			c.answerBodyFault(cfg, admit.BodyTooLarge)
			return b, admit.BodyTooLarge, true
		}
	}
	// Larger than the buffer (or buffering off): the rest streams, still
	// under the deadline, still capped by request_body.max.
	rest := src
	if rb.Max > 0 {
		rest = &maxReader{r: src, n: rb.Max - int64(len(c.body))}
	}
	length := r.ContentLength
	if r.Chunked {
		length = -1
	}
	return reqBody{buf: c.body, rest: rest, length: length}, 0, false
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// readUpTo appends at most n bytes of r to b, stopping at EOF.
func readUpTo(b []byte, r io.Reader, n int64) ([]byte, error) {
	for int64(len(b)) < n {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := b[len(b):cap(b)]
		if int64(len(room)) > n-int64(len(b)) {
			room = room[:n-int64(len(b))]
		}
		m, err := r.Read(room)
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// maxReader fails once more than n bytes were read.
type maxReader struct {
	r io.Reader
	n int64
}

func (m *maxReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n -= int64(n)
	if m.n < 0 {
		return n, errTooLarge
	}
	return n, err
}

// bodyOutcome says what a failed body read means.
func bodyOutcome(err error) admit.Outcome {
	switch {
	case errors.Is(err, errTooLarge):
		return admit.BodyTooLarge
	case isTimeout(err):
		return admit.BodyTimeout
	}
	return admit.BodyIncomplete // the client left or broke its framing
}

// bodyFailed answers a body that could not be read: 408, 413, 400 for a
// malformed chunked body; nothing for a client that left.
func (c *conn) bodyFailed(cfg *config.Config, err error) admit.Outcome {
	c.dl.read(time.Time{}, 0)
	o := bodyOutcome(err)
	if o == admit.BodyIncomplete && errors.Is(err, httpwire.ErrMalformed) {
		c.answerMalformed(400)
		c.ex.status = 400
		return o
	}
	c.answerBodyFault(cfg, o)
	return o
}

// answerBodyFault tells the client what was wrong with its body, with the
// net/http front-end's bodies (a client that broke off gets nothing).
func (c *conn) answerBodyFault(cfg *config.Config, o admit.Outcome) {
	var body map[string]any
	switch o {
	case admit.BodyTimeout:
		body = map[string]any{
			"error":   "request_body_timeout",
			"message": "the request body did not arrive within " + cfg.Timeouts.Body.D().String() + "; send it faster or in smaller requests",
		}
		c.writeJSON(408, body)
	case admit.BodyTooLarge:
		max := cfg.RequestBody.Max
		body = map[string]any{
			"error":     "request_body_too_large",
			"message":   "the request body is larger than " + itoa(max) + " bytes",
			"max_bytes": max,
		}
		c.writeJSON(413, body)
	}
}

// writeJSON writes a JSON answer and closes the connection after it.
func (c *conn) writeJSON(status int, body map[string]any) {
	c.writeAnswer(status, JSONFields, JSONBody(body), false)
}

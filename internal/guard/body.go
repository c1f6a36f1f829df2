package guard

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// readBody reads the request's body before the request may take a pool slot,
// be admitted or reach the upstream (config.RequestBody), so a client that
// trickles its upload holds a goroutine of the proxy, never an upstream
// worker: unicorn-style servers read the body themselves and expect a
// buffering proxy in front (nginx's proxy_request_buffering). The whole body
// must arrive within timeouts.body. done is true when readBody answered
// the client itself (408, 413) or the client left mid-body; o then says
// which.
func (g *Guard) readBody(cfg *config.Config, rw *responseWriter, r *http.Request) (o admit.Outcome, done bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return 0, false
	}
	rb := cfg.RequestBody
	if rb.Max > 0 && r.ContentLength > rb.Max {
		answerBodyFault(rw, cfg, admit.BodyTooLarge)
		return admit.BodyTooLarge, true
	}
	// A deadline on the connection, not a timer on the handler: it ends a
	// read that is waiting, and net/http clears it for the next request.
	rc := http.NewResponseController(rw)
	// The connection's deadline is wall-clock time, whatever clock the
	// ledger runs on. ErrNotSupported comes only off a real connection.
	_ = rc.SetReadDeadline(time.Now().Add(cfg.Timeouts.Body.D()))
	clear := func() { _ = rc.SetReadDeadline(time.Time{}) }

	if rb.Buffer < 0 {
		r.Body = &deadlineBody{ReadCloser: limitBody(rw, r.Body, rb.Max), clear: clear}
		return 0, false
	}
	limit := rb.Buffer
	if rb.Max > 0 && rb.Max < limit {
		limit = rb.Max
	}
	var buf []byte
	var err error
	if r.ContentLength >= 0 && r.ContentLength <= limit {
		buf = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, buf)
	} else {
		buf, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
	}
	if err != nil {
		o := bodyFaultOf(err)
		answerBodyFault(rw, cfg, o)
		return o, true
	}
	n := len(buf)
	if int64(n) <= limit {
		// The whole body is here: the upstream gets it at once, with its
		// length. The deadline is lifted, then the original body read to
		// its end, which starts net/http's background read: the one that
		// notices a client leaving (and must not trip on the deadline).
		clear()
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body = io.NopCloser(bytes.NewReader(buf))
		r.ContentLength = int64(n)
		r.TransferEncoding = nil
		return 0, false
	}
	if rb.Max > 0 && limit == rb.Max {
		clear()
		answerBodyFault(rw, cfg, admit.BodyTooLarge)
		return admit.BodyTooLarge, true
	}
	// Larger than the buffer: the rest streams, still under the deadline.
	rest := limitBody(rw, r.Body, rb.Max-int64(n))
	if rb.Max <= 0 {
		rest = r.Body
	}
	r.Body = &deadlineBody{ReadCloser: readCloser{io.MultiReader(bytes.NewReader(buf), rest), r.Body}, clear: clear}
	return 0, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// bodyError is a failure reading the client's body while it streams
// upstream, as the transport reports it: the client's fault.
type bodyError struct {
	outcome admit.Outcome
	err     error
}

func (e *bodyError) Error() string { return "request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// bodyFaultOf says what a failed body read means.
func bodyFaultOf(err error) admit.Outcome {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return admit.BodyTooLarge
	case isTimeout(err):
		return admit.BodyTimeout
	}
	return admit.BodyIncomplete // the client left or broke its framing
}

// answerBodyFault tells the client what was wrong with its body (a client
// that broke off gets nothing: it is gone).
func answerBodyFault(w http.ResponseWriter, cfg *config.Config, o admit.Outcome) {
	switch o {
	case admit.BodyTimeout:
		writeJSONError(w, http.StatusRequestTimeout, map[string]any{
			"error":   "request_body_timeout",
			"message": "the request body did not arrive within " + cfg.Timeouts.Body.D().String() + "; send it faster or in smaller requests",
		})
	case admit.BodyTooLarge:
		max := cfg.RequestBody.Max
		writeJSONError(w, http.StatusRequestEntityTooLarge, map[string]any{
			"error":     "request_body_too_large",
			"message":   "the request body is larger than " + strconv.FormatInt(max, 10) + " bytes",
			"max_bytes": max,
		})
	}
}

// limitBody caps a streamed body at max bytes (none when max <= 0).
func limitBody(w http.ResponseWriter, b io.ReadCloser, max int64) io.ReadCloser {
	if max <= 0 {
		return b
	}
	return http.MaxBytesReader(w, b, max)
}

type readCloser struct {
	io.Reader
	io.Closer
}

// deadlineBody lifts the connection's read deadline once the body has been
// read to its end, so the deadline bounds the upload, not the upstream's
// work after it.
type deadlineBody struct {
	io.ReadCloser
	clear func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.clear()
	case err != nil:
		err = &bodyError{outcome: bodyFaultOf(err), err: err}
	}
	return n, err
}

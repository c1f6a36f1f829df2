package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// readRequest reads one request and its body the way the proxy does, and
// returns what a strict server answers ("ok" or the refusal's status) and
// the decoded body.
func readRequest(data []byte, max int) (string, *Request, []byte) {
	br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	var r Request
	if err := ReadRequest(br, &r, max); err != nil {
		return verdict(err), &r, nil
	}
	var body io.Reader = bytes.NewReader(nil)
	switch {
	case r.Chunked:
		body = NewChunkedReader(br)
	case r.ContentLength > 0:
		body = &LengthReader{R: br, N: r.ContentLength}
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return verdict(err), &r, b
	}
	return "ok", &r, b
}

func verdict(err error) string {
	var we *Error
	if errors.As(err, &we) {
		return strconv.Itoa(we.Status)
	}
	return "error: " + err.Error()
}

func TestRequestCorpus(t *testing.T) {
	for _, c := range testenv.QuotedCases(t, "testdata/requests.txt") {
		name, want := c.Fields[0], c.Fields[1]
		t.Run(name, func(t *testing.T) {
			got, _, _ := readRequest(c.Data, 0)
			if got != want {
				t.Errorf("line %d: got %s, want %s for %q", c.Line, got, want, c.Data)
			}
		})
	}
}

func TestRequestFields(t *testing.T) {
	got, r, body := readRequest([]byte("POST /a/b?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\nX-A:  v 1 \r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"+
		"3;n=v\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"), 0)
	if got != "ok" {
		t.Fatalf("got %s", got)
	}
	checks := []struct{ name, got, want string }{
		{"method", string(r.Method), "POST"},
		{"target", string(r.Target), "/a/b?x=1&y"},
		{"path", string(r.Path()), "/a/b"},
		{"query", string(r.Query()), "x=1&y"},
		{"host", string(r.Host), "example.com:8080"},
		{"x-a", string(r.Get("x-a")), "v 1"},
		{"expect", string(r.Expect), "100-continue"},
		{"body", string(body), "abcde"},
		{"minor", strconv.Itoa(r.Minor), "1"},
		{"keepalive", strconv.FormatBool(r.KeepAlive), "true"},
		{"chunked", strconv.FormatBool(r.Chunked), "true"},
		{"cl", strconv.FormatInt(r.ContentLength, 10), "-1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	for _, h := range []struct {
		name string
		hop  bool
	}{{"X-Hop", true}, {"x-hop", true}, {"Connection", true}, {"Transfer-Encoding", true}, {"Keep-Alive", true},
		{"TE", true}, {"Upgrade", true}, {"X-A", false}, {"Host", false}, {"Expect", false}} {
		if got := r.IsHopByHop([]byte(h.name)); got != h.hop {
			t.Errorf("IsHopByHop(%s) = %v, want %v", h.name, got, h.hop)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	for _, c := range []struct {
		head string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", false},
		{"GET / HTTP/1.0\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
	} {
		_, r, _ := readRequest([]byte(c.head), 0)
		if r.KeepAlive != c.want {
			t.Errorf("%q: KeepAlive = %v, want %v", c.head, r.KeepAlive, c.want)
		}
	}
}

func TestHeadLimit(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 3000) + "\r\n\r\n"
	if got, _, _ := readRequest([]byte(head), 4096); got != "ok" {
		t.Errorf("a %d-byte head under a 4096 limit: %s", len(head), got)
	}
	if got, _, _ := readRequest([]byte(head), 1024); got != "431" {
		t.Errorf("a %d-byte head over a 1024 limit: %s, want 431", len(head), got)
	}
	// A head longer than the reader's buffer is refused, not truncated.
	huge := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 10000) + "\r\n\r\n"
	if got, _, _ := readRequest([]byte(huge), 1<<20); got != "431" {
		t.Errorf("a head past the buffer: %s, want 431", got)
	}
	var many strings.Builder
	many.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for i := 0; i < MaxFields+1; i++ {
		many.WriteString("X: 1\r\n")
	}
	many.WriteString("\r\n")
	if got, _, _ := readRequest([]byte(many.String()), 0); got != "431" {
		t.Errorf("%d fields: %s, want 431", MaxFields+2, got)
	}
}

func TestReadHeadStreams(t *testing.T) {
	// Two pipelined requests arriving one byte at a time, then EOF.
	data := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
	br := bufio.NewReaderSize(&oneByte{s: data}, 64)
	var r Request
	for _, want := range []string{"/1", "/2"} {
		if err := ReadRequest(br, &r, 0); err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		if string(r.Target) != want {
			t.Errorf("target %q, want %q", r.Target, want)
		}
	}
	if err := ReadRequest(br, &r, 0); err != io.EOF {
		t.Errorf("after the last request: %v, want io.EOF", err)
	}
	br = bufio.NewReaderSize(strings.NewReader("GET / HTTP/1.1\r\nHo"), 64)
	if err := ReadRequest(br, &r, 0); err != io.ErrUnexpectedEOF {
		t.Errorf("a head cut short: %v, want io.ErrUnexpectedEOF", err)
	}
}

type oneByte struct{ s string }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(o.s) == 0 {
		return 0, io.EOF
	}
	p[0] = o.s[0]
	o.s = o.s[1:]
	return 1, nil
}

func TestResponses(t *testing.T) {
	for _, c := range []struct {
		name, head string
		isHead     bool
		want       string // "ok kind" or the error status
		kind       BodyKind
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, "ok", LengthBody},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, "ok", ChunkedBody},
		{"close", "HTTP/1.1 200 OK\r\n\r\n", false, "ok", CloseBody},
		{"no-reason", "HTTP/1.1 204\r\n\r\n", false, "ok", NoBody},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, "ok", NoBody},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, "ok", NoBody},
		{"http10", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, "ok", LengthBody},
		{"cl-te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, "400", 0},
		{"cl-dup", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, "400", 0},
		{"te-gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, "400", 0},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false, "400", 0},
		{"bare-lf", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", false, "400", 0},
		{"status-junk", "HTTP/1.1 2x0 OK\r\n\r\n", false, "400", 0},
		{"status-low", "HTTP/1.1 099 OK\r\n\r\n", false, "400", 0},
		{"version", "HTTP/2.0 200 OK\r\n\r\n", false, "400", 0},
		{"204-with-body", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, "400", 0},
		{"reason-ctl", "HTTP/1.1 200 O\x01K\r\n\r\n", false, "400", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Response
			err := ReadResponse(bufio.NewReader(strings.NewReader(c.head)), &r, 0)
			got := "ok"
			if err != nil {
				got = verdict(err)
			}
			if got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			if err == nil && r.Body(c.isHead) != c.kind {
				t.Errorf("body kind %d, want %d", r.Body(c.isHead), c.kind)
			}
		})
	}
}

func TestChunkedRoundTrip(t *testing.T) {
	for _, parts := range [][]string{{}, {"a"}, {"hello", " ", "world"}, {strings.Repeat("x", 70000)}} {
		var enc bytes.Buffer
		cw := &ChunkedWriter{W: &enc}
		for _, p := range parts {
			if _, err := cw.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		if err := cw.Close(); err != nil {
			t.Fatal(err)
		}
		enc.WriteString("NEXT")
		br := bufio.NewReader(&enc)
		got, err := io.ReadAll(NewChunkedReader(br))
		if err != nil {
			t.Fatalf("%d parts: %v", len(parts), err)
		}
		if want := strings.Join(parts, ""); string(got) != want {
			t.Errorf("decoded %d bytes, want %d", len(got), len(want))
		}
		if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
			t.Errorf("the decoder read past the body: left %q", rest)
		}
	}
}

func TestLengthReaderShort(t *testing.T) {
	_, err := io.ReadAll(&LengthReader{R: bufio.NewReader(strings.NewReader("abc")), N: 5})
	if err != io.ErrUnexpectedEOF {
		t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

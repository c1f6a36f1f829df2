package httpwire

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// FuzzRequest checks what the request-head parser accepts: every field
// name a token, no value with a line break or control byte, never both
// framings; the head written back out parses to the same thing; and where
// net/http also accepts the bytes, both frame the body the same way (a
// disagreement between two parsers is what request smuggling exploits).
func FuzzRequest(f *testing.F) {
	for _, c := range testenv.QuotedCases(f, "testdata/requests.txt") {
		f.Add(c.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		err := ReadRequest(bufio.NewReaderSize(bytes.NewReader(data), 4096), &r, 0)
		if err != nil {
			return
		}
		checkFields(t, &r.fields)
		if !isToken(r.Method) || len(r.Target) == 0 {
			t.Fatalf("accepted method %q target %q", r.Method, r.Target)
		}
		// Written back out, the head parses to the same request.
		var out bytes.Buffer
		out.Write(r.Method)
		out.WriteByte(' ')
		out.Write(r.Target)
		out.WriteString(" HTTP/1.")
		out.WriteByte(byte('0' + r.Minor))
		out.WriteString("\r\n")
		writeFields(&out, &r.fields)
		var r2 Request
		if err := r2.Parse(out.Bytes()); err != nil {
			t.Fatalf("re-encoded head %q refused: %v", out.Bytes(), err)
		}
		if r2.ContentLength != r.ContentLength || r2.Chunked != r.Chunked || r2.KeepAlive != r.KeepAlive ||
			!bytes.Equal(r2.Host, r.Host) || len(r2.Fields) != len(r.Fields) {
			t.Fatalf("re-encoded head parses differently")
		}
		hr, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if herr != nil {
			return
		}
		chunked := len(hr.TransferEncoding) > 0 && hr.TransferEncoding[0] == "chunked"
		if chunked != r.Chunked || (!chunked && hr.ContentLength != max(r.ContentLength, 0)) {
			t.Fatalf("framing differs from net/http: ours CL=%d chunked=%v, net/http CL=%d TE=%v",
				r.ContentLength, r.Chunked, hr.ContentLength, hr.TransferEncoding)
		}
	})
}

// FuzzResponse checks the response-head parser the same way, against
// net/http's ReadResponse.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 204\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Response
		if err := ReadResponse(bufio.NewReaderSize(bytes.NewReader(data), 4096), &r, 0); err != nil {
			return
		}
		checkFields(t, &r.fields)
		if r.Status < 100 || r.Status > 999 {
			t.Fatalf("accepted status %d", r.Status)
		}
		var out bytes.Buffer
		out.WriteString("HTTP/1.")
		out.WriteByte(byte('0' + r.Minor))
		out.WriteByte(' ')
		out.Write(r.Raw[9:12])
		out.WriteByte(' ')
		out.Write(r.Reason)
		out.WriteString("\r\n")
		writeFields(&out, &r.fields)
		var r2 Response
		if err := r2.Parse(out.Bytes()); err != nil {
			t.Fatalf("re-encoded head %q refused: %v", out.Bytes(), err)
		}
		if r2.Status != r.Status || r2.ContentLength != r.ContentLength || r2.Chunked != r.Chunked || r2.KeepAlive != r.KeepAlive {
			t.Fatalf("re-encoded head parses differently")
		}
		if r.Status < 200 {
			return // net/http reads past 1xx on its own
		}
		hr, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), &http.Request{Method: "GET"})
		if herr != nil {
			return
		}
		chunked := len(hr.TransferEncoding) > 0 && hr.TransferEncoding[0] == "chunked"
		if r.Body(false) != NoBody && chunked != r.Chunked {
			t.Fatalf("chunked: ours %v, net/http %v", r.Chunked, chunked)
		}
		if r.Body(false) == LengthBody && hr.ContentLength != r.ContentLength {
			t.Fatalf("Content-Length: ours %d, net/http %d", r.ContentLength, hr.ContentLength)
		}
	})
}

// FuzzChunked decodes arbitrary bytes as a chunked body; what it accepts,
// re-encoded, decodes to the same bytes, and it never reads past the
// body's end.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{"0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n", "A\r\n0123456789\r\n0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const tail = "\x00TAIL"
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(data), strings.NewReader(tail)))
		got, err := io.ReadAll(NewChunkedReader(br))
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(br)
		if !bytes.HasSuffix(rest, []byte(tail)) {
			t.Fatalf("the decoder read past the body's end: left %q", rest)
		}
		var enc bytes.Buffer
		cw := &ChunkedWriter{W: &enc}
		cw.Write(got)
		cw.Close()
		again, err := io.ReadAll(NewChunkedReader(bufio.NewReader(&enc)))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("re-encoded body decodes to %q, %v; want %q", again, err, got)
		}
	})
}

func checkFields(t *testing.T, f *fields) {
	t.Helper()
	if f.ContentLength >= 0 && f.Chunked {
		t.Fatalf("accepted both Content-Length and chunked")
	}
	for _, fl := range f.Fields {
		if !isToken(fl.Name) {
			t.Fatalf("accepted field name %q", fl.Name)
		}
		for _, c := range fl.Value {
			if !fieldByte[c] {
				t.Fatalf("accepted byte %#x in field %s", c, fl.Name)
			}
		}
		if v := trimOWS(fl.Value); len(v) != len(fl.Value) {
			t.Fatalf("value %q kept its surrounding whitespace", fl.Value)
		}
	}
}

func writeFields(out *bytes.Buffer, f *fields) {
	for _, fl := range f.Fields {
		out.Write(fl.Name)
		out.WriteString(": ")
		out.Write(fl.Value)
		out.WriteString("\r\n")
	}
	out.WriteString("\r\n")
}

package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/headroom-dev/headroom/internal/testenv"
)

// decoded is what a chunk decoder made of a stream: the payload, where
// the body ended in the stream (valid when err is nil) and the error.
type decoded struct {
	payload []byte
	end     int
	err     error
}

// verdict is what the table in testdata/chunked.txt says of a decoding:
// ok, eof, or the error's status and reason.
func (d decoded) verdict() string {
	var we *Error
	switch {
	case d.err == nil:
		return "ok"
	case d.err == io.ErrUnexpectedEOF:
		return "eof"
	case errors.As(d.err, &we):
		return strconv.Itoa(we.Status) + " " + we.Reason
	}
	return "error: " + d.err.Error()
}

func (d decoded) String() string {
	return fmt.Sprintf("%s, %d payload bytes, end %d", d.verdict(), len(d.payload), d.end)
}

// readChunked decodes data with ChunkedReader over a bufio.Reader of size
// bytes, as ReadAll reads it.
func readChunked(data []byte, size int) decoded {
	r := bytes.NewReader(data)
	br := bufio.NewReaderSize(r, size)
	payload, err := io.ReadAll(NewChunkedReader(br))
	return decoded{payload: payload, end: len(data) - r.Len() - br.Buffered(), err: err}
}

// scanChunked decodes data with a ChunkScanner as an event loop would:
// the stream arrives in pieces (piece returns the next piece's length),
// the caller keeps the bytes the scanner left unconsumed in front of
// those that arrive next, and asks for more only when the scanner waits.
// It checks Next's contract on the way.
func scanChunked(t testing.TB, s *ChunkScanner, data []byte, piece func(left int) int) decoded {
	t.Helper()
	orig := append([]byte(nil), data...)
	defer func() {
		if !bytes.Equal(data, orig) {
			t.Fatalf("Next wrote into its input")
		}
	}()
	var d decoded
	arrived := 0
	for {
		// What has arrived and is not consumed, capped so that the
		// scanner cannot see what has not arrived.
		pending := data[d.end:arrived:arrived]
		n, payload, done, err := s.Next(pending)
		if n < 0 || n > len(pending) {
			t.Fatalf("consumed %d of %d bytes", n, len(pending))
		}
		if len(payload) > 0 {
			// A subslice of the consumed bytes.
			off := 0
			for off+len(payload) <= n && &pending[off] != &payload[0] {
				off++
			}
			if off+len(payload) > n {
				t.Fatalf("payload is not among the %d consumed bytes", n)
			}
			d.payload = append(d.payload, payload...)
		}
		if err != nil {
			if n != 0 || len(payload) != 0 || done {
				t.Fatalf("error %v with %d consumed, %d payload, done %v", err, n, len(payload), done)
			}
			if again, _, _, err2 := s.Next(pending); again != 0 || err2 != err {
				t.Fatalf("after %v, Next again gives %d, %v", err, again, err2)
			}
			d.err = err
			return d
		}
		pending = pending[n:]
		d.end += n
		if done {
			if again, p2, done2, err2 := s.Next(pending); again != 0 || p2 != nil || !done2 || err2 != nil {
				t.Fatalf("after done, Next gives %d, %q, %v, %v", again, p2, done2, err2)
			}
			return d
		}
		if n > 0 {
			continue
		}
		// Waiting: for part of a line at most 4096 bytes long.
		if len(pending) >= maxChunkLine {
			t.Fatalf("Next waits with %d bytes unconsumed", len(pending))
		}
		if arrived == len(data) {
			d.err = io.ErrUnexpectedEOF
			return d
		}
		arrived += min(max(piece(len(data)-arrived), 1), len(data)-arrived)
	}
}

func whole(left int) int  { return left }
func byteAtATime(int) int { return 1 }

// checkScanner decodes data with ChunkedReader and with a ChunkScanner
// fed whole, a byte at a time, and in random pieces: the scanner must
// accept exactly what the reader accepts, with the same payload, end and
// error. It returns the reader's decoding.
func checkScanner(t testing.TB, data []byte, seed uint64) decoded {
	t.Helper()
	want := readChunked(data, 4096)
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	random := func(left int) int {
		switch rng.IntN(4) {
		case 0:
			return 1 + rng.IntN(3)
		case 1:
			return 1 + rng.IntN(64)
		default:
			return 1 + rng.IntN(left)
		}
	}
	var s ChunkScanner
	for _, p := range []struct {
		name  string
		piece func(int) int
	}{{"whole", whole}, {"bytes", byteAtATime}, {"random", random}} {
		s.Reset()
		got := scanChunked(t, &s, data, p.piece)
		if !sameDecoding(got, want) {
			t.Fatalf("fed %s, %q: scanner %v (payload %q), ChunkedReader %v (payload %q)",
				p.name, trunc(data), got, trunc(got.payload), want, trunc(want.payload))
		}
	}
	// Over a buffer of the proxy's size, ChunkedReader may accept a longer
	// trailer line; the scanner never accepts what it refuses.
	if big := readChunked(data, DefaultMaxHeadBytes); want.err == nil && !sameDecoding(big, want) {
		t.Fatalf("%q: over a %d-byte buffer ChunkedReader gives %v, over 4096 %v", trunc(data), DefaultMaxHeadBytes, big, want)
	}
	return want
}

func sameDecoding(a, b decoded) bool {
	if !bytes.Equal(a.payload, b.payload) {
		return false
	}
	if a.err == nil || b.err == nil {
		return a.err == nil && b.err == nil && a.end == b.end
	}
	return a.verdict() == b.verdict()
}

func trunc(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "..."...)
	}
	return b
}

// chunkCases are the framing table: testdata/chunked.txt, and the lines
// at the length limits.
func chunkCases(t testing.TB) []struct{ name, want, data string } {
	var cases []struct{ name, want, data string }
	for _, c := range testenv.QuotedCases(t, "testdata/chunked.txt") {
		cases = append(cases, struct{ name, want, data string }{c.Fields[0], c.Fields[1], string(c.Data)})
	}
	ext := func(n int) string { // a size line of n bytes, CRLF included
		return "1;" + strings.Repeat("a", n-4) + "\r\n"
	}
	field := func(n int) string { // a trailer line of n bytes
		return "X: " + strings.Repeat("v", n-5) + "\r\n"
	}
	return append(cases, []struct{ name, want, data string }{
		{"size-line-4096", "ok", ext(4096) + "x\r\n0\r\n\r\n"},
		{"size-line-4097", "400 chunk line too long", ext(4097) + "x\r\n0\r\n\r\n"},
		{"size-line-no-lf", "400 chunk line too long", strings.Repeat("0", 4096)},
		{"size-line-short-no-lf", "eof", strings.Repeat("0", 4095)},
		{"last-line-4097", "400 chunk line too long", "0;" + strings.Repeat("a", 4093) + "\r\n\r\n"},
		{"trailer-line-4096", "ok", "0\r\n" + field(4096) + "\r\n"},
		{"trailer-line-4097", "400 trailer line too long", "0\r\n" + field(4097) + "\r\n"},
		{"trailer-line-no-lf", "400 trailer line too long", "0\r\nX: " + strings.Repeat("v", 5000)},
		{"trailer-section-16384", "ok", "0\r\n" + strings.Repeat(field(4096), 3) + field(4094) + "\r\n"},
		{"trailer-section-16385", "400 trailer section too long", "0\r\n" + strings.Repeat(field(4096), 3) + field(4095) + "\r\n"},
		{"trailer-section-long-end", "400 trailer section too long", "0\r\n" + strings.Repeat(field(4096), 4) + "\r\n"},
		{"many-chunks", "ok", strings.Repeat("1\r\nx\r\n", 3000) + "0\r\n\r\n"},
		{"big-chunk", "ok", "10000\r\n" + strings.Repeat("y", 0x10000) + "\r\n0\r\n\r\n"},
		{"huge-size-cut", "eof", "fffffffffffffff\r\nabc"},
	}...)
}

// TestChunkFraming runs the framing table through both decoders: each
// case's verdict is what ChunkedReader gives, and what ChunkScanner gives
// however the bytes arrive; an accepted body ends where its last CRLF
// does, whatever follows it.
func TestChunkFraming(t *testing.T) {
	for i, c := range chunkCases(t) {
		t.Run(c.name, func(t *testing.T) {
			data := []byte(c.data)
			if c.want == "ok" {
				data = append(data, "HTTP/1.1 200 OK\r\n"...) // the next response
			}
			d := checkScanner(t, data, uint64(i))
			if got := d.verdict(); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			if d.err == nil && d.end != len(c.data) {
				t.Errorf("body ended at %d, want %d", d.end, len(c.data))
			}
		})
	}
}

func TestChunkScannerPayload(t *testing.T) {
	var s ChunkScanner
	for _, c := range []struct{ in, want string }{
		{"0\r\n\r\n", ""},
		{"3;n=v\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n", "abcde"},
		{"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
		{"4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"},
	} {
		s.Reset()
		d := scanChunked(t, &s, []byte(c.in), byteAtATime)
		if d.err != nil || string(d.payload) != c.want || d.end != len(c.in) {
			t.Errorf("%q: %v, payload %q; want ok, %q", c.in, d, d.payload, c.want)
		}
	}
}

// One call takes at most one payload span, and the framing around it.
func TestChunkScannerSpans(t *testing.T) {
	var s ChunkScanner
	in := []byte("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT")
	for _, want := range []struct {
		consumed int
		payload  string
		done     bool
	}{{11, "abc", false}, {9, "de", true}} {
		n, p, done, err := s.Next(in)
		if err != nil || n != want.consumed || string(p) != want.payload || done != want.done {
			t.Fatalf("Next(%q) = %d, %q, %v, %v; want %d, %q, %v", in, n, p, done, err, want.consumed, want.payload, want.done)
		}
		in = in[n:]
	}
	if string(in) != "NEXT" {
		t.Errorf("left %q", in)
	}
	// An error after a span waits for the next call.
	s.Reset()
	n, p, _, err := s.Next([]byte("3\r\nabcX\r\n"))
	if n != 6 || string(p) != "abc" || err != nil {
		t.Fatalf("got %d, %q, %v; want 6, abc, nil", n, p, err)
	}
	if n, _, _, err = s.Next([]byte("X\r\n")); n != 0 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("then %d, %v; want the CRLF error", n, err)
	}
	// A size line past the limit is refused before its LF arrives.
	s.Reset()
	if _, _, _, err := s.Next(bytes.Repeat([]byte("0"), maxChunkLine)); !errors.Is(err, ErrMalformed) {
		t.Errorf("a 4096-byte size line without LF: %v, want an error at once", err)
	}
}

// The hot path of a body with extensions and trailers, bytes arriving a
// few at a time: no allocation once the scanner has seen one trailer.
func TestChunkScannerDoesNotAllocate(t *testing.T) {
	in := []byte("5;a=\"b\"\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n")
	var s ChunkScanner
	run := func() {
		s.Reset()
		p, end := in, 7
		for {
			n, _, done, err := s.Next(p[:min(end, len(p))])
			if err != nil {
				t.Fatal(err)
			}
			if done {
				return
			}
			if n == 0 {
				end += 7
			}
			p = p[n:]
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("%v allocations per body, want 0", n)
	}
}

// FuzzChunkScanner is the differential test of ChunkScanner against
// ChunkedReader: for any bytes, fed whole, a byte at a time and in
// random pieces (seed), the scanner accepts exactly what the reader
// accepts, yields the same payload, and ends the body at the same
// offset. Seeded with the framing table, FuzzChunked's seeds and the
// chunked bodies of testdata/requests.txt.
func FuzzChunkScanner(f *testing.F) {
	for i, c := range chunkCases(f) {
		f.Add([]byte(c.data), uint64(i))
	}
	for _, s := range []string{"0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n", "A\r\n0123456789\r\n0\r\n\r\n"} {
		f.Add([]byte(s), uint64(len(s)))
	}
	for _, c := range testenv.QuotedCases(f, "testdata/requests.txt") {
		var r Request
		br := bufio.NewReaderSize(bytes.NewReader(c.Data), 4096)
		if ReadRequest(br, &r, 0) == nil && r.Chunked {
			body, _ := io.ReadAll(br)
			f.Add(body, uint64(c.Line))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		checkScanner(t, data, seed)
	})
}

// BenchmarkChunkedDecode decodes a 1 MiB chunked body, in chunks of the
// given size, with ChunkedReader (over a bufio.Reader of the proxy's
// upstream size, into a 32 KiB buffer) and with ChunkScanner (fed 32 KiB
// reads, as an event loop fills its buffer). ns/MB is per MB (10^6
// bytes) of payload.
func BenchmarkChunkedDecode(b *testing.B) {
	const bodySize = 1 << 20
	for _, chunk := range []int{64, 1 << 10, 16 << 10} {
		var enc bytes.Buffer
		cw := &ChunkedWriter{W: &enc}
		part := bytes.Repeat([]byte("x"), chunk)
		for n := 0; n < bodySize; n += chunk {
			cw.Write(part)
		}
		cw.Close()
		body := enc.Bytes()
		report := func(b *testing.B) {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(bodySize/1e6), "ns/MB")
		}
		b.Run(fmt.Sprintf("chunk=%d/reader", chunk), func(b *testing.B) {
			r := bytes.NewReader(body)
			br := bufio.NewReaderSize(r, DefaultMaxHeadBytes)
			var cr ChunkedReader
			buf := make([]byte, 32<<10)
			b.SetBytes(bodySize)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				br.Reset(r)
				cr.Reset(br)
				total := 0
				for {
					n, err := cr.Read(buf)
					total += n
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if total != bodySize {
					b.Fatalf("decoded %d bytes", total)
				}
			}
			report(b)
		})
		b.Run(fmt.Sprintf("chunk=%d/scanner", chunk), func(b *testing.B) {
			var s ChunkScanner
			buf := make([]byte, 32<<10)
			b.SetBytes(bodySize)
			b.ReportAllocs()
			for b.Loop() {
				s.Reset()
				in, have, total := body, 0, 0
				for done := false; !done; {
					// The event loop's read: what is unconsumed moves to
					// the front, the rest of the buffer fills.
					k := copy(buf[have:], in)
					have, in = have+k, in[k:]
					p := buf[:have]
					for {
						n, payload, d, err := s.Next(p)
						if err != nil {
							b.Fatal(err)
						}
						total += len(payload)
						p = p[n:]
						if done = d; done || n == 0 {
							break
						}
						if n == 0 && len(in) == 0 {
							b.Fatal("the body ended early")
						}
					}
					have = copy(buf, p)
				}
				if total != bodySize {
					b.Fatalf("decoded %d bytes", total)
				}
			}
			report(b)
		})
	}
}

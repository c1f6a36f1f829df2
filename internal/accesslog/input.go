package accesslog

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Stdin is the path that names standard input.
const Stdin = "-"

// ExpandPaths turns command-line arguments into the list of inputs to read:
// globs are expanded ("/var/log/nginx/access.log*"), and each rotated set
// (access.log, access.log.1, access.log.2.gz …, or logrotate's dateext
// access.log-20190404.gz) is ordered oldest first, so records come in time
// order. No argument means standard input.
func ExpandPaths(args []string) ([]string, error) {
	if len(args) == 0 {
		return []string{Stdin}, nil
	}
	var paths []string
	seen := map[string]bool{}
	for _, a := range args {
		if a == Stdin {
			paths = append(paths, a)
			continue
		}
		matches := []string{a}
		if strings.ContainsAny(a, "*?[") {
			m, err := filepath.Glob(a)
			if err != nil {
				return nil, fmt.Errorf("pattern %q: %w", a, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("%s: no file matches this pattern", a)
			}
			matches = m
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return nil, fmt.Errorf("input %w", err)
			}
			if st.IsDir() {
				return nil, fmt.Errorf("%s is a directory: give the log files in it (e.g. %s)", m, filepath.Join(m, "access.log*"))
			}
			if !seen[m] {
				seen[m] = true
				paths = append(paths, m)
			}
		}
	}
	return OrderRotated(paths), nil
}

var (
	numberedSuffix = regexp.MustCompile(`^(.*)\.(\d{1,4})$`)
	datedSuffix    = regexp.MustCompile(`^(.*)-(\d{8}|\d{10})$`)
)

// rotationKey splits a rotated file name into its set's base name and its
// age rank: larger is newer, the live file (no suffix) is the newest.
func rotationKey(path string) (base string, rank int64) {
	p := path
	for _, ext := range []string{".gz", ".bz2", ".xz", ".zst"} {
		p = strings.TrimSuffix(p, ext)
	}
	if m := numberedSuffix.FindStringSubmatch(p); m != nil {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		return m[1], -n
	}
	if m := datedSuffix.FindStringSubmatch(p); m != nil {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		return m[1], n - 1e11 // every date sorts before the live file
	}
	return p, 0
}

// OrderRotated keeps each rotated set together, at the position its first
// member had, oldest member first.
func OrderRotated(paths []string) []string {
	type item struct {
		path  string
		group int
		rank  int64
	}
	groups := map[string]int{}
	items := make([]item, 0, len(paths))
	for _, p := range paths {
		base, rank := rotationKey(p)
		g, ok := groups[base]
		if !ok {
			g = len(groups)
			groups[base] = g
		}
		items = append(items, item{p, g, rank})
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].group != items[j].group {
			return items[i].group < items[j].group
		}
		return items[i].rank < items[j].rank
	})
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.path
	}
	return out
}

// Input is an open log: decompressed text, with the count of raw bytes read
// so far (for progress) and the raw size when known.
type Input struct {
	Name    string
	Size    int64 // raw (compressed) size; 0 when unknown (stdin)
	Gzipped bool  // compressed (gzip, zstd or bzip2)
	*bufio.Reader
	raw    *countingReader
	closer io.Closer
}

// RawRead returns the raw bytes read so far; safe from any goroutine.
func (in *Input) RawRead() int64 { return in.raw.n.Load() }

// Close closes the underlying file.
func (in *Input) Close() error {
	if in.closer != nil {
		return in.closer.Close()
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// inputBufSize is large enough that Peek can return the sample lines used to
// check the format.
const inputBufSize = 1 << 20

// Open opens path ("-" for stdin), decompressing gzip, zstd and bzip2
// whatever the file is called (detected by magic bytes, so "access.log.2.gz"
// and a compressed file without the suffix both work).
func Open(path string, stdin io.Reader) (*Input, error) {
	var r io.Reader
	in := &Input{Name: path}
	if path == Stdin {
		r = stdin
		in.Name = "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		if st, err := f.Stat(); err == nil {
			in.Size = st.Size()
		}
		r, in.closer = f, f
	}
	in.raw = &countingReader{r: r}
	br := bufio.NewReaderSize(in.raw, 64<<10)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("%s: gzip: %w", in.Name, err)
		}
		in.Gzipped = true
		in.Reader = bufio.NewReaderSize(zr, inputBufSize)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("%s: zstd: %w", in.Name, err)
		}
		in.Gzipped = true
		in.Reader = bufio.NewReaderSize(zr, inputBufSize)
		in.closer = closers{zr.IOReadCloser(), in.closer}
	case bytes.HasPrefix(magic, []byte("BZh")):
		in.Gzipped = true
		in.Reader = bufio.NewReaderSize(bzip2.NewReader(br), inputBufSize)
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		in.Close()
		return nil, fmt.Errorf("%s is xz-compressed, which headroom does not read: xzcat %s | headroom logs analyze -", in.Name, path)
	default:
		in.Reader = bufio.NewReaderSize(br, inputBufSize)
	}
	return in, nil
}

// closers closes several things, in order, returning the first error.
type closers []io.Closer

func (cs closers) Close() error {
	var first error
	for _, c := range cs {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Head returns up to n complete lines from the start of in without
// consuming them (from its buffer).
func (in *Input) Head(n int) ([][]byte, error) {
	buf, err := in.Peek(inputBufSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read %s: %w", in.Name, err)
	}
	var lines [][]byte
	for len(buf) > 0 && len(lines) < n {
		i := indexNL(buf)
		if i < 0 {
			// The last line without a newline, or a first "line" longer
			// than the whole window (binary data): either way it is a
			// sample the format check must see.
			if errors.Is(err, io.EOF) || len(lines) == 0 {
				lines = append(lines, trimCR(buf))
			}
			break
		}
		lines = append(lines, trimCR(buf[:i]))
		buf = buf[i+1:]
	}
	return lines, nil
}

func indexNL(b []byte) int { return bytes.IndexByte(b, '\n') }

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

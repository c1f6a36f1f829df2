package analyze

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
)

// follow reads a live log as it grows, like tail -F: when the file is
// rotated (renamed and recreated, or truncated in place by copytruncate) it
// finishes the old file and continues with the new one. Results go to
// OnUpdate every Refresh, and once more when ctx is done.
func (rn *run) follow(ctx context.Context, fixed *accesslog.Format, start time.Time) (*Result, error) {
	opts := &rn.opts
	if opts.Refresh <= 0 {
		opts.Refresh = 2 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	path := rn.paths[0]
	w := rn.newWorker()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	defer func() { f.Close() }()
	cur, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	buf := make([]byte, 0, opts.ChunkSize)
	line := int64(1)
	var offset int64
	lastUpdate := time.Now()
	update := func() {
		if opts.OnUpdate != nil {
			opts.OnUpdate(rn.result([]*worker{w}, start))
		}
	}

	// drain reads f to its current end, processing whole lines.
	drain := func() error {
		for {
			if len(buf) == cap(buf) { // a line longer than the buffer
				buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
			}
			n, err := f.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			offset += int64(n)
			rn.inputs[0].Bytes += int64(n)
			if cut := bytes.LastIndexByte(buf, '\n') + 1; cut > 0 {
				if rn.formats[0] == nil {
					if err := rn.followFormat(buf[:cut], fixed); err != nil {
						return err
					}
				}
				c := chunk{data: buf[:cut], input: 0, firstLine: line}
				line += int64(bytes.Count(c.data, []byte{'\n'}))
				w.process(rn, c)
				buf = buf[:copy(buf, buf[cut:])]
			}
			if errors.Is(err, io.EOF) || n == 0 {
				return nil
			}
			if err != nil {
				return fmt.Errorf("follow %s: %w", path, err)
			}
		}
	}

	for {
		if err := drain(); err != nil {
			return nil, err
		}
		if time.Since(lastUpdate) >= opts.Refresh {
			update()
			lastUpdate = time.Now()
		}
		select {
		case <-ctx.Done():
			return rn.result([]*worker{w}, start), nil
		case <-time.After(opts.Poll):
		}
		st, err := os.Stat(path)
		switch {
		case err != nil:
			// Between the rename and the new file's creation the path does
			// not exist: keep the old file and look again next poll.
			continue
		case !os.SameFile(cur, st):
			if err := drain(); err != nil { // lines written just before the rotation
				return nil, err
			}
			nf, err := os.Open(path)
			if err != nil {
				continue
			}
			f.Close()
			f, cur, offset, line, buf = nf, st, 0, 1, buf[:0]
			fmt.Fprintf(opts.Log, "headroom: %s was rotated; following the new file\n", path)
		case st.Size() < offset: // truncated in place (copytruncate)
			if _, err := f.Seek(0, io.SeekStart); err == nil {
				offset, line, buf = 0, 1, buf[:0]
				fmt.Fprintf(opts.Log, "headroom: %s was truncated; reading it from the start\n", path)
			}
		}
	}
}

func (rn *run) followFormat(data []byte, fixed *accesslog.Format) error {
	head := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	f, err := rn.chooseFormat(0, head[:min(len(head), headLines)], fixed)
	if err != nil {
		return err
	}
	rn.formats[0] = f
	rn.inputs[0].Format = f.Name
	return nil
}

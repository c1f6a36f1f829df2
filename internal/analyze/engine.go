package analyze

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headroom-dev/headroom/internal/accesslog"
	"github.com/headroom-dev/headroom/internal/findings"
)

// Options configures a run. The zero value reads standard input in any
// format headroom recognizes.
type Options struct {
	// Inputs are file paths, globs or "-" (stdin); none means stdin.
	// Rotated sets are read oldest first (accesslog.ExpandPaths).
	Inputs []string
	// Stdin is read for "-"; nil means no standard input is available.
	Stdin io.Reader

	// Format is a format name (accesslog.FormatNames) or an nginx
	// log_format text; "" or "auto" detects it per input from its first
	// lines.
	Format        string
	FormatOptions accesslog.FormatOptions

	// Where keeps only the records matching it (nil keeps all).
	Where *Filter
	// By groups an extra table by these fields (one or two names).
	By []string
	// Since and Until keep records with Since <= time < Until (zero: no
	// bound).
	Since, Until time.Time

	// Workers parse in parallel; 0 means GOMAXPROCS.
	Workers int
	// TopN is the number of rows per table in reports; 0 means 10.
	TopN int
	// Capacity bounds each top table per worker; 0 means 4096.
	Capacity int
	// ChunkSize is how many bytes of whole lines a worker takes at a time;
	// 0 means 4 MiB.
	ChunkSize int

	// Findings, when set, runs the detectors of internal/findings as
	// consumers of the same pass (one collector per worker, merged like
	// the tables) and puts what they conclude in the report; nil gives
	// the tables alone.
	Findings *findings.AnalyzeOptions

	// Log receives one-line notices (the format detected, files skipped);
	// nil discards them.
	Log io.Writer
	// Progress, when set, receives a progress line a few times a second
	// (bytes, lines/s, ETA); give it a terminal only.
	Progress io.Writer

	// Follow keeps reading the (single) input as it grows, across
	// rotation, until ctx is done; Refresh is how often OnUpdate sees the
	// results so far (0 means 2s) and Poll how often the file is checked
	// for growth (0 means 250ms).
	Follow   bool
	Refresh  time.Duration
	Poll     time.Duration
	OnUpdate func(*Result)

	// Now is the clock for relative times; nil means time.Now.
	Now func() time.Time
}

// MalformedLine is an example of a line no parser could read.
type MalformedLine struct {
	File   string `json:"file"`
	Line   int64  `json:"line"`
	Text   string `json:"text"`
	Reason string `json:"reason"`
}

// InputSummary says what became of one input.
type InputSummary struct {
	Name      string `json:"name"`
	Format    string `json:"format,omitempty"`
	Lines     int64  `json:"lines"`
	Malformed int64  `json:"malformed"`
	Bytes     int64  `json:"bytes"`
	Size      int64  `json:"-"`
	Error     string `json:"error,omitempty"`
}

// Result is everything a run found.
type Result struct {
	Inputs            []InputSummary
	Lines             int64 // non-empty lines read
	Malformed         int64
	MalformedExamples []MalformedLine
	Filtered          int64 // parsed, but outside --where/--since/--until
	Bytes             int64 // decompressed bytes read
	Elapsed           time.Duration

	agg       *aggregate
	collector *findings.Collector // nil without Options.Findings
	opts      Options
}

// Records is the number of records that passed the filters.
func (r *Result) Records() int64 { return r.agg.total.Requests }

const (
	chunkSize        = 4 << 20
	maxExamples      = 10
	maxExampleLength = 300
	headLines        = 200
	sniffLines       = 50
)

// ErrNoUsableInput is returned (wrapped) when no input could be read as a
// log.
var ErrNoUsableInput = errors.New("no input could be read as an access log")

type chunk struct {
	data      []byte
	buf       []byte // the pooled buffer data lies in
	input     int
	firstLine int64
}

type worker struct {
	agg       *aggregate
	collector *findings.Collector
	parsers   map[*accesslog.Format]accesslog.Parser
	malformed []int64 // per input
	lines     []int64 // per input
	examples  []MalformedLine
	filtered  int64
	scratch   []byte
}

type run struct {
	opts      Options
	paths     []string
	formats   []*accesslog.Format
	inputs    []InputSummary
	bytesRead atomic.Int64 // raw bytes, for progress
	totalSize int64
	lines     atomic.Int64
	by        []field
}

// Run reads every input and aggregates it.
func Run(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.TopN <= 0 {
		opts.TopN = 10
	}
	if opts.Capacity <= 0 {
		opts.Capacity = 4096
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = chunkSize
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	by, err := compileBy(opts.By)
	if err != nil {
		return nil, err
	}
	paths, err := accesslog.ExpandPaths(opts.Inputs)
	if err != nil {
		return nil, err
	}
	var fixed *accesslog.Format
	if f := strings.TrimSpace(opts.Format); f != "" && f != "auto" {
		if fixed, err = accesslog.LookupFormat(f, opts.FormatOptions); err != nil {
			return nil, err
		}
	}
	rn := &run{opts: opts, paths: paths, formats: make([]*accesslog.Format, len(paths)),
		inputs: make([]InputSummary, len(paths)), by: by}
	for i, p := range paths {
		rn.inputs[i].Name = p
		if p == accesslog.Stdin {
			rn.inputs[i].Name = "stdin"
		}
	}
	if opts.Follow {
		if len(paths) != 1 || paths[0] == accesslog.Stdin {
			return nil, fmt.Errorf("--follow reads one live file (got %d inputs): give the current log, e.g. /var/log/nginx/access.log", len(paths))
		}
		return rn.follow(ctx, fixed, start)
	}

	chunks := make(chan chunk, opts.Workers*2)
	free := make(chan []byte, opts.Workers*2+2)
	for i := 0; i < cap(free); i++ {
		free <- make([]byte, opts.ChunkSize)
	}
	workers := make([]*worker, opts.Workers)
	var wg sync.WaitGroup
	for i := range workers {
		w := rn.newWorker()
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				w.process(rn, c)
				free <- c.buf[:cap(c.buf)]
			}
		}()
	}
	stopProgress := rn.startProgress(start)
	readErr := rn.readAll(ctx, fixed, chunks, free)
	close(chunks)
	wg.Wait()
	stopProgress()
	if readErr != nil {
		return nil, readErr
	}
	res := rn.result(workers, start)
	if err := rn.checkUsable(res); err != nil {
		return nil, err
	}
	return res, nil
}

func compileBy(names []string) ([]field, error) {
	if len(names) > 2 {
		return nil, fmt.Errorf("--by takes one field or a pair (FIELD[,FIELD]), got %d", len(names))
	}
	var by []field
	for _, n := range names {
		f, err := lookupField(n)
		if err != nil {
			return nil, fmt.Errorf("--by: %w", err)
		}
		by = append(by, f)
	}
	return by, nil
}

func (rn *run) newWorker() *worker {
	w := &worker{
		agg:       newAggregate(rn.opts.Capacity, rn.by),
		parsers:   map[*accesslog.Format]accesslog.Parser{},
		malformed: make([]int64, len(rn.paths)),
		lines:     make([]int64, len(rn.paths)),
		scratch:   make([]byte, 0, 1024),
	}
	if rn.opts.Findings != nil {
		w.collector = findings.NewCollector(findings.Options{})
	}
	return w
}

// readAll streams every input into chunks of whole lines.
func (rn *run) readAll(ctx context.Context, fixed *accesslog.Format, chunks chan<- chunk, free chan []byte) error {
	for _, st := range rn.inputsStat() {
		rn.totalSize += st
	}
	for i, path := range rn.paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := rn.readInput(ctx, i, path, fixed, chunks, free); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			rn.inputs[i].Error = err.Error()
			if len(rn.paths) > 1 { // with one input, the error says it all
				fmt.Fprintf(rn.opts.Log, "headroom: skipping %s: %v\n", rn.inputs[i].Name, err)
			}
		}
	}
	return nil
}

func (rn *run) inputsStat() []int64 {
	var sizes []int64
	for _, p := range rn.paths {
		if p == accesslog.Stdin {
			continue
		}
		if in, err := accesslog.Open(p, nil); err == nil {
			sizes = append(sizes, in.Size)
			in.Close()
		}
	}
	return sizes
}

// chooseFormat detects (or checks) the format of input i from its first
// lines. A wrong --format or a file that is not a log is an error for that
// input, not an empty report.
func (rn *run) chooseFormat(i int, head [][]byte, fixed *accesslog.Format) (*accesslog.Format, error) {
	name := rn.inputs[i].Name
	if fixed == nil {
		res, err := accesslog.Sniff(head[:min(len(head), sniffLines)], rn.opts.FormatOptions)
		if err != nil {
			return nil, fmt.Errorf("%w; give --format (%s) or an nginx log_format", err, strings.Join(accesslog.FormatNames()[1:], ", "))
		}
		fmt.Fprintf(rn.opts.Log, "headroom: %s: format auto → %s (%d of %d sample lines parse)\n", name, res.Format.Name, res.Parsed, res.Lines)
		return res.Format, nil
	}
	p := fixed.NewParser()
	var r accesslog.Record
	bad, n := 0, 0
	var firstErr error
	var firstLine []byte
	for _, l := range head {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		n++
		if err := p.Parse(l, &r); err != nil {
			bad++
			if firstErr == nil {
				firstErr, firstLine = err, l
			}
		}
	}
	if n > 0 && bad*2 > n {
		hint := "try --format auto"
		if res, err := accesslog.Sniff(head[:min(len(head), sniffLines)], rn.opts.FormatOptions); err == nil {
			hint = fmt.Sprintf("it looks like --format %s", res.Format.Name)
		}
		return nil, fmt.Errorf("not a %s log: %d of the first %d lines do not parse (first: %v in %q); %s",
			fixed.Name, bad, n, firstErr, truncate(string(firstLine), 120), hint)
	}
	return fixed, nil
}

// warnUnknownFields says when --where or --by names a field that neither
// headroom nor this input's format has: a typo (stauts>=500) would
// otherwise silently match nothing.
func (rn *run) warnUnknownFields(i int, f *accesslog.Format, head [][]byte) {
	var names []string
	if rn.opts.Where != nil {
		names = append(names, rn.opts.Where.extras...)
	}
	for _, b := range rn.by {
		if b.extra {
			names = append(names, b.name)
		}
	}
	if len(names) == 0 {
		return
	}
	seen := map[string]bool{}
	p := f.NewParser()
	var r accesslog.Record
	for _, l := range head {
		if p.Parse(l, &r) == nil {
			for _, x := range r.Extra {
				seen[x.Name] = true
			}
		}
	}
	for _, n := range names {
		if seen[n] {
			continue
		}
		have := make([]string, 0, len(seen))
		for k := range seen {
			have = append(have, k)
		}
		slices.Sort(have)
		extra := ""
		if len(have) > 0 {
			extra = "; this log also has " + strings.Join(have, ", ")
		}
		fmt.Fprintf(rn.opts.Log, "headroom: warning: %s has no field %q (built-in fields: %s%s)\n",
			rn.inputs[i].Name, n, strings.Join(FieldNames(), ", "), extra)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (rn *run) readInput(ctx context.Context, i int, path string, fixed *accesslog.Format, chunks chan<- chunk, free chan []byte) error {
	in, err := accesslog.Open(path, rn.opts.Stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	if path == accesslog.Stdin && rn.opts.Stdin == nil {
		return fmt.Errorf("no standard input: give log files as arguments")
	}
	head, err := in.Head(headLines)
	if err != nil {
		return err
	}
	if len(head) == 0 {
		if len(rn.paths) > 1 {
			fmt.Fprintf(rn.opts.Log, "headroom: %s is empty\n", rn.inputs[i].Name)
		}
		return nil
	}
	f, err := rn.chooseFormat(i, head, fixed)
	if err != nil {
		return err
	}
	rn.formats[i] = f
	rn.inputs[i].Format = f.Name
	rn.inputs[i].Size = in.Size
	rn.warnUnknownFields(i, f, head)

	var carry []byte
	line := int64(1)
	baseRaw := rn.bytesRead.Load()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf := <-free
		buf = buf[:cap(buf)]
		n := copy(buf, carry)
		if n == len(buf) { // a single line longer than the buffer
			// The bigger buffer takes the pooled one's place, so the
			// pool keeps its size.
			bigger := make([]byte, 2*len(buf))
			copy(bigger, buf)
			buf = bigger
		}
		m, rerr := io.ReadFull(in, buf[n:])
		total := n + m
		rn.bytesRead.Store(baseRaw + in.RawRead())
		eof := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if rerr != nil && !eof {
			free <- buf
			return fmt.Errorf("read %s: %w", rn.inputs[i].Name, rerr)
		}
		rn.inputs[i].Bytes += int64(m)
		cut := total
		if !eof {
			cut = bytes.LastIndexByte(buf[:total], '\n') + 1
			if cut == 0 {
				// No newline in a full buffer: one line longer than the
				// buffer. Carry it all; the next round reads into a
				// buffer twice the size.
				carry = append(carry[:0], buf[:total]...)
				free <- buf
				continue
			}
		}
		carry = append(carry[:0], buf[cut:total]...)
		if cut > 0 {
			c := chunk{data: buf[:cut], buf: buf, input: i, firstLine: line}
			line += int64(bytes.Count(c.data, []byte{'\n'}))
			chunks <- c
		} else {
			free <- buf
		}
		if eof {
			return nil
		}
	}
}

// process parses and aggregates one chunk of whole lines.
func (w *worker) process(rn *run, c chunk) {
	p := w.parsers[rn.formats[c.input]]
	if p == nil {
		p = rn.formats[c.input].NewParser()
		w.parsers[rn.formats[c.input]] = p
	}
	var r accesslog.Record
	data := c.data
	lineNo := c.firstLine - 1
	var lines int64
	opts := &rn.opts
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		lineNo++
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			continue
		}
		lines++
		if err := p.Parse(line, &r); err != nil {
			w.malformed[c.input]++
			if len(w.examples) < maxExamples {
				w.examples = append(w.examples, MalformedLine{
					File: rn.inputs[c.input].Name, Line: lineNo,
					Text: truncate(string(line), maxExampleLength), Reason: err.Error(),
				})
			}
			continue
		}
		if !opts.Since.IsZero() && r.Time.Before(opts.Since) || !opts.Until.IsZero() && !r.Time.Before(opts.Until) ||
			opts.Where != nil && !opts.Where.Match(&r, w.scratch) {
			w.filtered++
			continue
		}
		w.agg.observe(&r)
		if w.collector != nil {
			w.collector.ObserveShared(&r, &w.agg.shared)
		}
	}
	w.lines[c.input] += lines
	rn.lines.Add(lines)
}

func (rn *run) result(workers []*worker, start time.Time) *Result {
	res := &Result{opts: rn.opts, Inputs: slices.Clone(rn.inputs)}
	first := workers[0]
	for _, w := range workers {
		for i := range res.Inputs {
			res.Inputs[i].Lines += w.lines[i]
			res.Inputs[i].Malformed += w.malformed[i]
		}
		res.MalformedExamples = append(res.MalformedExamples, w.examples...)
		res.Filtered += w.filtered
		if w == first {
			continue
		}
		first.agg.merge(w.agg)
		first.collector.Merge(w.collector) // a no-op without detectors
	}
	slices.SortFunc(res.MalformedExamples, func(a, b MalformedLine) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return int(a.Line - b.Line)
	})
	if len(res.MalformedExamples) > maxExamples {
		res.MalformedExamples = res.MalformedExamples[:maxExamples]
	}
	for _, in := range res.Inputs {
		res.Lines += in.Lines
		res.Malformed += in.Malformed
		res.Bytes += in.Bytes
	}
	res.agg = first.agg
	res.collector = first.collector
	res.Elapsed = time.Since(start)
	return res
}

// checkUsable turns "nothing could be read" into an error that says why,
// instead of an empty report.
func (rn *run) checkUsable(res *Result) error {
	var reasons []string
	usable := false
	for _, in := range res.Inputs {
		if in.Error != "" {
			reasons = append(reasons, in.Name+": "+in.Error)
			continue
		}
		if in.Lines > 0 {
			usable = true
		}
	}
	if !usable && len(reasons) > 0 {
		if len(reasons) == 1 {
			return fmt.Errorf("%w: %s", ErrNoUsableInput, reasons[0])
		}
		return fmt.Errorf("%w:\n  %s", ErrNoUsableInput, strings.Join(reasons, "\n  "))
	}
	if res.Lines == 0 {
		return fmt.Errorf("%w: the input has no lines (empty file or stdin)", ErrNoUsableInput)
	}
	if res.Lines > 0 && res.Malformed*2 > res.Lines {
		ex := res.MalformedExamples[0]
		fmt.Fprintf(rn.opts.Log, "headroom: warning: %d of %d lines are malformed: is --format right? (first: %s line %d: %s)\n",
			res.Malformed, res.Lines, ex.File, ex.Line, ex.Reason)
	}
	return nil
}

package analyze

import (
	"fmt"
	"time"
)

// startProgress prints a progress line to opts.Progress (a terminal: the
// caller decides) until the returned function is called.
func (rn *run) startProgress(start time.Time) (stop func()) {
	out := rn.opts.Progress
	if out == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(out, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprint(out, "\r\033[K"+rn.progressLine(time.Since(start)))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func (rn *run) progressLine(elapsed time.Duration) string {
	read := rn.bytesRead.Load()
	lines := rn.lines.Load()
	rate := float64(lines) / elapsed.Seconds()
	s := fmt.Sprintf("reading %s", humanBytes(read))
	if rn.totalSize > 0 {
		frac := float64(read) / float64(rn.totalSize)
		s += fmt.Sprintf(" / %s  %3.0f%%", humanBytes(rn.totalSize), 100*frac)
		if frac > 0.01 {
			eta := time.Duration(float64(elapsed) * (1 - frac) / frac).Round(time.Second)
			s += fmt.Sprintf("  ETA %s", eta)
		}
	}
	return s + fmt.Sprintf("  %s lines  %s lines/s", humanCount(float64(lines)), humanCount(rate))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanCount(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

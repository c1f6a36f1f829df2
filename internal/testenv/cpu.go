package testenv

import (
	"runtime"
	"testing"
)

// CPUClock reads the CPU time of a benchmark's thread, so that a
// benchmark can report cpu-ns/op beside ns/op: on a machine shared with
// other work (2 cores, a load of 10 or more while this was written),
// ns/op counts the time the thread waited for a core, which drowns a
// 100 ns difference; the thread's own CPU time does not. Where the
// thread's CPU time cannot be read (not Linux), nothing is reported.
type CPUClock struct{ start int64 }

// StartCPU locks the calling goroutine to its thread (the benchmark's loop
// runs on it) and starts counting that thread's CPU time.
func StartCPU() CPUClock {
	runtime.LockOSThread()
	return CPUClock{start: threadCPU()}
}

// Report reports the thread's CPU time since StartCPU per b.N as
// cpu-ns/op, and unlocks the thread.
func (c CPUClock) Report(b *testing.B) {
	end := threadCPU()
	runtime.UnlockOSThread()
	if c.start > 0 && b.N > 0 {
		b.ReportMetric(float64(end-c.start)/float64(b.N), "cpu-ns/op")
	}
}

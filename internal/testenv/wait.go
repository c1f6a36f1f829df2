package testenv

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Buffer is a goroutine-safe bytes.Buffer for what servers and child
// processes write while a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// EventuallyTimeout bounds Eventually: far above anything a working system
// needs, so that a broken one fails the test instead of hanging it. It is a
// bound, not a timing assertion.
const EventuallyTimeout = 15 * time.Second

// Eventually polls cond until it holds, for a state another goroutine or
// process reaches, and fails the test (naming what) if it never does.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(EventuallyTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting (%s): %s", EventuallyTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Recv waits for a value from ch, failing the test instead of hanging it.
func Recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(EventuallyTimeout):
		t.Fatalf("gave up waiting (%s): %s", EventuallyTimeout, what)
		panic("unreachable")
	}
}

// SlowUpstream is an upstream whose every request takes worker time: it
// answers "ok\n" after delay, or after the request's ?d= duration when one
// is given, and stops early when the proxy cancels the request (as a real
// worker whose client went away would not: that is the point of the tests
// that use it, which measure what the proxy charges). With paths given, only
// those paths are slow.
func SlowUpstream(t testing.TB, delay time.Duration, paths ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := delay
		if q, err := time.ParseDuration(r.URL.Query().Get("d")); err == nil {
			d = q
		}
		slow := len(paths) == 0
		for _, p := range paths {
			slow = slow || r.URL.Path == p
		}
		if slow && d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "ok\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// SkipOrFail stops a test that cannot do its job here: it skips on a
// developer's machine and fails in CI, where everything a test needs is
// expected to be present, with the reason either way.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

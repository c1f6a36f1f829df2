//go:build linux

package evproxy

import (
	"testing"

	"github.com/headroom-dev/headroom/internal/proxytest"
)

// startDiff is a proxytest.StartProxy for the event loop (start's: two
// loops; what it hands off, every request with a body among them, is
// served by the fast path as in the guard).
func startDiff(t testing.TB, upstream, yaml string) string { return start(t, upstream, yaml, nil).addr }

// TestDifferential runs the hostile request corpus through the event loop
// (proxytest.Differential): each request is either refused or arrives at
// the upstream framed exactly as the proxy framed it.
func TestDifferential(t *testing.T) { proxytest.Differential(t, startDiff) }

// FuzzDifferential is TestDifferential over arbitrary bytes, pipelined
// requests included (proxytest.Fuzz).
func FuzzDifferential(f *testing.F) { proxytest.Fuzz(f, startDiff) }

// TestResponseFraming: the event loop re-frames what the upstream sends
// for the client as the fast path does (proxytest.ResponseFraming).
func TestResponseFraming(t *testing.T) { proxytest.ResponseFraming(t, startDiff) }

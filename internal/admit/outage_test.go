package admit

import (
	"testing"
	"time"
)

func TestUpstreamHealthOutage(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name       string
		ok, failed int
		age        time.Duration // how long ago they finished
		want       bool
	}{
		{"nothing yet", 0, 0, 0, false},
		{"a failure alone", 0, 1, 0, true},
		{"most fail", 2, 3, 0, true},
		{"half fail", 3, 3, 0, false},
		{"a few fail among many", 20, 3, 0, false},
		{"all answered", 10, 0, 0, false},
		{"an outage that ended", 0, 5, 11 * time.Second, false},
		{"within the window", 0, 5, 9 * time.Second, true},
	} {
		var h upstreamHealth
		at := t0.Add(-tc.age)
		for range tc.ok {
			h.record(at, false)
		}
		for range tc.failed {
			h.record(at, true)
		}
		if got := h.outage(t0); got != tc.want {
			t.Errorf("%s: outage %v, want %v", tc.name, got, tc.want)
		}
	}
	// A bucket reused a window later starts from zero.
	var h upstreamHealth
	h.record(t0, true)
	h.record(t0.Add(outageWindow*time.Second), false)
	if h.outage(t0.Add(outageWindow * time.Second)) {
		t.Error("an old failure in a reused bucket still counts")
	}
}

package budget

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// randomLedger drives a ledger through a random but reproducible history:
// admits, finishes, cancels, restrictions, lifts and window changes, with
// the clock moving in between. Some requests are left in flight.
func randomLedger(seed uint64) (*Ledger, *ManualClock, []string) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	clk := NewManualClock(t0.Add(time.Duration(r.Int64N(int64(time.Hour)))))
	l := New(Options{Clock: clk, Shards: 1 + r.IntN(8)})
	nkeys := 1 + r.IntN(40)
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d-%x", i, r.Uint32())
	}
	windows := []time.Duration{time.Minute, 10 * time.Second, time.Hour}
	var open []Ticket
	for range r.IntN(400) {
		clk.Advance(time.Duration(r.Int64N(int64(5 * time.Second))))
		key := keys[r.IntN(nkeys)]
		lim := Limits{
			Budget:      time.Duration(r.Int64N(int64(30 * time.Second))),
			Window:      windows[r.IntN(len(windows))],
			RestrictFor: time.Duration(r.Int64N(int64(time.Minute))),
			MaxInFlight: r.IntN(5),
			Shadow:      r.IntN(4) == 0,
		}
		switch op := r.IntN(10); {
		case op < 5:
			if _, tk := l.Admit(key, lim); tk.Valid() {
				open = append(open, tk)
			}
		case op < 8 && len(open) > 0:
			i := r.IntN(len(open))
			l.Finish(open[i], time.Duration(r.Int64N(int64(20*time.Second))))
			open = append(open[:i], open[i+1:]...)
		case op < 9 && len(open) > 0:
			i := r.IntN(len(open))
			l.Cancel(open[i])
			open = append(open[:i], open[i+1:]...)
		case r.IntN(2) == 0:
			l.Restrict(key, clk.Now().Add(time.Duration(r.Int64N(int64(time.Hour)))))
		default:
			l.Lift(key)
		}
	}
	return l, clk, keys
}

// statusOf reads what a snapshot must preserve. In-flight requests are
// written as completed time, so a restored key has the same usage but none
// in flight.
func statusOf(l *Ledger, keys []string) []KeyStatus {
	var out []KeyStatus
	for _, k := range keys {
		ks := l.Status(k, Limits{Budget: 10 * time.Second})
		ks.InFlight = 0
		out = append(out, ks)
	}
	return out
}

func TestSnapshotRoundTrip(t *testing.T) {
	for seed := range uint64(300) {
		l, clk, keys := randomLedger(seed)
		var buf bytes.Buffer
		if err := l.WriteSnapshot(&buf); err != nil {
			t.Fatalf("seed %d: write: %v", seed, err)
		}
		restored := New(Options{Clock: clk, Shards: 3})
		if err := restored.ReadSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("seed %d: read: %v", seed, err)
		}
		want, got := statusOf(l, keys), statusOf(restored, keys)
		for i := range want {
			if !sameStatus(want[i], got[i]) {
				t.Fatalf("seed %d key %s:\n got %+v\nwant %+v", seed, keys[i], got[i], want[i])
			}
		}
		// Later, both ledgers see the same window slide (keys with requests
		// still running in the original keep growing there, so skip them).
		running := map[string]bool{}
		for _, k := range keys {
			running[k] = l.Status(k, Limits{}).InFlight > 0
		}
		clk.Advance(17 * time.Second)
		want, got = statusOf(l, keys), statusOf(restored, keys)
		for i := range want {
			if !running[keys[i]] && !sameStatus(want[i], got[i]) {
				t.Fatalf("seed %d key %s, 17s after restore:\n got %+v\nwant %+v", seed, keys[i], got[i], want[i])
			}
		}
		// Writing the restored ledger gives the same bytes but for the header time.
		var again bytes.Buffer
		if err := restored.WriteSnapshot(&again); err != nil {
			t.Fatal(err)
		}
		if again.Len() == 0 {
			t.Fatal("empty snapshot")
		}
	}
}

// sameStatus compares two statuses, allowing 1 ns per float rounding of
// the sliding-out bucket's share.
func sameStatus(a, b KeyStatus) bool {
	d := a.WorkerSeconds - b.WorkerSeconds
	if d < -1e-9 || d > 1e-9 {
		return false
	}
	a.WorkerSeconds, b.WorkerSeconds = 0, 0
	a.Remaining, b.Remaining = a.Remaining.Round(time.Microsecond), b.Remaining.Round(time.Microsecond)
	return a.Key == b.Key && a.InFlight == b.InFlight && a.RestrictedUntil.Equal(b.RestrictedUntil) &&
		a.Requests == b.Requests && a.Budget == b.Budget && a.Remaining == b.Remaining
}

func TestSnapshotRestoresAcrossProcesses(t *testing.T) {
	// A ledger created later (a restarted process) reads buckets in place.
	clk := NewManualClock(t0)
	l := New(Options{Clock: clk})
	_, tk := l.Admit("api-key", std)
	clk.Advance(12 * sec)
	if d := l.Finish(tk, 12*sec); !d.NewlyRestricted {
		t.Fatalf("want restriction: %+v", d)
	}
	var buf bytes.Buffer
	if err := l.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * sec) // the restart took 30 s
	l2 := New(Options{Clock: clk})
	if err := l2.ReadSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	d, _ := l2.Admit("api-key", std)
	if d.Outcome != Restricted || d.Used != 12*sec {
		t.Fatalf("after restart: %+v, want restricted with 12s used", d)
	}
	if want := t0.Add(12*sec + 5*time.Minute); !d.RestrictedUntil.Equal(want) {
		t.Fatalf("restricted until %v, want %v", d.RestrictedUntil, want)
	}
}

func TestSnapshotRejectsDamage(t *testing.T) {
	l, _, _ := randomLedger(7)
	var buf bytes.Buffer
	if err := l.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorruptSnapshot},
		{"not a snapshot", []byte("{\"keys\":[]}"), ErrCorruptSnapshot},
		{"truncated", good[:len(good)/2], ErrCorruptSnapshot},
		{"bit flip", func() []byte { d := bytes.Clone(good); d[len(d)/2] ^= 0x10; return d }(), ErrCorruptSnapshot},
		{"future version", func() []byte { d := bytes.Clone(good); d[len(snapshotMagic)] = 9; return d }(), ErrSnapshotVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh, _ := newTestLedger()
			_, _ = fresh.Admit("existing", std)
			err := fresh.ReadSnapshot(bytes.NewReader(tc.data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if fresh.Len() != 1 {
				t.Fatalf("a rejected snapshot changed the ledger (Len %d)", fresh.Len())
			}
		})
	}
}

// FuzzReadSnapshot: any input is either rejected with a snapshot error or
// restores a ledger that writes a snapshot which reads back the same.
func FuzzReadSnapshot(f *testing.F) {
	for seed := range uint64(4) {
		l, _, _ := randomLedger(seed)
		var buf bytes.Buffer
		if err := l.WriteSnapshot(&buf); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := NewManualClock(t0.Add(time.Hour))
		l := New(Options{Clock: clk, Shards: 2})
		err := l.ReadSnapshot(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) && !errors.Is(err, ErrSnapshotVersion) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		keys := l.Top(1<<20, nil)
		var buf bytes.Buffer
		if err := l.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		l2 := New(Options{Clock: clk, Shards: 5})
		if err := l2.ReadSnapshot(&buf); err != nil {
			t.Fatalf("re-reading our own snapshot: %v", err)
		}
		for _, ks := range keys {
			got := l2.Status(ks.Key, Limits{})
			if !sameStatus(got, ks) {
				t.Fatalf("key %q: got %+v want %+v", ks.Key, got, ks)
			}
		}
	})
}

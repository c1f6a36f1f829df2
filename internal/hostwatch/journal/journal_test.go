package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const seedJournal = "../testdata/seed/journal.json"

func TestParseSeedJournal(t *testing.T) {
	f, err := os.Open(seedJournal)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Entry
	st, err := Parse(f, func(e Entry) error { got = append(got, e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Malformed != 0 || st.Entries != 20 {
		t.Fatalf("stats %+v, want 20 entries, 0 malformed", st)
	}
	kinds := map[Kind]int{}
	for _, e := range got {
		kinds[e.Kind]++
	}
	want := map[Kind]int{UnitStarting: 3, UnitStarted: 3, UnitStopped: 1, UnitResources: 2, UnitFailed: 1,
		OOMKill: 2, MemoryMessage: 2, Cron: 2, Other: 4}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%s: %d entries, want %d (all: %v)", k, kinds[k], n, kinds)
		}
	}
	first := got[2]
	if first.Unit != "apt-daily-upgrade.service" || first.Kind != UnitStarting ||
		!first.Time.Equal(time.Date(2025, 8, 28, 6, 20, 3, 112000000, time.UTC)) {
		t.Errorf("apt start entry: %+v", first)
	}
	var fw Entry
	for _, e := range got {
		if e.Kind == UnitResources && e.Unit == "fwupd.service" {
			fw = e
		}
	}
	if fw.CPU != 12310*time.Millisecond || fw.MemoryPeak != 162634137 {
		t.Errorf("fwupd resources: cpu %v mem %d", fw.CPU, fw.MemoryPeak)
	}
}

func TestParseEntry(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       Entry
		wantErr    string
	}{
		{
			name: "byte-array message and repeated field",
			line: `{"__REALTIME_TIMESTAMP":"1756362000000000","MESSAGE":[104,105,255],"SYSLOG_IDENTIFIER":["a","b"]}`,
			want: Entry{Time: time.UnixMicro(1756362000000000).UTC(), Message: "hi\xff", Ident: "a", Kind: Other, Priority: -1},
		},
		{
			name: "null field (too large for journalctl to show)",
			line: `{"__REALTIME_TIMESTAMP":"1756362000000000","MESSAGE":null,"PRIORITY":"3"}`,
			want: Entry{Time: time.UnixMicro(1756362000000000).UTC(), Kind: Other, Priority: 3},
		},
		{
			name: "resources only in text (older systemd)",
			line: `{"__REALTIME_TIMESTAMP":"1756362000000000","MESSAGE_ID":"AE8F7B866B0347B9AF31FE1C80B127C0","UNIT":"x.service","MESSAGE":"x.service: Consumed 1min 2.500s CPU time, 1.5G memory peak."}`,
			want: Entry{Time: time.UnixMicro(1756362000000000).UTC(), Kind: UnitResources, Unit: "x.service", Priority: -1,
				MessageID: MsgUnitResources, Message: "x.service: Consumed 1min 2.500s CPU time, 1.5G memory peak.",
				CPU: 62500 * time.Millisecond, MemoryPeak: 3 << 29},
		},
		{
			name: "systemd text without message id",
			line: `{"__REALTIME_TIMESTAMP":"1756362000000000","SYSLOG_IDENTIFIER":"systemd","_SYSTEMD_UNIT":"init.scope","MESSAGE":"Starting man-db.service - Daily man-db regeneration..."}`,
			want: Entry{Time: time.UnixMicro(1756362000000000).UTC(), Kind: UnitStarting, Unit: "init.scope", Ident: "systemd", Priority: -1,
				Message: "Starting man-db.service - Daily man-db regeneration..."},
		},
		{name: "no timestamp", line: `{"MESSAGE":"x"}`, wantErr: "__REALTIME_TIMESTAMP"},
		{name: "not json", line: `-- Boot 5e1b --`, wantErr: "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEntry([]byte(tc.line))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseSkipsMalformed(t *testing.T) {
	in := "not json\n\n" + `{"__REALTIME_TIMESTAMP":"1","MESSAGE":"ok"}` + "\n{\"MESSAGE\":1}\n"
	var n int
	st, err := Parse(strings.NewReader(in), func(Entry) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || st.Malformed != 2 || !strings.HasPrefix(st.FirstMalformed, "line 1:") {
		t.Fatalf("n=%d stats=%+v", n, st)
	}
}

func TestParseTimespan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"412ms": 412 * time.Millisecond, "2min 41.220s": 161220 * time.Millisecond,
		"1h 3min": 63 * time.Minute, "1d 2h": 26 * time.Hour, "garbage": 0, "5xs": 0,
	} {
		if got := parseTimespan(in); got != want {
			t.Errorf("parseTimespan(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseUnits(t *testing.T) {
	in := "● apt-daily-upgrade.service loaded failed failed Daily apt upgrade and clean activities\n" +
		"packagekit.service        loaded failed failed PackageKit Daemon\n\nshort line\n"
	units, err := ParseUnits(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 2 || units[0].Name != "apt-daily-upgrade.service" || units[0].Description != "Daily apt upgrade and clean activities" || units[1].Sub != "failed" {
		t.Fatalf("units %+v", units)
	}
}

func TestReaderMissingBinary(t *testing.T) {
	_, err := Reader{Binary: filepath.Join(t.TempDir(), "journalctl")}.Entries(context.Background(), time.Now().Add(-time.Hour), time.Now(), func(Entry) error { return nil })
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "--journal FILE") {
		t.Fatalf("err = %v, want ErrUnavailable naming --journal", err)
	}
}

// TestReaderPermissionDenied runs a stand-in journalctl that behaves like
// the real one without read permission: entries up to the failure, then a
// non-zero exit and a complaint on stderr.
func TestReaderPermissionDenied(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "journalctl")
	abs, _ := filepath.Abs(seedJournal)
	script := "#!/bin/sh\nhead -n 3 '" + abs + "'\necho 'No journal files were opened due to insufficient permissions.' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var n int
	res, err := Reader{Binary: bin}.Entries(context.Background(), time.Now().Add(-time.Hour), time.Now(), func(Entry) error { n++; return nil })
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "systemd-journal") {
		t.Fatalf("err = %v, want ErrUnavailable with the group hint", err)
	}
	if n != 3 || res.Entries != 3 {
		t.Fatalf("got %d entries before the failure, want 3", n)
	}
}

// TestReaderThisMachine runs the real journalctl if there is one. In a
// container without a journal it returns nothing, which must not be an
// error: the explainer reports an empty journal, not a crash.
func TestReaderThisMachine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Reader{}.Entries(ctx, time.Now().Add(-10*time.Minute), time.Now(), func(e Entry) error {
		if e.Time.IsZero() {
			t.Errorf("entry without time: %+v", e)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v: want success or ErrUnavailable", err)
	}
	t.Logf("journal on this machine: %+v, err %v", res, err)
}

func FuzzParseEntry(f *testing.F) {
	b, _ := os.ReadFile(seedJournal)
	for _, l := range bytes.Split(b, []byte("\n"))[:6] {
		f.Add(l)
	}
	f.Add([]byte(`{"__REALTIME_TIMESTAMP":"1","MESSAGE":[1,2,300],"MESSAGE_ID":"ae8f7b866b0347b9af31fe1c80b127c0"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseEntry(line)
		if err != nil {
			return
		}
		if e.Kind == "" {
			t.Fatalf("parsed entry without a kind: %+v", e)
		}
	})
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile(seedJournal)
	f.Add(b[:min(len(b), 2000)])
	f.Add([]byte("x\n{}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var n int
		st, err := Parse(bytes.NewReader(in), func(Entry) error { n++; return nil })
		if err != nil {
			return
		}
		if st.Entries != n || st.Entries+st.Malformed != st.Lines {
			t.Fatalf("stats %+v disagree with %d callbacks", st, n)
		}
	})
}

func FuzzParseConsumed(f *testing.F) {
	f.Add("fwupd.service: Consumed 12.310s CPU time, 155.1M memory peak.")
	f.Add("Consumed 1d 2h 3min 4s 5ms 6us CPU time, 9999999999999999T memory peak")
	f.Fuzz(func(t *testing.T, msg string) {
		cpu, _ := parseConsumed(msg)
		if cpu < 0 {
			t.Fatalf("negative CPU %v from %q", cpu, msg)
		}
	})
}

func FuzzParseUnits(f *testing.F) {
	f.Add("● a.service loaded failed failed A thing\n")
	f.Fuzz(func(t *testing.T, in string) {
		units, err := ParseUnits(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, u := range units {
			if u.Name == "" || u.Sub == "" {
				t.Fatalf("unit with empty fields: %+v", u)
			}
		}
	})
}

package hostwatch

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-dev/headroom/internal/testenv"

	"github.com/headroom-dev/headroom/internal/hostwatch/journal"
)

const seedJournalPath = "testdata/seed/journal.json"

func seedExplain(t *testing.T, j Journal) (*Report, string) {
	t.Helper()
	dir := t.TempDir()
	root := recordSeed(t, dir)
	rep, err := Explain(context.Background(), ExplainOptions{
		Data:     dir,
		Since:    time.Date(2025, 8, 28, 6, 0, 0, 0, time.UTC),
		Until:    time.Date(2025, 8, 28, 6, 50, 0, 0, time.UTC),
		Journal:  j,
		ProcRoot: root,
		Now:      func() time.Time { return time.Date(2025, 8, 28, 6, 45, 0, 0, time.UTC) },
		Location: time.UTC,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep, dir
}

// TestExplainSeed is the acceptance test of issue 6: on the recorded seed,
// explain must name the daily apt upgrade as the cause.
func TestExplainSeed(t *testing.T) {
	rep, dir := seedExplain(t, FileJournal{Path: seedJournalPath})
	if len(rep.Episodes) != 1 {
		t.Fatalf("%d episodes, want 1: %+v", len(rep.Episodes), rep.Episodes)
	}
	ep := rep.Episodes[0]
	if ep.Cause == nil || ep.Cause.Unit != "apt-daily-upgrade.service" || ep.Cause.Trigger != "apt-daily-upgrade.timer" {
		t.Fatalf("cause %+v, want apt-daily-upgrade.service by its timer", ep.Cause)
	}
	var with []string
	for _, u := range ep.Cause.With {
		with = append(with, u.Unit)
	}
	if strings.Join(with, ",") != "packagekit.service,fwupd.service" {
		t.Errorf("units started with it: %v", with)
	}
	for _, want := range []string{"06:20 apt-daily-upgrade.service started", "packagekit and fwupd +", "no swap", "memory pressure 62%", "CPU ", "in reclaim", "OOM killer: killed 1840 (packagekitd)", "host went down"} {
		if !strings.Contains(ep.Summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, ep.Summary)
		}
	}
	kinds := map[string]bool{}
	for _, s := range ep.Signals {
		kinds[s.Kind] = true
	}
	for _, k := range []string{SigCPU, SigMemory, SigMemoryPressure, SigNetwork, SigSteal} {
		if !kinds[k] {
			t.Errorf("no %s signal in %+v", k, ep.Signals)
		}
	}

	var txt bytes.Buffer
	if err := WriteExplain(&txt, rep, time.UTC); err != nil {
		t.Fatal(err)
	}
	// The recording's path is a temporary directory: name it stably.
	out := strings.ReplaceAll(txt.String(), dir, "testdata/seed/recording")
	testenv.Golden(t, "testdata/seed/explain.golden.txt", []byte(out))

	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "testdata/seed/explain.golden.json", bytes.ReplaceAll(js.Bytes(), []byte(dir), []byte("testdata/seed/recording")))
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("--json output is not JSON: %v", err)
	}

	if testenv.Update() {
		// Keep a copy of the recording for the CLI example in the report.
		rec := filepath.Join("testdata", "seed", "recording")
		os.RemoveAll(rec)
		if err := os.MkdirAll(rec, 0o755); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".hrts") {
				b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
				os.WriteFile(filepath.Join(rec, e.Name()), b, 0o644)
			}
		}
	}
}

// TestExplainSeedWithoutJournal: the journal is gone (no journalctl, no
// permission). The samples alone must still find the episode and the
// processes, and say the journal is missing.
func TestExplainSeedWithoutJournal(t *testing.T) {
	rep, _ := seedExplain(t, journal.Reader{Binary: filepath.Join(t.TempDir(), "no-journalctl")})
	if len(rep.Episodes) != 1 {
		t.Fatalf("%d episodes", len(rep.Episodes))
	}
	if rep.Journal.Error == "" || !strings.Contains(strings.Join(rep.Notes, "\n"), "timeline has samples only") {
		t.Errorf("missing journal not reported: %+v %v", rep.Journal, rep.Notes)
	}
	ep := rep.Episodes[0]
	if ep.Cause != nil {
		t.Errorf("cause %+v without a journal", ep.Cause)
	}
	var comms []string
	for _, p := range ep.Processes {
		comms = append(comms, p.Comm)
	}
	if got := strings.Join(comms, ","); !strings.Contains(got, "packagekitd") || !strings.Contains(got, "fwupd") || !strings.Contains(got, "unattended-upgr") {
		t.Errorf("processes %s", got)
	}
}

// TestExplainJournalOnly: no recording at all, only the journal. The OOM
// kill and memory messages make an episode, and the apt upgrade is still
// named from the unit starts before it.
func TestExplainJournalOnly(t *testing.T) {
	rep, err := Explain(context.Background(), ExplainOptions{
		Data:     filepath.Join(t.TempDir(), "none"),
		Since:    time.Date(2025, 8, 28, 6, 0, 0, 0, time.UTC),
		Until:    time.Date(2025, 8, 28, 6, 50, 0, 0, time.UTC),
		Journal:  FileJournal{Path: seedJournalPath},
		ProcRoot: filepath.Join(t.TempDir(), "no-proc"),
		Location: time.UTC,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Episodes) != 1 || rep.Episodes[0].Cause == nil || rep.Episodes[0].Cause.Unit != "apt-daily-upgrade.service" {
		t.Fatalf("episodes %+v", rep.Episodes)
	}
	notes := strings.Join(rep.Notes, "\n")
	if !strings.Contains(notes, "no live /proc") {
		t.Errorf("notes lack the missing /proc: %s", notes)
	}
}

func TestExplainBadWindow(t *testing.T) {
	at := time.Date(2025, 8, 28, 6, 0, 0, 0, time.UTC)
	_, err := Explain(context.Background(), ExplainOptions{Since: at, Until: at})
	if err == nil || !strings.Contains(err.Error(), "empty window") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzDecodeSample(f *testing.F) {
	p, _ := EncodeSample(nil, Sample{Time: time.Unix(1756362000, 0), Mem: Memory{Total: 1 << 30}, Procs: []Proc{{PID: 1, Comm: "systemd"}}})
	f.Add(p)
	f.Add([]byte{1, 0x28, 0xb5, 0x2f, 0xfd})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSample(b)
		if err != nil {
			return
		}
		if _, err := EncodeSample(nil, s); err != nil {
			t.Fatalf("decoded sample does not re-encode: %v", err)
		}
	})
}

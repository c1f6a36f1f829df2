package demo

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDemoStory runs the whole demo, compressed to 8 s, and checks the
// story by counts and states (never by how fast this machine is): the key
// was restricted, the UI kept being served, and the requests the client
// abandoned were charged the upstream's real time.
func TestDemoStory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 15 s")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Duration: 8 * time.Second, Out: &out, AccessLog: t.TempDir() + "/access.log"})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	res.WriteSummary(&out)
	t.Log("\n" + out.String())

	if !res.Restricted {
		t.Fatal("the API key was never restricted")
	}
	if res.UsedAtRestrict < res.Opts.Budget.Seconds() {
		t.Errorf("restricted at %.1f worker-seconds, under its %s budget", res.UsedAtRestrict, res.Opts.Budget)
	}
	// The UI kept succeeding, before and after.
	var uiOK, uiAfter int
	for _, s := range res.UI {
		if s.Err == "stopped" { // still waiting when the clients stopped
			continue
		}
		if s.Status != http.StatusOK {
			t.Errorf("UI request %s failed: status %d %s", s.ID, s.Status, s.Err)
		}
		uiOK++
		if s.Start.Sub(res.Start) > res.RestrictedAt {
			uiAfter++
		}
	}
	if uiOK < 10 || uiAfter < 3 {
		t.Errorf("UI made %d requests (%d after the restriction); want a steady stream", uiOK, uiAfter)
	}
	// The exporter abandoned requests, then was refused.
	a := res.apiStats()
	if a.abandoned == 0 || a.refused == 0 {
		t.Fatalf("exporter: %+v; want abandoned requests and then 429s", a)
	}
	if res.UpstreamPending != 0 {
		t.Fatalf("%d requests still running upstream after the drain", res.UpstreamPending)
	}
	// The access log says both truths for every abandoned request: 499 at
	// the client's time, with the upstream's status and real time, which
	// is at least twice the client's (work >= 10 s vs a 5 s timeout).
	lg := res.Log
	if lg.Malformed != 0 {
		t.Errorf("%d malformed access log lines", lg.Malformed)
	}
	if lg.KeyAborted != a.abandoned {
		t.Errorf("access log has %d aborted requests for the key, the client abandoned %d", lg.KeyAborted, a.abandoned)
	}
	// Issue 17: the summary said "4 abandoned" where the analyzer, reading
	// the same log, counted "5 of status 499" (a UI page cut off at the
	// stop). Every 499 in the log is accounted for in the summary.
	var uiStopped int
	for _, s := range res.UI {
		if s.Err == "stopped" {
			uiStopped++
		}
	}
	if lg.UIAborted > uiStopped {
		t.Errorf("access log has %d UI lines with 499, only %d UI pages were cut off at the stop", lg.UIAborted, uiStopped)
	}
	if n := lg.KeyAborted + lg.UIAborted; !strings.Contains(out.String(), fmt.Sprintf("%d with status 499 (the client gave up): the exporter's %d", n, lg.KeyAborted)) {
		t.Errorf("the summary does not account for the log's %d lines with status 499", n)
	}
	if lg.AbortedAnswered != lg.KeyAborted {
		t.Errorf("%d of %d aborted requests lack the upstream's status", lg.KeyAborted-lg.AbortedAnswered, lg.KeyAborted)
	}
	if lg.AbortedUpstream < 3*lg.AbortedClient/2 {
		t.Errorf("aborted requests charged %s of upstream time for %s of client time; want the real (longer) time",
			lg.AbortedUpstream, lg.AbortedClient)
	}
	// What headroom charged matches what the upstream spent (its work plus
	// the wait for a worker, which the guard cannot tell apart), within 10%.
	real := a.worked + a.backlog
	if diff := lg.AbortedUpstream - real; diff < -real/10 || diff > real/10 {
		t.Errorf("charged %s for abandoned requests, the upstream spent %s", lg.AbortedUpstream, real)
	}
	if lg.KeyRefused != a.refused {
		t.Errorf("access log has %d refusals, the client saw %d", lg.KeyRefused, a.refused)
	}
	for _, want := range []string{"restricted", "UI latency", "headroom logs analyze --format headroom " + res.AccessLog, res.KeyFP} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "nrak-demo-") {
		t.Error("the raw API key appears in the output")
	}
}

func TestOptionsScaleAndValidate(t *testing.T) {
	o, scale := Options{Duration: 15 * time.Second}.withDefaults()
	if scale != 0.5 || o.Budget != 10*time.Second || o.ClientTimeout != 2500*time.Millisecond || o.APIMaxWork != 15*time.Second {
		t.Fatalf("scale %.2f: %+v", scale, o)
	}
	o, scale = Options{Duration: time.Minute}.withDefaults()
	if scale != 1 || o.Budget != 20*time.Second {
		t.Fatalf("longer runs must not stretch the story: scale %.2f budget %s", scale, o.Budget)
	}
	for _, bad := range []Options{{Duration: time.Second}, {Workers: -1}, {APIConcurrency: 1000}} {
		o, _ := bad.withDefaults()
		if err := o.validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

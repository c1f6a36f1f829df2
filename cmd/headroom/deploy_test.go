package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/headroom-dev/headroom/internal/guard"
	"github.com/headroom-dev/headroom/internal/guard/config"
	"github.com/headroom-dev/headroom/internal/sidecar"
	"github.com/headroom-dev/headroom/internal/store"
	"github.com/headroom-dev/headroom/internal/testenv"
)

const (
	alertsFile     = "../../deploy/prometheus/alerts.yml"
	alertTestsFile = "../../deploy/prometheus/alerts_test.yml"
	dashboardFile  = "../../deploy/grafana/headroom.json"
)

// TestAlertRules checks deploy/prometheus/alerts.yml with Prometheus' own
// promtool: the rules parse, and its unit tests (alerts_test.yml) see each
// alert fire on the series that should raise it.
func TestAlertRules(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool")
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertTestsFile}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// exportedMetrics is every metric family a guard serves at /metrics: the
// proxy's and the sidecar's registry (the Go and process collectors and
// build info included) and the Redis fleet store's collectors.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	cfg, err := config.Parse([]byte("upstream: http://127.0.0.1:1\nkeys: {secret: deploy-test-secret-0123}\n" +
		"pools:\n  - name: api\n    path_prefixes: [/api/]\n    max_concurrent: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.New(guard.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := sidecar.New(sidecar.Options{Core: g.Core()}); err != nil {
		t.Fatal(err)
	}
	// Constructing the store dials nothing; its collectors are what a
	// guard with --store redis://… adds to the same registry.
	rs, err := store.NewRedis(store.RedisOptions{URL: "redis://127.0.0.1:1/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	reg := g.Core().Registry()
	if err := reg.Register(rs); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	// Vectors with no child yet are not gathered; describe them too.
	ch := make(chan *prometheus.Desc, 256)
	go func() { reg.Describe(ch); close(ch) }()
	for d := range ch {
		if m := regexp.MustCompile(`fqName: "([a-z0-9_:]+)"`).FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

var metricRef = regexp.MustCompile(`\b(?:headroom|go|process)_[a-z0-9_]+`)

// checkMetricRefs fails for every metric expr names that the guard does not
// export (a histogram's _bucket, _sum and _count are its own).
func checkMetricRefs(t *testing.T, where, expr string, exported map[string]bool) int {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	for _, name := range refs {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && exported[b] {
				base = b
			}
		}
		if !exported[base] {
			t.Errorf("%s uses %s, which the guard does not export", where, name)
		}
	}
	return len(refs)
}

// TestAlertRulesUseExportedMetrics: every metric an alert reads is one the
// guard serves, so no rule is silently never true.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if checkMetricRefs(t, "alert "+r.Alert, r.Expr, exported) == 0 {
				t.Errorf("alert %s reads no headroom metric: %s", r.Alert, r.Expr)
			}
		}
	}
	// The four the operator surface promises.
	for _, a := range []string{"HeadroomPoolAtCapacity", "HeadroomRestrictionsRising", "HeadroomStoreDegraded", "HeadroomAbortAccountingGap"} {
		if !alerts[a] {
			t.Errorf("alerts.yml has no %s", a)
		}
	}
}

// dashboard is the part of Grafana's dashboard model (its dashboard kind
// schema, kinds/dashboard/dashboard_kind.cue, schemaVersion 36 and later)
// that this test checks.
type dashboard struct {
	UID           *string `json:"uid"`
	Title         *string `json:"title"`
	SchemaVersion *int    `json:"schemaVersion"`
	Editable      *bool   `json:"editable"`
	GraphTooltip  *int    `json:"graphTooltip"`
	Timezone      *string `json:"timezone"`
	Refresh       any     `json:"refresh"`
	Time          *struct{ From, To string }
	Panels        []dashPanel `json:"panels"`
	Templating    *struct {
		List []struct {
			Name       string           `json:"name"`
			Type       string           `json:"type"`
			Query      any              `json:"query"`
			Datasource *json.RawMessage `json:"datasource"`
			Hide       *int             `json:"hide"`
		} `json:"list"`
	} `json:"templating"`
}

type dashPanel struct {
	ID         *int                       `json:"id"`
	Type       string                     `json:"type"`
	Title      string                     `json:"title"`
	GridPos    *struct{ H, W, X, Y *int } `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

// TestDashboard checks deploy/grafana/headroom.json against Grafana's
// dashboard schema as far as it can be checked offline (the required
// fields and their types and ranges, a datasource variable that every
// panel uses), and that every panel's queries read metrics the guard
// exports, covering what the admin page shows plus latency and queue
// depth per pool.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("not a dashboard: %v", err)
	}
	switch {
	case d.UID == nil || len(*d.UID) < 8 || len(*d.UID) > 40 || !regexp.MustCompile(`^[a-zA-Z0-9_-]+$`).MatchString(*d.UID):
		t.Errorf("uid %v: want 8-40 of a-z A-Z 0-9 _ -", d.UID)
	case d.Title == nil || *d.Title == "":
		t.Error("no title")
	case d.SchemaVersion == nil || *d.SchemaVersion < 36 || *d.SchemaVersion > 65535:
		t.Errorf("schemaVersion %v: want a uint16 of 36 or more", d.SchemaVersion)
	case d.Editable == nil:
		t.Error("editable is required")
	case d.GraphTooltip == nil || *d.GraphTooltip < 0 || *d.GraphTooltip > 2:
		t.Errorf("graphTooltip %v: want 0, 1 or 2", d.GraphTooltip)
	case d.Time == nil || d.Time.From == "" || d.Time.To == "":
		t.Error("time.from and time.to are required")
	}
	if s, ok := d.Refresh.(string); d.Refresh != nil && !ok && d.Refresh != false || ok && !regexp.MustCompile(`^[0-9]+[smhd]$`).MatchString(s) {
		t.Errorf("refresh %v: want an interval string or false", d.Refresh)
	}

	// The datasource variable, and every panel and variable going through it.
	dsVar := ""
	if d.Templating == nil {
		t.Fatal("no templating.list: the dashboard needs a datasource variable")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		if v.Name == "" || !map[string]bool{"query": true, "adhoc": true, "constant": true, "datasource": true, "interval": true, "textbox": true, "custom": true, "system": true}[v.Type] {
			t.Errorf("variable %q of type %q: want a name and a known type", v.Name, v.Type)
		}
		if v.Hide != nil && (*v.Hide < 0 || *v.Hide > 2) {
			t.Errorf("variable %s: hide %d", v.Name, *v.Hide)
		}
		vars[v.Name] = true
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		t.Fatal("no datasource variable of type prometheus")
	}
	if !vars["instance"] {
		t.Error("no instance variable to pick the guards")
	}

	exported := exportedMetrics(t)
	ids := map[int]bool{}
	var all []string
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			where := "panel " + strings.TrimSpace(p.Title)
			switch {
			case p.ID == nil || ids[*p.ID]:
				t.Errorf("%s: id missing or not unique", where)
			case p.Type == "":
				t.Errorf("%s: no type", where)
			case p.GridPos == nil || p.GridPos.H == nil || p.GridPos.W == nil || p.GridPos.X == nil || p.GridPos.Y == nil:
				t.Errorf("%s: gridPos needs h, w, x, y", where)
			case *p.GridPos.H <= 0 || *p.GridPos.W <= 0 || *p.GridPos.W > 24 || *p.GridPos.X < 0 || *p.GridPos.X >= 24 || *p.GridPos.X+*p.GridPos.W > 24 || *p.GridPos.Y < 0:
				t.Errorf("%s: gridPos %d,%d %dx%d is off the 24-column grid", where, *p.GridPos.X, *p.GridPos.Y, *p.GridPos.W, *p.GridPos.H)
			}
			if p.ID != nil {
				ids[*p.ID] = true
			}
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${"+dsVar+"}" {
				t.Errorf("%s: datasource %+v, want the ${%s} variable", where, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if q.RefID == "" || refs[q.RefID] {
					t.Errorf("%s: refId %q missing or repeated", where, q.RefID)
				}
				refs[q.RefID] = true
				if checkMetricRefs(t, where, q.Expr, exported) == 0 {
					t.Errorf("%s: query reads no metric: %q", where, q.Expr)
				}
				if !strings.Contains(q.Expr, `instance=~"$instance"`) {
					t.Errorf("%s: query ignores the instance variable: %q", where, q.Expr)
				}
				all = append(all, q.Expr)
			}
		}
	}
	walk(d.Panels)

	// What the page shows, and latency and queue depth per pool.
	joined := strings.Join(all, "\n")
	for _, want := range []string{
		"headroom_in_flight", "headroom_pool_max_concurrent", "headroom_queue_depth",
		"headroom_upstream_duration_seconds_bucket", "headroom_worker_seconds_total",
		`outcome=~"restricted|concurrency_limited"`, `outcome=~"client_abort|aborted_in_queue|body_incomplete"`,
		"headroom_restrictions_total", "headroom_store_up", "headroom_sidecar_tickets_expired_total",
		`outcome="client_abort"`, "headroom_build_info", "process_resident_memory_bytes",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
	var missing []string
	for _, m := range []string{"sum by (pool)", "histogram_quantile"} {
		if !strings.Contains(joined, m) {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no query uses %v", missing)
	}
}

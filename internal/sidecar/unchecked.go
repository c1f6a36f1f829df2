package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/headroom-dev/headroom/internal/admit"
	"github.com/headroom-dev/headroom/internal/budget"
)

// The unchecked list (issue 13, `headroom nginx-config --map-dir`): nginx
// answers the checks of callers the sidecar listed as far from their
// budget itself, from a map the sidecar writes, so their requests cost
// nginx no round trip to the sidecar at all. The allow cache (--cache)
// saves the round trip too, but every cached answer still costs nginx a
// cache file's open, read and close; the map costs a hash lookup.
//
// What is exact and what is not: every request's log line still charges
// its real upstream time, so usage is as exact as before; what a listed
// caller loses is in-flight charging (its requests are seen when their
// lines come) and the per-request decision. The list is rewritten every
// interval: a caller is listed only while it has at least half of its
// budget left and, at its recent rate, cannot spend what is left within
// several reaction times (the interval, how late a log line may come, and
// nginx's reload); it is taken off as soon as either stops holding. A
// caller near its budget, restricted, in shadow mode or with a
// concurrency cap is never listed, so every one of its requests is asked
// about and refused within one request of crossing its budget.
//
// Only callers of pools whose requests are short are listed (all of the
// pool's requests in the last minute or two within MaxRequest): a listed
// caller's requests are seen only when they end, so a pool of slow
// requests would leave the sidecar blind for as long as they run, and
// there the check's round trip is small beside the request anyway. The
// first slow request's line takes the pool's callers off the list.

// Tunables of the list.
const (
	// listAddLeft and listKeepLeft: the share of its budget a caller must
	// have left to be listed, and to stay listed (apart, so a caller near
	// the line does not make nginx reload every interval).
	listAddLeft  = 0.6
	listKeepLeft = 0.5
	// listAddReactions and listKeepReactions: how many reaction times
	// (UncheckedOptions.reaction) the rest of its budget must last at its
	// recent rate.
	listAddReactions  = 4
	listKeepReactions = 2
	// listMinRequests is how many requests of a caller the window must
	// hold before it is listed: its rate is not known before.
	listMinRequests = 10
	// reloadAllowance is how long nginx takes to load a new map and start
	// workers with it (measured: tens of milliseconds; this is the bound
	// the reaction time assumes).
	reloadAllowance = time.Second
	// maxIdentity bounds a listed caller's identity: nginx's map keeps its
	// keys in hash buckets of map_hash_bucket_size (512 in the snippet),
	// with a pointer and a length beside each.
	maxIdentity = 480
)

// UncheckedOptions configures the unchecked list (Options.Unchecked).
type UncheckedOptions struct {
	// Dir is where the map files are written (MapKeysFile, MapPoolsFile),
	// the directory nginx-config's --map-dir names. Required.
	Dir string
	// Interval is how often the list is reviewed; 0: one second.
	Interval time.Duration
	// Max bounds the callers listed; 0: 100,000.
	Max int
	// MaxRequest is the longest upstream time a pool's requests may have
	// taken, in the last minute or two, for its callers to be listed; 0:
	// one second.
	MaxRequest time.Duration
	// Reload makes nginx load the rewritten files (ReloadNginx). Required.
	Reload func() error
}

// unchecked is the list's state.
type unchecked struct {
	o UncheckedOptions

	mu   sync.Mutex
	seen map[string]listedCaller // by identity: callers whose check could let them be listed

	// The reviewer's own (one goroutine: Run's, or a test's): listed is what
	// the files hold; loaded is what nginx last loaded (nil while the files
	// and nginx agree). A caller in either may send lines without checks.
	listed, loaded map[string]listedCaller
	reloadDue      bool

	// recent is, per pool name, the longest upstream time of its requests
	// in the current and the previous minute (*recentMax), rotated by the
	// review.
	recent  sync.Map
	rotated time.Time
}

// recentMax is the longest upstream time of a pool's requests in the
// current minute and the one before, in ns.
type recentMax struct{ cur, prev atomic.Int64 }

// noteDuration keeps d as pool's recent longest request if it is.
func (u *unchecked) noteDuration(pool string, d time.Duration) {
	v, ok := u.recent.Load(pool)
	if !ok {
		v, _ = u.recent.LoadOrStore(strings.Clone(pool), new(recentMax))
	}
	m := v.(*recentMax)
	for {
		cur := m.cur.Load()
		if int64(d) <= cur || m.cur.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// longest is pool's longest request in the last minute or two, and
// whether any request of it was seen then.
func (u *unchecked) longest(pool string) (time.Duration, bool) {
	v, ok := u.recent.Load(pool)
	if !ok {
		return 0, false
	}
	m := v.(*recentMax)
	d := max(m.cur.Load(), m.prev.Load())
	return time.Duration(d), d > 0
}

// rotate starts a new minute of recent maxima.
func (u *unchecked) rotate(now time.Time) {
	if now.Sub(u.rotated) < time.Minute {
		return
	}
	u.rotated = now
	u.recent.Range(func(_, v any) bool {
		m := v.(*recentMax)
		m.prev.Store(m.cur.Swap(0))
		return true
	})
}

// listedCaller is a caller the list may hold: the key and pool its check
// found, and when it was last checked.
type listedCaller struct {
	key, pool string
	seen      time.Time
}

func newUnchecked(o UncheckedOptions) (*unchecked, error) {
	if o.Dir == "" || o.Reload == nil {
		return nil, errors.New("sidecar: the unchecked list needs a directory and a way to reload nginx")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Max <= 0 {
		o.Max = 100_000
	}
	if o.MaxRequest <= 0 {
		o.MaxRequest = time.Second
	}
	return &unchecked{o: o, seen: map[string]listedCaller{}, listed: map[string]listedCaller{}}, nil
}

// reaction is how long a change of the list takes to reach nginx and a
// listed caller's usage to reach the sidecar: the review interval, how
// late a log line may come, and nginx's reload.
func (s *Sidecar) reaction() time.Duration {
	return s.unchecked.o.Interval + s.lineDelay + reloadAllowance
}

// callerIdentity is the caller of a check as nginx's map sees it
// (MapIdentity), or false when the map could not hold it exactly: a
// repeated key field (nginx's variable joins the values), a byte nginx's
// configuration syntax would need escaped, or too long.
func callerIdentity(h admit.Header) (string, bool) {
	if len(h.Values("X-Api-Key")) > 1 || len(h.Values("Authorization")) > 1 {
		return "", false
	}
	client, host := h.Get(hdrClient), h.Get(hdrHost)
	if client == "" || host == "" {
		return "", false
	}
	id := h.Get("X-Api-Key") + "|" + h.Get("Authorization") + "|" + client + "|" + host
	if len(id) > maxIdentity || !mapSafe(id) || id[0] == '~' || id[0] == '\\' {
		// A leading ~ would make nginx read the entry as a regular
		// expression, a leading \ is dropped.
		return "", false
	}
	return id, true
}

// mapSafe reports whether s can stand in double quotes in an nginx map
// file as it is: printable ASCII without quotes, backslashes, $ (no
// variables in map keys, but no doubt either) or the characters that end
// a directive.
func mapSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || strings.IndexByte("\"'\\$;{}#", c) >= 0 {
			return false
		}
	}
	return true
}

// noteCaller remembers an allowed, covered check's caller as one the list
// may hold.
func (s *Sidecar) noteCaller(h admit.Header, a *admit.Admission) {
	if a.Limits.Shadow || a.Limits.MaxInFlight > 0 || !mapSafe(a.Pool.Name()) {
		return
	}
	id, ok := callerIdentity(h)
	if !ok {
		return
	}
	u := s.unchecked
	u.mu.Lock()
	defer u.mu.Unlock()
	if c, ok := u.seen[id]; ok && c.key == a.Key && c.pool == a.Pool.Name() {
		c.seen = a.Start
		u.seen[id] = c
		return
	}
	if len(u.seen) >= 2*u.o.Max {
		return // reviewed and pruned every interval
	}
	// Clones: the header and key may alias a read buffer.
	u.seen[strings.Clone(id)] = listedCaller{key: strings.Clone(a.Key), pool: strings.Clone(a.Pool.Name()), seen: a.Start}
}

// listable reports whether a caller may be listed (add) or stay listed
// (!add) now.
func (s *Sidecar) listable(c listedCaller, now time.Time, add bool) bool {
	lim := s.core.Limits(c.key)
	if lim.Shadow || lim.MaxInFlight > 0 {
		return false
	}
	longest, seen := s.unchecked.longest(c.pool)
	if !seen || longest > s.unchecked.o.MaxRequest {
		return false // no line of the pool yet, or its requests run long
	}
	ledger := s.core.Ledger()
	st := ledger.Status(c.key, lim)
	if st.RestrictedUntil.After(now) {
		return false
	}
	if !add && st.Requests == 0 && now.Sub(c.seen) > windowOf(lim) {
		return false // idle for a window: forgotten; its next check lists it again
	}
	if add && st.Requests < listMinRequests {
		return false
	}
	if lim.Budget <= 0 {
		return true
	}
	leftShare, reactions := listKeepLeft, float64(listKeepReactions)
	if add {
		leftShare, reactions = listAddLeft, listAddReactions
	}
	used := st.WorkerSeconds
	left := lim.Budget.Seconds() - used
	if left < leftShare*lim.Budget.Seconds() {
		return false
	}
	// What the caller may spend before a change of the list reaches
	// nginx, several times over: its recent rate (worker-seconds per second
	// over the window) for that long, and the rest of the requests in
	// flight, each at most the pool's longest. (Not one worker-second per
	// second for each, as the allow cache counts: with a file log, a
	// ticket stays open until its line comes, up to a second after its
	// request ended.) In a fleet, every member may be spending as fast.
	horizon := reactions * s.reaction().Seconds()
	spend := used/windowOf(lim).Seconds()*horizon + float64(st.InFlight)*longest.Seconds()
	spend *= float64(max(ledger.FleetSize(), 1))
	return left >= spend
}

func windowOf(lim budget.Limits) time.Duration {
	if lim.Window > 0 {
		return lim.Window
	}
	return budget.DefaultWindow
}

// reviewUnchecked rewrites the list for now and has nginx reload it when
// it changed (or a reload failed before). Callers stay granted (their
// lines not capped) while listed, and for a reaction time and a ticket
// bound after.
func (s *Sidecar) reviewUnchecked(now time.Time) {
	u := s.unchecked
	// Only the callers noted since are copied under the lock: the checks
	// noting more must not wait for a review of many callers' ledgers.
	u.mu.Lock()
	cands := make([]notedCaller, 0, len(u.seen))
	for id, c := range u.seen {
		if now.Sub(c.seen) > time.Minute {
			delete(u.seen, id) // not checked for a minute: listed already, or gone
			continue
		}
		cands = append(cands, notedCaller{id, c})
	}
	u.mu.Unlock()
	u.rotate(now)
	// New callers in identity order: a deterministic choice when more are
	// eligible than Max allows.
	slices.SortFunc(cands, func(a, b notedCaller) int { return strings.Compare(a.id, b.id) })

	next := make(map[string]listedCaller, len(u.listed))
	for id, c := range u.listed {
		if s.listable(c, now, false) {
			if i, ok := slices.BinarySearchFunc(cands, id, func(n notedCaller, id string) int { return strings.Compare(n.id, id) }); ok && cands[i].c.seen.After(c.seen) {
				c.seen = cands[i].c.seen
			}
			next[id] = c
		}
	}
	for _, n := range cands {
		if len(next) >= u.o.Max {
			break
		}
		if _, ok := next[n.id]; !ok && s.listable(n.c, now, true) {
			next[n.id] = n.c
		}
	}
	added, removed := 0, 0
	if !sameCallers(next, u.listed) {
		for id := range next {
			if _, ok := u.listed[id]; !ok {
				added++
			}
		}
		removed = len(u.listed) + added - len(next)
		if u.loaded == nil {
			u.loaded = u.listed
		}
		u.listed = next
		u.reloadDue = true
	}
	until := now.Add(s.reaction() + s.bound())
	for _, m := range []map[string]listedCaller{u.listed, u.loaded} {
		for _, c := range m {
			s.grant(c.key, until)
		}
	}
	n := len(u.listed)
	s.m.unchecked.Set(float64(n))
	if !u.reloadDue {
		return
	}
	keys, pools := renderMaps(u.listed)
	err := writeMaps(u.o.Dir, keys, pools)
	if err == nil {
		err = u.o.Reload()
	}
	if err != nil {
		s.m.mapReloads.WithLabelValues("failed").Inc()
		// Callers taken off stay granted until nginx has loaded the list
		// without them; the next review tries again.
		s.warn("the unchecked list did not reach nginx; retrying next interval", "err", err.Error(), "callers", n)
		return
	}
	u.loaded, u.reloadDue = nil, false
	s.m.mapReloads.WithLabelValues("ok").Inc()
	s.log.Info("nginx reloaded with the unchecked list", "callers", n, "added", added, "removed", removed, "dir", u.o.Dir)
}

// notedCaller is a caller noted by a check, with its identity.
type notedCaller struct {
	id string
	c  listedCaller
}

func sameCallers(a, b map[string]listedCaller) bool {
	if len(a) != len(b) {
		return false
	}
	for id, c := range a {
		if d, ok := b[id]; !ok || d.key != c.key || d.pool != c.pool {
			return false
		}
	}
	return true
}

// renderMaps is the two map files' text, entries in identity order.
func renderMaps(m map[string]listedCaller) (keys, pools []byte) {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	head := "# Written by headroom sidecar (--map-dir); rewritten every review: do not edit.\n"
	keys, pools = []byte(head), []byte(head)
	for _, id := range ids {
		c := m[id]
		keys = fmt.Appendf(keys, "\"%s\" \"%s\";\n", id, c.key)
		pools = fmt.Appendf(pools, "\"%s\" \"%s\";\n", id, c.pool)
	}
	return keys, pools
}

// writeMaps replaces the map files, each by a rename: nginx never reads
// half a file. They hold API keys as callers send them: 0600.
func writeMaps(dir string, keys, pools []byte) error {
	for _, f := range []struct {
		name string
		b    []byte
	}{{MapKeysFile, keys}, {MapPoolsFile, pools}} {
		path := filepath.Join(dir, f.name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, f.b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("replace %s: %w", path, err)
		}
	}
	return nil
}

// clearMaps empties the map files at start: a list from before a restart
// may name callers that are near their budget now. It reports whether
// there was anything to clear (nginx must then reload).
func clearMaps(dir string) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("--map-dir %s: %w", dir, err)
	}
	had := false
	for _, name := range []string{MapKeysFile, MapPoolsFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil && bytes.Contains(b, []byte{'"'}) {
			had = true
		}
	}
	keys, pools := renderMaps(nil)
	return had, writeMaps(dir, keys, pools)
}

// ReloadNginx returns a reload function for the nginx master whose pid
// file is pidFile: SIGHUP, then, where /proc lists its children, a wait of
// up to timeout until a new worker runs and every old one is shutting down
// (nginx lets both take connections for 100 ms: until then, an old worker
// still answers by the old map). A configuration nginx refuses leaves the
// old workers, and the old map, in place: that is an error. The pid file
// is read at each reload, so nginx may start after the sidecar.
func ReloadNginx(pidFile string, timeout time.Duration) func() error {
	return func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return fmt.Errorf("nginx's pid file (--nginx-pid): %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return fmt.Errorf("nginx's pid file %s holds %q, not a pid", pidFile, bytes.TrimSpace(b))
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && !bytes.HasPrefix(comm, []byte("nginx")) {
			return fmt.Errorf("pid %d from %s is %q, not nginx: a stale pid file?", pid, pidFile, bytes.TrimSpace(comm))
		}
		childrenPath := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
		before, childErr := os.ReadFile(childrenPath)
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("signal nginx (pid %d) to reload: %w", pid, err)
		}
		if childErr != nil {
			return nil // no way to see its workers here: trust the signal
		}
		var oldWorkers []string
		old := map[string]bool{}
		for _, f := range strings.Fields(string(before)) {
			old[f] = true
			if isWorker(f) {
				oldWorkers = append(oldWorkers, f)
			}
		}
		deadline := time.Now().Add(timeout)
		started := false
		for time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			now, err := os.ReadFile(childrenPath)
			if err != nil {
				return fmt.Errorf("nginx (pid %d) is gone after its reload signal", pid)
			}
			if !started {
				for _, f := range strings.Fields(string(now)) {
					if !old[f] {
						started = true
					}
				}
			}
			if started && retired(oldWorkers) {
				return nil
			}
		}
		if started {
			return fmt.Errorf("nginx (pid %d) started new workers, but its old ones were still taking connections %s after its reload signal", pid, timeout)
		}
		return fmt.Errorf("nginx (pid %d) started no new worker within %s of its reload signal: it kept its old configuration (its error log says why)", pid, timeout)
	}
}

// isWorker reports whether pid is an nginx worker that takes connections
// (its title says so; cache processes do not).
func isWorker(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/cmdline")
	return err == nil && bytes.Contains(b, []byte("worker process")) && !bytes.Contains(b, []byte("shutting down"))
}

// retired reports whether every one of pids has exited or is shutting
// down (nginx retitles a worker "worker process is shutting down" once it
// has stopped taking connections).
func retired(pids []string) bool {
	for _, p := range pids {
		if isWorker(p) {
			return false
		}
	}
	return true
}

package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrUnavailable means the journal could not be read at all: no
// journalctl, no systemd, no permission. The explainer says so and goes on
// with the samples it has.
var ErrUnavailable = errors.New("journal unavailable")

// ErrNoSystemd means systemctl could not list units: not a systemd host,
// or no access to its bus.
var ErrNoSystemd = errors.New("systemd unavailable")

// Reader runs journalctl. The zero value uses journalctl from PATH.
type Reader struct {
	// Binary is the journalctl to run; "" means "journalctl".
	Binary string
	// Directory, when set, reads journal files from there (journalctl -D),
	// e.g. /var/log/journal copied off a dead host.
	Directory string
}

// Result is what a read produced besides the entries.
type Result struct {
	Stats
	// Warnings are journalctl's hints (such as not seeing other users'
	// messages without the systemd-journal group).
	Warnings []string `json:"warnings,omitempty"`
}

// Entries calls fn for each entry between since and until.
func (r Reader) Entries(ctx context.Context, since, until time.Time, fn func(Entry) error) (Result, error) {
	bin := r.Binary
	if bin == "" {
		bin = "journalctl"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s not found (no systemd journal on this host; pass --journal FILE with `journalctl -o json` output from the host in question)", ErrUnavailable, bin)
	}
	// No -q: journalctl's hints ("No journal files were found") become
	// warnings the report shows.
	args := []string{"-o", "json", "--no-pager",
		"--since", "@" + strconv.FormatInt(since.Unix(), 10),
		"--until", "@" + strconv.FormatInt(until.Unix()+1, 10)}
	if r.Directory != "" {
		args = append(args, "-D", r.Directory)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("%w: start %s: %v", ErrUnavailable, path, err)
	}
	st, perr := Parse(out, fn)
	if perr != nil {
		// Drain so journalctl is not blocked on a full pipe while we wait.
		_, _ = io.Copy(io.Discard, out)
	}
	werr := cmd.Wait()
	res := Result{Stats: st, Warnings: warnings(stderr.String())}
	if perr != nil {
		return res, perr
	}
	if werr != nil {
		return res, fmt.Errorf("%w: %s: %v: %s", ErrUnavailable, path, werr, explainStderr(stderr.String()))
	}
	return res, nil
}

func warnings(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// explainStderr turns journalctl's complaint into what to do about it.
func explainStderr(s string) string {
	lines := warnings(s)
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, ".")
	}
	s = strings.Join(lines, "; ")
	switch {
	case strings.Contains(s, "insufficient permissions"), strings.Contains(s, "Permission denied"):
		return s + " (run as root or add the user to the systemd-journal or adm group)"
	case s == "":
		return "no message"
	}
	return s
}

// Unit is one line of systemctl's unit list.
type Unit struct {
	Name        string `json:"name"`
	Load        string `json:"load"`
	Active      string `json:"active"`
	Sub         string `json:"sub"`
	Description string `json:"description"`
}

// FailedUnits runs `systemctl list-units --state=failed`.
func FailedUnits(ctx context.Context) ([]Unit, error) {
	path, err := exec.LookPath("systemctl")
	if err != nil {
		return nil, fmt.Errorf("%w: systemctl not found (not a systemd host)", ErrNoSystemd)
	}
	cmd := exec.CommandContext(ctx, path, "list-units", "--state=failed", "--no-legend", "--plain", "--no-pager")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: systemctl: %v: %s", ErrNoSystemd, err, explainStderr(stderr.String()))
	}
	return ParseUnits(bytes.NewReader(out))
}

// ParseUnits reads `systemctl list-units --no-legend --plain` output:
// UNIT LOAD ACTIVE SUB DESCRIPTION, the last free text.
func ParseUnits(r io.Reader) ([]Unit, error) {
	var units []Unit
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(strings.TrimLeft(sc.Text(), "●* "))
		if len(f) < 4 {
			continue
		}
		units = append(units, Unit{Name: f[0], Load: f[1], Active: f[2], Sub: f[3], Description: strings.Join(f[4:], " ")})
	}
	if err := sc.Err(); err != nil {
		return units, fmt.Errorf("read systemctl output: %w", err)
	}
	return units, nil
}

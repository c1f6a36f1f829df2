// Package journal reads the systemd journal for the host explainer: it
// parses `journalctl -o json` output into typed entries (which unit
// started or stopped, what a finished job consumed, OOM kills, kernel
// memory messages) and is the one place in headroom that runs journalctl
// and systemctl. Parsing works on any io.Reader, so recorded journal JSON in
// testdata (or a file copied off a dead host) stands in for the machine.
package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Message IDs systemd puts on unit lifecycle messages (systemd's
// catalog/systemd.catalog.in). Matching on them is sturdier than on the
// English text, which changes between versions and locales.
const (
	MsgUnitStarting  = "7d4958e842da4a758f6c1cdc7b36dcc5"
	MsgUnitStarted   = "39f53479d3a045ac8e11786248231fbf"
	MsgUnitStopping  = "de5b426a63be47a7b6ac3eaac82e2f6f"
	MsgUnitStopped   = "9d1aaa27d60140bd96365438aad20286"
	MsgUnitFailed    = "be02cf6855d2428ba40df7e9d022f03d"
	MsgUnitResult    = "d9b373ed55a64feb8242e02dbe79a49c"
	MsgUnitSuccess   = "7ad2d189f7e94e70a38c781354912448"
	MsgUnitResources = "ae8f7b866b0347b9af31fe1c80b127c0"
	MsgUnitOOM       = "fe6faa94e7774663a0da52717891d8ef"
	MsgProcessExit   = "98e322203f7a4ed290d09fe03c09fe15"
)

// Kind is what an entry means to the explainer.
type Kind string

// Kinds of entries. Other is everything the explainer has no use for.
const (
	UnitStarting  Kind = "unit-starting"
	UnitStarted   Kind = "unit-started"
	UnitStopping  Kind = "unit-stopping"
	UnitStopped   Kind = "unit-stopped"
	UnitFailed    Kind = "unit-failed"
	UnitResources Kind = "unit-resources"
	OOMKill       Kind = "oom-kill"
	MemoryMessage Kind = "memory"
	Cron          Kind = "cron"
	Other         Kind = "other"
)

// Entry is one journal entry, with the fields the explainer uses.
type Entry struct {
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	// Unit is the unit a systemd message is about (UNIT=, USER_UNIT=), else
	// the unit that logged it (_SYSTEMD_UNIT=).
	Unit      string `json:"unit,omitempty"`
	Ident     string `json:"ident,omitempty"`
	Message   string `json:"message"`
	MessageID string `json:"message_id,omitempty"`
	Priority  int    `json:"priority"`
	PID       int    `json:"pid,omitempty"`
	Kernel    bool   `json:"kernel,omitempty"`
	BootID    string `json:"boot_id,omitempty"`
	// CPU and MemoryPeak come with the unit-resources message systemd logs
	// when a unit stops ("Consumed 1min 2.3s CPU time, 410M memory peak").
	CPU        time.Duration `json:"cpu,omitempty"`
	MemoryPeak uint64        `json:"memory_peak,omitempty"`
}

// Stats count what Parse saw.
type Stats struct {
	Lines     int `json:"lines"`
	Entries   int `json:"entries"`
	Malformed int `json:"malformed"`
	// FirstMalformed describes the first bad line, for the error message.
	FirstMalformed string `json:"first_malformed,omitempty"`
}

// maxLine bounds one JSON line; journal entries with huge binary fields
// (coredumps) are skipped as malformed rather than buffered whole.
const maxLine = 4 << 20

// Parse reads journal JSON lines (journalctl -o json) from r and calls fn
// for each entry. A malformed line is counted and skipped: one bad line
// must not hide the rest of an incident's timeline.
func Parse(r io.Reader, fn func(Entry) error) (Stats, error) {
	var st Stats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		st.Lines++
		e, err := ParseEntry(line)
		if err != nil {
			st.Malformed++
			if st.FirstMalformed == "" {
				st.FirstMalformed = fmt.Sprintf("line %d: %v", st.Lines, err)
			}
			continue
		}
		st.Entries++
		if err := fn(e); err != nil {
			return st, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return st, fmt.Errorf("journal line %d is over %d bytes: %w", st.Lines+1, maxLine, err)
		}
		return st, fmt.Errorf("read journal: %w", err)
	}
	return st, nil
}

// ParseEntry parses one line of journalctl -o json.
func ParseEntry(line []byte) (Entry, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Entry{}, fmt.Errorf("not a JSON object: %w", err)
	}
	field := func(k string) string {
		v, ok := raw[k]
		if !ok {
			return ""
		}
		return fieldString(v)
	}
	e := Entry{Priority: -1}
	us, err := strconv.ParseInt(field("__REALTIME_TIMESTAMP"), 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("no usable __REALTIME_TIMESTAMP: %q", field("__REALTIME_TIMESTAMP"))
	}
	e.Time = time.UnixMicro(us).UTC()
	e.Message = field("MESSAGE")
	e.MessageID = strings.ToLower(field("MESSAGE_ID"))
	e.Ident = field("SYSLOG_IDENTIFIER")
	e.BootID = field("_BOOT_ID")
	e.Kernel = field("_TRANSPORT") == "kernel"
	if p, err := strconv.Atoi(field("PRIORITY")); err == nil {
		e.Priority = p
	}
	if p, err := strconv.Atoi(field("_PID")); err == nil {
		e.PID = p
	}
	for _, k := range []string{"UNIT", "USER_UNIT", "OBJECT_SYSTEMD_UNIT", "_SYSTEMD_UNIT"} {
		if u := field(k); u != "" {
			e.Unit = u
			break
		}
	}
	if ns, err := strconv.ParseInt(field("CPU_USAGE_NSEC"), 10, 64); err == nil && ns >= 0 {
		e.CPU = time.Duration(ns)
	}
	if b, err := strconv.ParseUint(field("MEMORY_PEAK"), 10, 64); err == nil {
		e.MemoryPeak = b
	}
	e.Kind = classify(&e)
	if e.Kind == UnitResources {
		// Older systemd puts the figures only in the text.
		cpu, mem := parseConsumed(e.Message)
		if e.CPU == 0 {
			e.CPU = cpu
		}
		if e.MemoryPeak == 0 {
			e.MemoryPeak = mem
		}
	}
	return e, nil
}

// fieldString turns a journal JSON field into text. journalctl writes a
// string, an array of byte values for non-UTF-8 data, null for fields too
// large to show, or an array of strings when a field repeats.
func fieldString(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var bs []byte
	var nums []int
	if json.Unmarshal(v, &nums) == nil {
		for _, n := range nums {
			bs = append(bs, byte(n))
		}
		return string(bs)
	}
	var ss []string
	if json.Unmarshal(v, &ss) == nil && len(ss) > 0 {
		return ss[0]
	}
	return ""
}

var (
	oomRe    = regexp.MustCompile(`(?i)out of memory: kill|invoked oom-killer|oom-kill:|oom_reaper|killed .* due to memory pressure`)
	memMsgRe = regexp.MustCompile(`(?i)under memory pressure|page allocation failure|memory cgroup out of memory|low on memory|swap.*(full|exhausted)|lowmemorykiller`)
)

func classify(e *Entry) Kind {
	switch e.MessageID {
	case MsgUnitStarting:
		return UnitStarting
	case MsgUnitStarted:
		return UnitStarted
	case MsgUnitStopping:
		return UnitStopping
	case MsgUnitStopped, MsgUnitSuccess:
		return UnitStopped
	case MsgUnitFailed, MsgUnitResult:
		return UnitFailed
	case MsgUnitResources:
		return UnitResources
	case MsgUnitOOM:
		return OOMKill
	}
	msg := e.Message
	if oomRe.MatchString(msg) {
		return OOMKill
	}
	if memMsgRe.MatchString(msg) {
		return MemoryMessage
	}
	if strings.EqualFold(e.Ident, "cron") && strings.Contains(msg, "CMD (") {
		return Cron
	}
	// Without message IDs (journal forwarded from syslog, very old
	// systemd), fall back to systemd's own wording.
	if e.Ident == "systemd" {
		switch {
		case strings.HasPrefix(msg, "Starting "):
			return UnitStarting
		case strings.HasPrefix(msg, "Started "), strings.HasPrefix(msg, "Finished "):
			return UnitStarted
		case strings.HasPrefix(msg, "Stopping "):
			return UnitStopping
		case strings.HasPrefix(msg, "Stopped "), strings.HasSuffix(msg, ": Deactivated successfully."):
			return UnitStopped
		case strings.Contains(msg, ": Failed with result"), strings.HasPrefix(msg, "Failed to start "):
			return UnitFailed
		case strings.Contains(msg, ": Consumed "):
			return UnitResources
		}
	}
	return Other
}

var (
	consumedCPURe = regexp.MustCompile(`Consumed ([0-9][0-9a-z. ]*?) CPU time`)
	memPeakRe     = regexp.MustCompile(`([0-9.]+)([KMGT]?)B? memory peak`)
)

// parseConsumed reads "Consumed 1min 2.345s CPU time, 155.1M memory peak".
func parseConsumed(msg string) (time.Duration, uint64) {
	var cpu time.Duration
	if m := consumedCPURe.FindStringSubmatch(msg); m != nil {
		cpu = parseTimespan(m[1])
	}
	var mem uint64
	if m := memPeakRe.FindStringSubmatch(msg); m != nil {
		if v, err := strconv.ParseFloat(m[1], 64); err == nil && v >= 0 && v < 1e15 {
			mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m[2]]
			mem = uint64(v * mult)
		}
	}
	return cpu, mem
}

// parseTimespan reads systemd's format_timespan output: "1min 2.345s",
// "412ms", "1h 3min".
func parseTimespan(s string) time.Duration {
	units := []struct {
		suffix string
		d      time.Duration
	}{{"min", time.Minute}, {"ms", time.Millisecond}, {"us", time.Microsecond}, {"h", time.Hour}, {"d", 24 * time.Hour}, {"s", time.Second}}
	var total time.Duration
	for _, tok := range strings.Fields(s) {
		for _, u := range units {
			num, ok := strings.CutSuffix(tok, u.suffix)
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 || v > 1e9 {
				return 0
			}
			total += time.Duration(v * float64(u.d))
			break
		}
	}
	return total
}

package hostwatch

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteJSON prints v as indented JSON, the shape --json promises.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteExplain prints the report for a person.
func WriteExplain(w io.Writer, rep *Report, loc *time.Location) error {
	b := &strings.Builder{}
	day := "2006-01-02 15:04 MST"
	fmt.Fprintf(b, "headroom host explain: %s to %s\n", inLoc(rep.Window.Start, loc).Format(day), inLoc(rep.Window.End, loc).Format(day))
	src := rep.Source
	if rep.Samples > 0 {
		src += fmt.Sprintf(", %d samples every %s", rep.Samples, time.Duration(rep.Interval))
	}
	fmt.Fprintf(b, "source: %s\n", src)
	if h := rep.Host; h.MemTotal > 0 {
		fmt.Fprintf(b, "host: %d CPU, %s memory, swap %s", h.CPUs, mib(h.MemTotal), swapTotal(h.SwapTotal))
		if !h.BootTime.IsZero() {
			fmt.Fprintf(b, ", booted %s", inLoc(h.BootTime, loc).Format(day))
		}
		b.WriteString("\n")
	}
	js := rep.Journal
	switch {
	case js.Error != "":
		fmt.Fprintf(b, "journal: unavailable (%s)\n", js.Error)
	default:
		fmt.Fprintf(b, "journal: %d entries", js.Entries)
		if js.Malformed > 0 {
			fmt.Fprintf(b, ", %d malformed skipped", js.Malformed)
		}
		b.WriteString("\n")
	}
	if len(rep.Episodes) == 0 {
		b.WriteString("\nNo spikes or saturation found in this window.\n")
	}
	if len(rep.Filesystems) > 0 {
		b.WriteString("\nDisk space\n")
	}
	for _, f := range rep.Filesystems {
		fmt.Fprintf(b, "  [%s] %s\n", f.Severity, f.Summary)
		if len(f.Units) > 0 {
			var us []string
			for _, u := range f.Units {
				us = append(us, u.Unit+" "+mib(u.Bytes))
			}
			fmt.Fprintf(b, "    by unit: %s\n", strings.Join(us, ", "))
		}
		fmt.Fprintf(b, "    action: %s\n", f.Action)
	}
	for i, ep := range rep.Episodes {
		fmt.Fprintf(b, "\nEpisode %d: %s to %s (%s)\n", i+1, clock(ep.Start, loc), clock(ep.End, loc), human(ep.End.Sub(ep.Start)))
		fmt.Fprintf(b, "  %s\n", ep.Summary)
		if c := ep.Cause; c != nil {
			fmt.Fprintf(b, "  cause: %s", c.Unit)
			if c.Trigger != "" {
				fmt.Fprintf(b, " (by %s)", c.Trigger)
			}
			b.WriteString("\n")
			for _, e := range c.Evidence {
				fmt.Fprintf(b, "    - %s\n", e)
			}
		}
		if len(ep.Signals) > 0 {
			b.WriteString("  signals:\n")
			for _, s := range ep.Signals {
				fmt.Fprintf(b, "    %-16s %s from %s for %s", s.Kind, signalPeak(s), clock(s.First, loc), human(time.Duration(s.Duration)))
				if s.Detail != "" {
					fmt.Fprintf(b, " (%s)", s.Detail)
				}
				b.WriteString("\n")
			}
		}
		if len(ep.Processes) > 0 {
			b.WriteString("  processes:\n")
			for _, p := range ep.Processes {
				unit := p.Unit
				if unit == "" {
					unit = "-"
				}
				before := mib(p.RSSBefore)
				if p.New {
					before = "new"
				}
				io := ""
				if p.ReadBytes+p.WriteBytes > 0 {
					io = fmt.Sprintf("  I/O read %s write %s", mib(p.ReadBytes), mib(p.WriteBytes))
				}
				fmt.Fprintf(b, "    %-16s %6d  %-28s %8s -> %-8s CPU peak %s%s\n", p.Comm, p.PID, unit, before, mib(p.RSSPeak), pctString(p.CPUPeak), io)
			}
		}
		if d := ep.Disk; d != nil {
			fmt.Fprintf(b, "  disk %s: peak %s busy, average wait %.0f ms, %s written and %s read while saturated\n", d.Device, pctString(d.PeakUtil), d.AwaitMs, mib(d.WriteBytes), mib(d.ReadBytes))
			for _, sh := range d.By {
				fmt.Fprintf(b, "    %s\n", ioShareText(sh))
			}
		}
		b.WriteString("  timeline:\n")
		for _, e := range ep.Timeline {
			fmt.Fprintf(b, "    %s  %-7s %s\n", clock(e.Time, loc), e.Source, e.Text)
		}
		if ep.Outcome != "" {
			fmt.Fprintf(b, "  outcome: %s\n", ep.Outcome)
		}
	}
	if len(rep.Notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(b, "  - %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func swapTotal(n uint64) string {
	if n == 0 {
		return "none"
	}
	return mib(n)
}

func signalPeak(s Signal) string {
	switch s.Unit {
	case "B/s":
		return "peak " + mib(uint64(s.Peak)) + "/s"
	case "B":
		return "down to " + mib(uint64(s.Peak))
	case "%":
		return "peak " + pctString(s.Peak)
	}
	return fmt.Sprintf("%.0f %s", s.Peak, s.Unit)
}

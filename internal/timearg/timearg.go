// Package timearg parses the times users give on the command line: wherever
// headroom takes a time T, both an RFC 3339 time and a duration ago ("10m",
// "2h30m", "3d") are accepted, as DESIGN.md promises.
package timearg

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// layouts are tried in order after RFC 3339; journalctl-style local times are
// common in incident notes ("2025-08-28 06:20:00").
var layouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04",
	"2006-01-02",
}

// Parse reads s as an absolute time or as a duration before now.
// Times without a zone are read in loc (time.Local when nil).
func Parse(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time: give an RFC 3339 time (2026-04-04T06:20:00Z) or a duration ago (10m)")
	}
	if d, ok := parseAgo(s); ok {
		return now.Add(-d), nil
	}
	if loc == nil {
		loc = time.Local
	}
	for _, layout := range layouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want an RFC 3339 time (2026-04-04T06:20:00Z) or a duration ago (10m, 2h, 3d)", s)
}

// parseAgo accepts Go durations plus a "d" (day) and "w" (week) suffix,
// which time.ParseDuration lacks.
func parseAgo(s string) (time.Duration, bool) {
	if n, unit := s[:len(s)-1], s[len(s)-1]; unit == 'd' || unit == 'w' {
		v, err := strconv.ParseFloat(n, 64)
		day := 24 * time.Hour
		if unit == 'w' {
			day *= 7
		}
		// NaN, Inf and spans past 292 years do not fit a Duration (and
		// would convert to nonsense, not to an error).
		if err != nil || !(v >= 0 && v*float64(day) < math.MaxInt64) {
			return 0, false
		}
		return time.Duration(v * float64(day)), true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

package timearg

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "10m", want: now.Add(-10 * time.Minute)},
		{in: "2h30m", want: now.Add(-150 * time.Minute)},
		{in: "3d", want: now.Add(-72 * time.Hour)},
		{in: "1w", want: now.Add(-7 * 24 * time.Hour)},
		{in: "2019-04-04T06:20:00Z", want: time.Date(2019, 4, 4, 6, 20, 0, 0, time.UTC)},
		{in: "2019-04-04T06:20:00+02:00", want: time.Date(2019, 4, 4, 4, 20, 0, 0, time.UTC)},
		{in: "2025-08-28 06:20:00", want: time.Date(2025, 8, 28, 6, 20, 0, 0, time.UTC)},
		{in: "2025-08-28", want: time.Date(2025, 8, 28, 0, 0, 0, 0, time.UTC)},
		{in: "", wantErr: true},
		{in: "yesterday", wantErr: true},
		{in: "-5m", wantErr: true},
		{in: "xd", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in, now, time.UTC)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParse: any input is a time or an error, never a panic, and a
// duration ago is never in the future.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10m", "3d", "1.5w", "2026-04-04T06:20:00Z", "2025-08-28 06:20", "NaNd", "1e300d", "-1h", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s, now, time.UTC)
		if err != nil {
			return
		}
		if _, ago := parseAgo(strings.TrimSpace(s)); ago && got.After(now) {
			t.Errorf("Parse(%q) = %v: a duration ago lands after now", s, got)
		}
	})
}

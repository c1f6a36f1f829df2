package httpwire

import "testing"

func TestEqualFoldName(t *testing.T) {
	for _, c := range []struct {
		b, name string
		want    bool
	}{
		{"X-Api-Key", "X-Api-Key", true},
		{"x-api-key", "X-API-KEY", true},
		{"X-API-KEY", "x-api-key", true},
		{"X-Api-Key", "X-Api-Kez", false},
		{"X-Api-Key", "X-Api-Ke", false},
		{"", "", true},
		{"[", "{", false}, // '[' + 32 is '{': only letters fold
	} {
		if got := EqualFoldName([]byte(c.b), c.name); got != c.want {
			t.Errorf("EqualFoldName(%q, %q) = %v, want %v", c.b, c.name, got, c.want)
		}
	}
}

//go:build race

package sidecar

// raceEnabled: under -race, sync.Pool drops a quarter of what is Put at
// random, so a pooled path allocates by design there.
const raceEnabled = true

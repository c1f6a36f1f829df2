//go:build !linux

package budget

func allocCells(n int) ([]entry, []byte) { return make([]entry, n), nil }

func allocFleet(n int) ([]fleetEntry, []byte) { return make([]fleetEntry, n), nil }

func freeCells([]byte) {}

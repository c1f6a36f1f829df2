//go:build !linux

package testenv

func threadCPU() int64 { return 0 }

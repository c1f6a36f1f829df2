//go:build !linux

package hostwatch

import (
	"fmt"
	"runtime"
)

// statFS is only implemented for Linux, the host job's target; elsewhere
// a filesystem read from a fixture mount table needs SamplerOptions.StatFS.
func statFS(path string) (FSStat, error) {
	return FSStat{}, fmt.Errorf("statfs %s: not implemented on %s", path, runtime.GOOS)
}

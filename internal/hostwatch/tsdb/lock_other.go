//go:build !unix

package tsdb

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir on systems without flock only creates the file: headroom's host
// job targets Linux, and elsewhere a second writer is the operator's call.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	return f, nil
}

func unlockDir(f *os.File) error { return f.Close() }

func syncDir(string) {}

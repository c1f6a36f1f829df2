package hostwatch

import (
	"fmt"
	"syscall"
)

// statFS is statfs(2), in the units df uses: blocks of f_frsize.
func statFS(path string) (FSStat, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return FSStat{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return FSStat{Size: st.Blocks * bs, Free: st.Bfree * bs, Avail: st.Bavail * bs, Inodes: st.Files, IFree: st.Ffree}, nil
}

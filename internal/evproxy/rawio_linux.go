//go:build linux

package evproxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket
// without the scheduler's syscall bookkeeping. unix.Read goes through
// syscall.Syscall, which hands the loop's P to sysmon's care: on a busy
// loop sysmon retakes it and wakes another M, a context switch for a call
// that never blocks. These calls return at once (EAGAIN at worst), so the
// loop's thread keeps its P. Errors are the same unix.Errno values
// unix.Read gives, n is -1 with them.
func rawRead(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

func rawWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	r, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

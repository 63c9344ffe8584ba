package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCachedPages asks the kernel to forget f's cached pages, so that the next read comes
// from the store; false when it would not.
func dropCachedPages(f *os.File) bool {
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) == nil
}

// adviseSequential tells the kernel f is read front to back (a larger read-ahead).
func adviseSequential(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
}

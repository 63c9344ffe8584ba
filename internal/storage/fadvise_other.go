//go:build !linux

package storage

import "os"

// dropCachedPages: only Linux has posix_fadvise here, so the read may be the page cache's.
func dropCachedPages(*os.File) bool { return false }

// adviseSequential: the default read-ahead elsewhere.
func adviseSequential(*os.File) {}

package storage

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MountInfoPath is where Linux describes this process's mounts.
const MountInfoPath = "/proc/self/mountinfo"

// DefaultFSTypes are the network filesystems a shared model store is normally on.
var DefaultFSTypes = []string{"nfs", "nfs4", "cifs", "smb3"}

// Mount is one line of /proc/self/mountinfo (see proc(5)).
type Mount struct {
	ID, Parent int
	// Root is the directory of the filesystem mounted here; MountPoint is where.
	Root, MountPoint string
	// FSType is "nfs4", "ext4", ...; Source is "nas:/export/ollama" for NFS.
	FSType, Source string
	// Options are the per-mount options ("rw,relatime").
	Options string
}

// ParseMountInfo reads mountinfo lines. Paths come unescaped (mountinfo writes a space as
// \040, a tab as \011, a newline as \012 and a backslash as \134).
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("storage: mountinfo line %d: %w", n, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("storage: read mountinfo: %w", err)
	}
	return out, nil
}

// parseMountLine reads "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw".
// The kernel separates fields by one space and escapes spaces inside them, so an empty field
// (a mount whose source is "", as `mount -t tmpfs "" /mnt` makes) is two spaces in a row.
func parseMountLine(line string) (Mount, error) {
	fields := strings.Split(line, " ")
	sep := slices.Index(fields, "-")
	if sep < 6 || len(fields) < sep+3 {
		return Mount{}, fmt.Errorf("want at least 6 fields, \"-\", type and source: %q", line)
	}
	id, err1 := strconv.Atoi(fields[0])
	parent, err2 := strconv.Atoi(fields[1])
	if err1 != nil || err2 != nil {
		return Mount{}, fmt.Errorf("mount and parent ids are not numbers: %q", line)
	}
	return Mount{
		ID: id, Parent: parent,
		Root:       unescapeMount(fields[3]),
		MountPoint: unescapeMount(fields[4]),
		Options:    fields[5],
		FSType:     fields[sep+1],
		Source:     unescapeMount(fields[sep+2]),
	}, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 and the like).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountOf is the mount that holds path: the longest mount point that is path or one of its
// parents; of mounts stacked on one point, the last (it hides the others). path should be
// absolute and clean (symlinks resolved).
func MountOf(mounts []Mount, path string) (Mount, bool) {
	path = filepath.Clean(path)
	best, found := Mount{}, false
	for _, m := range mounts {
		if !within(path, m.MountPoint) {
			continue
		}
		if !found || len(m.MountPoint) >= len(best.MountPoint) {
			best, found = m, true
		}
	}
	return best, found
}

func within(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// MountState says whether a directory is on one of the wanted filesystem types.
type MountState struct {
	// Mounted: the directory's mount has one of the wanted types.
	Mounted bool
	// Mount is the mount that holds the directory (its type also when not wanted).
	Mount Mount
}

// CheckMount reads mountinfo at infoPath ("" = MountInfoPath) and tells whether dir is on a
// mount of one of fsTypes. dir is taken as written, made absolute, not resolved: resolving
// symlinks would stat the store, which hangs on a stale NFS handle. Give the real path.
func CheckMount(infoPath, dir string, fsTypes []string) (MountState, error) {
	if infoPath == "" {
		infoPath = MountInfoPath
	}
	f, err := os.Open(infoPath)
	if err != nil {
		return MountState{}, fmt.Errorf("storage: %w", err)
	}
	defer f.Close()
	mounts, err := ParseMountInfo(f)
	if err != nil {
		return MountState{}, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return MountState{}, fmt.Errorf("storage: %s: %w", dir, err)
	}
	m, ok := MountOf(mounts, abs)
	if !ok {
		return MountState{}, fmt.Errorf("storage: no mount holds %s in %s", dir, infoPath)
	}
	return MountState{Mounted: slices.Contains(fsTypes, m.FSType), Mount: m}, nil
}

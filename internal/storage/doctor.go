package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Access is what one user may do in a directory on the path to the store.
type Access struct {
	Path string `json:"path"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Mode string `json:"mode"`
	// OK: the user can traverse it (and, for the store itself, read and write it).
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// CheckAccess walks from / down to dir (and into its blobs and manifests) and reports for
// each directory whether uid with gids can pass: the usual "permission denied" on NFS is a
// parent directory without x for the Ollama user, or a store owned by another UID on
// another machine.
func CheckAccess(dir string, uid uint32, gids []uint32) []Access {
	return checkAccess(dir, uid, gids, 0o7)
}

// checkAccess is CheckAccess with what the user needs in the store and its subdirectories:
// rwx for an Ollama, r-x for an agent that only reads the manifests.
func checkAccess(dir string, uid uint32, gids []uint32, storeNeed uint32) []Access {
	var paths []string
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		paths = append(paths, p)
		if p == "/" || p == "." {
			break
		}
	}
	slices.Reverse(paths)
	for _, sub := range []string{"blobs", "manifests"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			paths = append(paths, filepath.Join(dir, sub))
		}
	}
	out := make([]Access, 0, len(paths))
	for _, p := range paths {
		a := Access{Path: p}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			a.Problem = err.Error()
			out = append(out, a)
			continue
		}
		a.UID, a.GID, a.Mode = st.Uid, st.Gid, os.FileMode(st.Mode&0o7777).String()
		need := uint32(0o1) // x: traverse
		if p == filepath.Clean(dir) || filepath.Dir(p) == filepath.Clean(dir) {
			need = storeNeed // the store and its subdirectories: list, read (and write)
		}
		a.OK = permits(st, uid, gids, need)
		if !a.OK {
			a.Problem = fmt.Sprintf("uid %d (gids %v) lacks %s here (owner %d:%d, mode %s)", uid, gids, permWords(need), st.Uid, st.Gid, a.Mode)
		}
		out = append(out, a)
	}
	return out
}

func permits(st syscall.Stat_t, uid uint32, gids []uint32, need uint32) bool {
	mode := uint32(st.Mode) // uint16 on darwin
	if uid == 0 {
		return need&0o1 == 0 || mode&0o111 != 0 || mode&syscall.S_IFDIR != 0
	}
	switch {
	case st.Uid == uid:
		return (mode>>6)&need == need
	case slices.Contains(gids, st.Gid):
		return (mode>>3)&need == need
	default:
		return mode&need == need
	}
}

func permWords(need uint32) string {
	switch need {
	case 0o1:
		return "x (search) permission"
	case 0o5:
		return "r-x (read and search) permission"
	}
	return "rwx permission"
}

// nobody is the UID (and GID) an NFS server gives root under root_squash.
const nobody = 65534

// Space is a filesystem's size and what is free for unprivileged users, in bytes.
type Space struct {
	Total int64 `json:"total"`
	Free  int64 `json:"free"`
}

// FreeSpace reads dir's filesystem size.
func FreeSpace(dir string) (Space, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return Space{}, fmt.Errorf("storage: statfs %s: %w", dir, err)
	}
	// Bsize is int32 on 32-bit ARM and int64 elsewhere.
	bsize := int64(s.Bsize)
	return Space{Total: int64(s.Blocks) * bsize, Free: int64(s.Bavail) * bsize}, nil
}

// ReadResult is one measured read of a blob.
type ReadResult struct {
	Path    string        `json:"path"`
	Bytes   int64         `json:"bytes"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Cached: the kernel would not drop the file's cached pages first, so the speed may be
	// the page cache's rather than the store's.
	Cached bool `json:"cached,omitempty"`
}

// BytesPerSecond is the read speed.
func (r ReadResult) BytesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / r.Elapsed.Seconds()
}

// ReadSpeed reads up to limit bytes of path after asking the kernel to drop its cached
// pages, so that the time is the store's (a first read over NFS), and reports it. progress,
// when not nil, hears the bytes read so far.
func ReadSpeed(ctx context.Context, path string, limit int64, dropCache bool, progress func(int64)) (ReadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return ReadResult{}, fmt.Errorf("storage: %w", err)
	}
	defer f.Close()
	r := ReadResult{Path: path}
	if dropCache {
		r.Cached = !dropCachedPages(f)
	}
	adviseSequential(f)
	buf := make([]byte, 4<<20)
	start := time.Now()
	for limit <= 0 || r.Bytes < limit {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		want := int64(len(buf))
		if limit > 0 {
			want = min(want, limit-r.Bytes)
		}
		n, err := f.Read(buf[:want])
		r.Bytes += int64(n)
		if progress != nil && n > 0 {
			progress(r.Bytes)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return r, fmt.Errorf("storage: read %s: %w", path, err)
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// Prewarm reads every blob of m into the page cache, so that Ollama's first load reads
// memory instead of the network. progress hears the bytes read of the total.
func Prewarm(ctx context.Context, dir string, m Model, progress func(done, total int64)) (ReadResult, error) {
	total := m.Size
	var sum ReadResult
	start := time.Now()
	for _, b := range append([]Blob{m.Config}, m.Layers...) {
		if b.Digest == "" {
			continue
		}
		base := sum.Bytes
		r, err := ReadSpeed(ctx, BlobPath(dir, b.Digest), 0, false, func(n int64) {
			if progress != nil {
				progress(base+n, total)
			}
		})
		sum.Bytes += r.Bytes
		if err != nil {
			return sum, err
		}
	}
	sum.Elapsed = time.Since(start)
	sum.Path = dir
	return sum, nil
}

// Report is one node's store as `hearth models doctor` shows it (GET
// /hearth/v1/node/storage on that node's agent).
type Report struct {
	Node string `json:"node"`
	Dir  string `json:"dir"`
	// Health is the probe's last check.
	Health Health `json:"health"`
	// OllamaUser is who Ollama runs as on this node: the agent's user for a managed Ollama,
	// else the "ollama" user of the standard install.
	OllamaUser User     `json:"ollama_user"`
	Access     []Access `json:"access"`
	Space      *Space   `json:"space,omitempty"`
	// Read is a timed read of the largest blob; nil when not asked or no model.
	Read *ReadView `json:"read,omitempty"`
	// Models with their predicted cold-load time at the measured speed.
	Models []ColdLoad `json:"models"`
	// Problems are what to fix, in words.
	Problems []string `json:"problems,omitempty"`
}

// User is a user of this machine by number, as NFS compares them.
type User struct {
	Name string   `json:"name"`
	UID  uint32   `json:"uid"`
	GIDs []uint32 `json:"gids"`
	// ReadOnly: no Ollama runs on this node; this is the agent, which only reads the
	// manifests, so it needs r-x where an Ollama needs rwx.
	ReadOnly bool `json:"read_only,omitempty"`
}

// ReadView is a ReadResult for JSON.
type ReadView struct {
	Path           string  `json:"path"`
	Bytes          int64   `json:"bytes"`
	Seconds        float64 `json:"seconds"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	Cached         bool    `json:"cached,omitempty"`
}

// ColdLoad is a model and how long reading it from the store takes at the measured speed.
type ColdLoad struct {
	Name    string  `json:"name"`
	Size    int64   `json:"size"`
	Seconds float64 `json:"cold_load_seconds,omitempty"`
}

// Diagnose builds the report for dir as seen by user, reading up to readLimit bytes of the
// largest blob (0: no read). It touches the store: run it only with a deadline around it.
func Diagnose(ctx context.Context, node string, h Health, models []Model, user User, readLimit int64) Report {
	rep := Report{Node: node, Dir: h.Dir, Health: h, OllamaUser: user, Models: []ColdLoad{}}
	if !h.Ready() {
		rep.Problems = append(rep.Problems, "the store is not usable: "+h.Error)
	}
	if h.Required && !h.Mounted {
		rep.Problems = append(rep.Problems, "the store is not mounted: check the NFS mount (systemctl status on its .mount unit, or `mount | grep nfs`)")
	}
	storeNeed := uint32(0o7)
	if user.ReadOnly {
		storeNeed = 0o5
	}
	rep.Access = checkAccess(h.Dir, user.UID, user.GIDs, storeNeed)
	if user.UID == 0 && strings.HasPrefix(h.FSType, "nfs") {
		// An NFS server maps root to nobody (root_squash, its default): root passes every
		// local check and is still refused on the share.
		for i, a := range checkAccess(h.Dir, nobody, []uint32{nobody}, storeNeed) {
			if i < len(rep.Access) && rep.Access[i].OK && !a.OK {
				rep.Access[i].OK = false
				rep.Access[i].Problem = fmt.Sprintf("Ollama runs as root, which the NFS server maps to nobody (uid %d) unless the export has no_root_squash: %s", nobody, a.Problem)
			}
		}
	}
	for _, a := range rep.Access {
		if !a.OK {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %s", a.Path, a.Problem))
		}
	}
	if sp, err := FreeSpace(h.Dir); err == nil {
		rep.Space = &sp
	} else {
		rep.Problems = append(rep.Problems, err.Error())
	}
	var largest Blob
	for _, m := range models {
		if l := m.Largest(); l.Size > largest.Size {
			largest = l
		}
	}
	var speed float64
	if readLimit > 0 && largest.Digest != "" {
		r, err := ReadSpeed(ctx, BlobPath(h.Dir, largest.Digest), readLimit, true, nil)
		if err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		} else {
			speed = r.BytesPerSecond()
			rep.Read = &ReadView{Path: r.Path, Bytes: r.Bytes, Seconds: r.Elapsed.Seconds(), BytesPerSecond: speed, Cached: r.Cached}
		}
	}
	for _, m := range models {
		c := ColdLoad{Name: m.Name, Size: m.Size}
		if speed > 0 {
			c.Seconds = float64(m.Size) / speed
		}
		rep.Models = append(rep.Models, c)
	}
	return rep
}

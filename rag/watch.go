package rag

import (
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchSettle is how long a folder must be quiet after a change before its collection is
// synced: a copy of many files, or an editor's save (write a temporary file, rename it over
// the old), is one sync, not one per event.
var watchSettle = 2 * time.Second // a variable for tests

// watchMaxWait bounds how long changes wait for their folder to go quiet.
const watchMaxWait = 30 * time.Second

// folderWatch turns changes under the folders of folder-bound collections into the names of
// the collections to sync. It sees changes made through this machine's kernel; a folder on
// NFS or SMB changed by another machine sends nothing, which is what rag.rescan_interval's
// rescans are for.
type folderWatch struct {
	w       *fsnotify.Watcher
	log     *slog.Logger
	roots   map[string][]string // a watched root folder → the collections bound to it
	watched map[string]bool     // every directory added to w
	pending map[string]bool     // collections changed since the last sync
	settle  *time.Timer         // fires watchSettle after the last change
	since   time.Time           // the first change not synced yet
	failed  bool                // a folder could not be added: said once, not repeated
}

func newFolderWatch(log *slog.Logger) (*folderWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	return &folderWatch{w: w, log: log, roots: map[string][]string{}, watched: map[string]bool{},
		pending: map[string]bool{}, settle: settle}, nil
}

// bind watches root and every folder under it for collection name; calling it again for the
// same pair costs nothing once root is watched.
func (fw *folderWatch) bind(name, root string) {
	root = filepath.Clean(root)
	known := slices.Contains(fw.roots[root], name)
	if known && fw.watched[root] {
		return // its new folders come as Create events
	}
	if !known {
		fw.roots[root] = append(fw.roots[root], name)
	}
	fw.addTree(root) // again while the folder is missing (a share not mounted yet)
}

// addTree adds dir and the folders under it (hidden ones are not indexed, so not watched).
func (fw *folderWatch) addTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if fw.watched[p] {
			return nil
		}
		if err := fw.w.Add(p); err != nil {
			fw.addFailed(p, err)
			return filepath.SkipAll
		}
		fw.watched[p] = true
		return nil
	})
}

func (fw *folderWatch) addFailed(dir string, err error) {
	if fw.failed {
		return
	}
	fw.failed = true
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) {
		fw.log.Warn("rag: cannot watch every folder for changes (the kernel's inotify limit): the rest is found by the rescans every rag.rescan_interval; raise fs.inotify.max_user_watches (sysctl) to watch them all",
			"folder", dir, "err", err)
		return
	}
	fw.log.Warn("rag: cannot watch a folder for changes: it is found by the rescans every rag.rescan_interval", "folder", dir, "err", err)
}

// collectionsOf are the collections whose folders hold path.
func (fw *folderWatch) collectionsOf(path string) []string {
	var out []string
	for root, names := range fw.roots {
		if path == root || strings.HasPrefix(path, root+string(filepath.Separator)) {
			for _, n := range names {
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// note takes one event: a new folder (or one moved in) is watched with what it holds, and
// the collections whose folders hold the path are pending until quiet for watchSettle.
func (fw *folderWatch) note(ev fsnotify.Event) {
	if strings.HasPrefix(filepath.Base(ev.Name), ".") {
		return // hidden files are not indexed: an editor's swap file is no change
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// The kernel drops the watch of a folder that goes: forget it and those under it, so
		// that one made again with that name is watched again.
		for d := range fw.watched {
			if d == ev.Name || strings.HasPrefix(d, ev.Name+string(filepath.Separator)) {
				delete(fw.watched, d)
			}
		}
	}
	if ev.Has(fsnotify.Create) {
		fw.addTree(ev.Name)
	}
	names := fw.collectionsOf(ev.Name)
	for _, n := range names {
		fw.pending[n] = true
	}
	if len(names) == 0 {
		return
	}
	if fw.since.IsZero() {
		fw.since = time.Now()
	}
	// A folder that never goes quiet (a log written all the time) is synced anyway, every
	// watchMaxWait.
	if time.Since(fw.since) < watchMaxWait {
		fw.settle.Reset(watchSettle)
	}
}

// lost takes a watcher error: an overflowed kernel queue lost events, so every watched
// collection is synced to be sure.
func (fw *folderWatch) lost(err error) {
	fw.log.Warn("rag: folder watch lost events: syncing every watched collection", "err", err)
	for _, names := range fw.roots {
		for _, n := range names {
			fw.pending[n] = true
		}
	}
	fw.settle.Reset(watchSettle)
}

// take returns the pending collections and forgets them.
func (fw *folderWatch) take() []string {
	names := make([]string, 0, len(fw.pending))
	for n := range fw.pending {
		names = append(names, n)
	}
	slices.Sort(names)
	clear(fw.pending)
	fw.since = time.Time{}
	return names
}

// The channels Store.Run selects on; nil (never ready) without a watch.
func (fw *folderWatch) events() <-chan fsnotify.Event {
	if fw == nil {
		return nil
	}
	return fw.w.Events
}

func (fw *folderWatch) errors() <-chan error {
	if fw == nil {
		return nil
	}
	return fw.w.Errors
}

func (fw *folderWatch) settled() <-chan time.Time {
	if fw == nil {
		return nil
	}
	return fw.settle.C
}

func (fw *folderWatch) close() {
	if fw != nil {
		fw.settle.Stop()
		_ = fw.w.Close()
	}
}

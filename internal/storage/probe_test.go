package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/storage/storetest"
)

// fakeMounts writes a mountinfo where dir is on fsType.
func fakeMounts(t *testing.T, dir, fsType string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mountinfo")
	body := fmt.Sprintf("27 1 253:0 / / rw - ext4 /dev/root rw\n40 27 0:45 / %s rw - %s nas:/export rw\n", dir, fsType)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProbeHungStat(t *testing.T) {
	dir := t.TempDir()
	if _, err := storetest.Model(dir, "tiny", 10); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var hang atomic.Bool
	var changes atomic.Int32
	p := NewProbe(ProbeConfig{
		Dir: dir, RequireMount: true, Timeout: 50 * time.Millisecond, MountInfo: fakeMounts(t, dir, "nfs4"),
		Stat: func(dir string) error {
			if hang.Load() {
				<-release
			}
			return readOne(dir)
		},
	}, nil)
	p.OnChange(func() { changes.Add(1) })
	t.Cleanup(func() {
		if hang.Load() {
			close(release)
		}
	})
	ctx := t.Context()

	p.Check(ctx)
	h := p.Health()
	if !h.Ready() || !h.Mounted || h.FSType != "nfs4" || len(p.Models()) != 1 || p.Models()[0].Name != "tiny:latest" {
		t.Fatalf("healthy store: %+v, models %v", h, p.Models())
	}

	hang.Store(true)
	p.Check(ctx) // returns although the stat hangs
	h = p.Health()
	if h.Healthy || !strings.Contains(h.Error, "did not answer within 50ms (storage.health_timeout)") {
		t.Fatalf("hung stat: %+v", h)
	}
	if len(p.Models()) != 1 {
		t.Errorf("the last known models are kept while the store hangs: %v", p.Models())
	}
	p.Check(ctx) // no second stat while the first hangs
	if h := p.Health(); h.Healthy || !strings.Contains(h.Error, "has not answered since an earlier check") {
		t.Fatalf("second check while hung: %+v", h)
	}

	hang.Store(false)
	close(release)
	hearthtest.Eventually(t, "the hung stat returns", time.Second, func() bool { return !p.pending.Load() })
	p.Check(ctx)
	if h := p.Health(); !h.Ready() || h.Error != "" {
		t.Fatalf("recovered store: %+v", h)
	}
	if n := changes.Load(); n != 4 {
		t.Errorf("%d change notices, want 4 (ready, hung, still hung, recovered)", n)
	}
}

func TestProbeRequireMount(t *testing.T) {
	dir := t.TempDir()
	p := NewProbe(ProbeConfig{Dir: dir, RequireMount: true, Timeout: time.Second, MountInfo: fakeMounts(t, dir, "ext4")}, nil)
	p.Check(t.Context())
	h := p.Health()
	if h.Ready() || h.Mounted || h.FSType != "ext4" || !strings.Contains(h.Error, "is not on a mounted network filesystem") {
		t.Fatalf("unmounted store: %+v", h)
	}
	stop := hearthtest.Run(t, "probe", p.Run)
	err := p.WaitReady(t.Context(), 30*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "still not ready after 30ms (storage.mount_timeout): a mount of type [nfs nfs4 cifs smb3]") {
		t.Fatalf("WaitReady: %v", err)
	}
	stop()

	// Without require_mount a local directory is fine.
	p = NewProbe(ProbeConfig{Dir: dir, Timeout: time.Second, MountInfo: fakeMounts(t, dir, "ext4")}, nil)
	p.Check(t.Context())
	if h := p.Health(); !h.Ready() || h.Mounted {
		t.Fatalf("local store: %+v", h)
	}
	if err := p.WaitReady(t.Context(), time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestProbeSlowScan: reading the models of a big store on a slow NAS may take longer than
// the health timeout. The store stays healthy (its stat answers), and the scan's models
// arrive with a later check.
func TestProbeSlowScan(t *testing.T) {
	dir := t.TempDir()
	if _, err := storetest.Model(dir, "tiny", 10); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var scans atomic.Int32
	p := NewProbe(ProbeConfig{Dir: dir, Timeout: 50 * time.Millisecond, MountInfo: fakeMounts(t, dir, "ext4"),
		Scan: func(dir string) ([]Model, error) {
			if scans.Add(1) == 1 {
				<-release
			}
			return ReadModels(dir)
		}}, nil)
	ctx := t.Context()
	p.Check(ctx)
	if h := p.Health(); !h.Ready() || len(p.Models()) != 0 {
		t.Fatalf("first check, scan still running: %+v, models %v", h, p.Models())
	}
	p.Check(ctx) // the scan still runs: no second one, and the store is healthy
	if h := p.Health(); !h.Ready() || h.Error != "" || scans.Load() != 1 {
		t.Fatalf("second check while the scan runs: %+v, %d scans", h, scans.Load())
	}
	close(release)
	hearthtest.Eventually(t, "the scan ends", 2*time.Second, func() bool { return !p.scanning.Load() })
	p.Check(ctx)
	if m := p.Models(); len(m) != 1 || m[0].Name != "tiny:latest" {
		t.Fatalf("after the slow scan ended: models %v", m)
	}
	if h := p.Health(); !h.Ready() {
		t.Fatalf("health %+v", h)
	}
}

// TestProbeTriggersAnAutomount: with x-systemd.automount the share is mounted on first
// access; until then mountinfo shows autofs at the store. The probe accesses the store (a
// bounded stat), so the share gets mounted, and then finds it mounted.
func TestProbeTriggersAnAutomount(t *testing.T) {
	dir := t.TempDir()
	if _, err := storetest.Model(dir, "tiny", 10); err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(t.TempDir(), "mountinfo")
	autofs := fmt.Sprintf("27 1 253:0 / / rw - ext4 /dev/root rw\n40 27 0:45 / %s rw,relatime shared:30 - autofs systemd-1 rw,fd=52,pgrp=1,timeout=0\n", dir)
	if err := os.WriteFile(info, []byte(autofs), 0o644); err != nil {
		t.Fatal(err)
	}
	var accessed atomic.Int32
	p := NewProbe(ProbeConfig{Dir: dir, RequireMount: true, Timeout: time.Second, MountInfo: info,
		Stat: func(d string) error {
			if accessed.Add(1) == 1 { // the kernel mounts the share behind the autofs
				nfs := autofs + fmt.Sprintf("41 40 0:46 / %s rw,relatime shared:31 - nfs4 nas:/export/ollama rw,vers=4.2\n", dir)
				if err := os.WriteFile(info, []byte(nfs), 0o644); err != nil {
					return err
				}
			}
			return readOne(d)
		}}, nil)
	p.Check(t.Context())
	h := p.Health()
	if !h.Ready() || !h.Mounted || h.FSType != "nfs4" || len(p.Models()) != 1 {
		t.Fatalf("an automounted store: %+v, models %v", h, p.Models())
	}
}

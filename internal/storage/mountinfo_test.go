package storage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMountInfo(t *testing.T) {
	f, err := os.Open("testdata/nas.mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mounts, err := ParseMountInfo(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 8 {
		t.Fatalf("got %d mounts, want 8", len(mounts))
	}
	cifs := mounts[5]
	if cifs.MountPoint != `/mnt/my nas\models` || cifs.Source != "//nas/models share" || cifs.Root != "/share" || cifs.FSType != "cifs" || cifs.ID != 43 || cifs.Parent != 27 {
		t.Errorf("escaped line parsed as %+v", cifs)
	}
	if nfs := mounts[2]; nfs.FSType != "nfs4" || nfs.Source != "nas.lan:/export" || nfs.Options != "rw,relatime" {
		t.Errorf("nfs line parsed as %+v", nfs)
	}
}

func TestParseMountInfoBad(t *testing.T) {
	f, err := os.Open("testdata/short.mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = ParseMountInfo(f)
	if err == nil || !strings.Contains(err.Error(), "mountinfo line 1: want at least 6 fields") {
		t.Fatalf("got %v", err)
	}
}

func TestCheckMount(t *testing.T) {
	tests := []struct {
		dir     string
		mounted bool
		fsType  string
		point   string
	}{
		{"/mnt/nas/ollama-models", true, "nfs", "/mnt/nas/ollama-models"},       // nested mount wins over its parent
		{"/mnt/nas/ollama-models/blobs", true, "nfs", "/mnt/nas/ollama-models"}, // inside it
		{"/mnt/nas/other", true, "nfs4", "/mnt/nas"},
		{"/mnt/nas-backup/models", false, "ext4", "/mnt/nas-backup"}, // a prefix of the name is not a parent
		{"/mnt/nasx", false, "ext4", "/"},
		{`/mnt/my nas\models/ollama`, true, "cifs", `/mnt/my nas\models`},
		{"/mnt/stacked/m", true, "smb3", "/mnt/stacked"}, // the last mount on a point hides the earlier
		{"/mnt/nas/ollama-models/../../../srv", false, "ext4", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			st, err := CheckMount("testdata/nas.mountinfo", tt.dir, DefaultFSTypes)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mounted != tt.mounted || st.Mount.FSType != tt.fsType || st.Mount.MountPoint != tt.point {
				t.Errorf("got mounted=%v %s at %s, want %v %s at %s", st.Mounted, st.Mount.FSType, st.Mount.MountPoint, tt.mounted, tt.fsType, tt.point)
			}
		})
	}
	if _, err := CheckMount("testdata/missing.mountinfo", "/x", DefaultFSTypes); err == nil || !strings.Contains(err.Error(), "missing.mountinfo") {
		t.Errorf("missing file: got %v", err)
	}
}

// TestCheckMountTmpfs mounts a real tmpfs (as root) and reads this process's mountinfo.
func TestCheckMountTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	point := filepath.Join(dir, "store")
	if err := os.Mkdir(point, 0o755); err != nil {
		t.Fatal(err)
	}
	types := []string{"nfs4", "tmpfs"}
	before, err := CheckMount("", point, types)
	if err != nil {
		t.Fatal(err)
	}
	if before.Mount.MountPoint == point {
		t.Fatalf("%s is a mount point before mounting: %+v", point, before)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "hearth-test", point).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", point).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", point, err, out)
		}
	})
	after, err := CheckMount("", filepath.Join(point, "models"), types)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Mounted || after.Mount.FSType != "tmpfs" || after.Mount.MountPoint != point || after.Mount.Source != "hearth-test" {
		t.Fatalf("after mount: %+v", after)
	}
	if nfsOnly, _ := CheckMount("", point, DefaultFSTypes); nfsOnly.Mounted {
		t.Errorf("tmpfs counted as a network filesystem with the default fs_types")
	}
}

// TestParseMountInfoEmptySource: a mount with an empty source ("- tmpfs  rw") keeps its
// fields in place: the source is "", not the super options.
func TestParseMountInfoEmptySource(t *testing.T) {
	in := "27 1 253:0 / / rw shared:1 - ext4 /dev/root rw\n" +
		"50 27 0:46 / /mnt/models rw,relatime shared:30 - tmpfs  rw,size=10240k\n"
	mounts, err := ParseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := MountOf(mounts, "/mnt/models/blobs")
	if !ok || m.ID != 50 || m.FSType != "tmpfs" || m.Source != "" || m.MountPoint != "/mnt/models" || m.Options != "rw,relatime" {
		t.Fatalf("got %+v, %v", m, ok)
	}
}

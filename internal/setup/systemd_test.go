package setup_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/setup"
)

func TestSystemdInstall(t *testing.T) {
	root := t.TempDir()
	var ran []string
	s := setup.Systemd{
		Root: root, Role: "agent", Binary: "/opt/hearth/bin/hearth", ConfigDir: "/srv/hearth", ModelsDir: "/mnt/nas/ollama-models",
		Run: func(_ context.Context, name string, args ...string) error {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return nil
		},
		UserExists: func(string) bool { return false },
	}
	if err := s.EnsureUser(t.Context()); err != nil {
		t.Fatal(err)
	}
	files, err := s.Install(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(root, "etc/systemd/system/hearth-agent.service")
	dropIn := filepath.Join(root, "etc/systemd/system/hearth-agent.service.d/models-dir.conf")
	if len(files) != 2 || files[0] != unitPath || files[1] != dropIn {
		t.Errorf("files %v", files)
	}
	unit := string(readFile(t, unitPath))
	for _, want := range []string{"ExecStart=/opt/hearth/bin/hearth agent --config /srv/hearth/agent.yaml\n",
		"EnvironmentFile=-/srv/hearth/agent.env\n", "Type=notify\n", "User=hearth\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(unit, "/etc/hearth") || strings.Contains(unit, "/usr/bin/hearth") {
		t.Error("unit still names the shipped paths")
	}
	if got := string(readFile(t, dropIn)); !strings.Contains(got, "[Unit]\nRequiresMountsFor=/mnt/nas/ollama-models\n") {
		t.Errorf("drop-in:\n%s", got)
	}
	want := []string{
		"useradd --system --user-group --home-dir /var/lib/hearth --no-create-home --shell /usr/sbin/nologin --comment hearth hearth",
		"systemctl daemon-reload", "systemctl enable hearth-agent.service"}
	if strings.Join(ran, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran:\n%s\nwant:\n%s", strings.Join(ran, "\n"), strings.Join(want, "\n"))
	}

	// Without a models directory the drop-in goes; an existing user is not made again.
	ran = nil
	s.ModelsDir = ""
	s.UserExists = func(string) bool { return true }
	if err := s.EnsureUser(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
		t.Errorf("drop-in still there: %v", err)
	}
	if len(ran) != 2 {
		t.Errorf("ran %v", ran)
	}
	s.ModelsDir = "relative/models"
	if _, err := s.Install(t.Context()); err == nil || !strings.Contains(err.Error(), "give an absolute path") {
		t.Errorf("relative models dir: %v", err)
	}
}

func TestRenderUnitRelay(t *testing.T) {
	unit, err := setup.RenderUnit("relay", "/usr/local/bin/hearth", "/etc/hearth")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/local/bin/hearth relay --config /etc/hearth/relay.yaml\n",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "WatchdogSec=", "ProtectSystem=strict\n", "StateDirectory=hearth\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("relay unit lacks %q", want)
		}
	}
	if _, err := setup.RenderUnit("nas", "/usr/bin/hearth", "/etc/hearth"); err == nil {
		t.Error("a unit for role nas")
	}
	if _, err := setup.RenderUnit("relay", "/my bin/hearth", "/etc/hearth"); err == nil {
		t.Error("a binary path with a space")
	}
}

// With the packages' unit in /usr/lib/systemd/system, --systemd writes no copy into
// /etc/systemd/system (which would hide it from every package upgrade): it enables the
// packaged unit and writes only drop-ins, the mount and, when they differ, the paths.
func TestSystemdInstallOverPackagedUnit(t *testing.T) {
	root := t.TempDir()
	packaged := filepath.Join(root, "usr/lib/systemd/system/hearth-agent.service")
	shipped, _ := setup.RenderUnit("agent", "/usr/bin/hearth", "/etc/hearth")
	os.MkdirAll(filepath.Dir(packaged), 0o755)
	os.WriteFile(packaged, shipped, 0o644)
	var ran []string
	s := setup.Systemd{
		Root: root, Role: "agent", Binary: "/usr/bin/hearth", ConfigDir: "/etc/hearth", ModelsDir: "/mnt/nas/ollama-models",
		Run: func(_ context.Context, name string, args ...string) error {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return nil
		},
	}
	units := filepath.Join(root, "etc/systemd/system")
	copyPath := filepath.Join(units, "hearth-agent.service")
	dropIn := filepath.Join(units, "hearth-agent.service.d/models-dir.conf")
	paths := filepath.Join(units, "hearth-agent.service.d/paths.conf")
	// A copy that an earlier init wrote (the same bytes) hid the packaged unit: it goes.
	os.MkdirAll(units, 0o755)
	os.WriteFile(copyPath, shipped, 0o644)
	files, err := s.Install(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{copyPath + " (removed: it hid the packaged unit)", dropIn}; strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Errorf("files %q, want %q", files, want)
	}
	if _, err := os.Stat(copyPath); !os.IsNotExist(err) {
		t.Errorf("a copy of the unit in /etc/systemd/system: %v", err)
	}
	if !bytes.Equal(readFile(t, packaged), shipped) {
		t.Error("the packaged unit was changed")
	}
	if got := string(readFile(t, dropIn)); !strings.Contains(got, "[Unit]\nRequiresMountsFor=/mnt/nas/ollama-models\n") {
		t.Errorf("drop-in:\n%s", got)
	}
	if _, err := os.Stat(paths); !os.IsNotExist(err) {
		t.Errorf("a paths drop-in for the packages' own paths: %v", err)
	}
	if want := "systemctl daemon-reload\nsystemctl enable hearth-agent.service"; strings.Join(ran, "\n") != want {
		t.Errorf("ran %q, want %q", ran, want)
	}

	// Another config dir: a drop-in points the packaged unit there. A copy of the admin's own is
	// kept, and named.
	os.WriteFile(copyPath, []byte("[Service]\nExecStart=/opt/mine\n"), 0o644)
	s.ConfigDir, s.ModelsDir = "/srv/hearth/", ""
	files, err = s.Install(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{copyPath + " (kept, but it hides /usr/lib/systemd/system/hearth-agent.service: remove it to follow package upgrades)",
		paths, dropIn + " (removed: no models directory)"}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Errorf("files:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	if got, want := string(readFile(t, paths)), "[Service]\nExecStart=\nExecStart=/usr/bin/hearth agent --config /srv/hearth/agent.yaml\n"+
		"EnvironmentFile=\nEnvironmentFile=-/srv/hearth/agent.env\n"; !strings.HasSuffix(got, want) {
		t.Errorf("paths drop-in:\n%s\nwant it to end:\n%s", got, want)
	}
	// Back to the packages' paths: the paths drop-in goes.
	s.ConfigDir = "/etc/hearth"
	if files, err = s.Install(t.Context()); err != nil || !strings.Contains(strings.Join(files, "\n"), paths+" (removed: the packages' paths)") {
		t.Errorf("files %q, %v", files, err)
	}
	if _, err := os.Stat(paths); !os.IsNotExist(err) {
		t.Errorf("paths drop-in still there: %v", err)
	}
}

// TestSystemdInstallWriteFails: a unit that cannot be written (here /etc/systemd/system is a
// file) is an error, and systemd is neither reloaded nor told to enable a unit that is not there.
func TestSystemdInstallWriteFails(t *testing.T) {
	for _, packaged := range []bool{false, true} {
		root := t.TempDir()
		if packaged {
			unit := filepath.Join(root, setup.PackagedUnitDir, "hearth-relay.service")
			if err := os.MkdirAll(filepath.Dir(unit), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(unit, []byte("[Unit]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(root, "etc", "systemd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc", "systemd", "system"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var ran []string
		s := setup.Systemd{Root: root, Role: "relay", Binary: "/opt/hearth/bin/hearth", ConfigDir: "/srv/hearth",
			Run: func(_ context.Context, name string, args ...string) error {
				ran = append(ran, name+" "+strings.Join(args, " "))
				return nil
			}}
		if _, err := s.Install(t.Context()); err == nil {
			t.Errorf("packaged %v: Install wrote into a file as if it were a directory", packaged)
		} else {
			t.Logf("packaged %v: %v", packaged, err)
		}
		if len(ran) != 0 {
			t.Errorf("packaged %v: ran %v after the unit failed to be written", packaged, ran)
		}
	}
}

package setup_test

import (
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

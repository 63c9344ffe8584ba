package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInstallShMac runs install.sh as on a Mac (uname and chown are shims on PATH) into a
// DESTDIR: the binary and the launchd plist, no systemd units, and the config and log
// directories given to the user who ran sudo, whose launchd agent must read agent.env and
// write its log there.
func TestInstallShMac(t *testing.T) {
	shims := t.TempDir()
	chownLog := filepath.Join(shims, "chown.log")
	for name, script := range map[string]string{
		"uname": "#!/bin/sh\ncase \"$1\" in -s) echo Darwin ;; -m) echo arm64 ;; *) exit 1 ;; esac\n",
		"chown": "#!/bin/sh\necho \"$*\" >>" + chownLog + "\n",
	} {
		if err := os.WriteFile(filepath.Join(shims, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(t.TempDir(), "hearth-darwin-arm64")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o644)
	for _, tt := range []struct {
		name, sudoUser, prefix, wantChown, wantSays string
	}{
		{"sudo", "alice", "/usr/local", "alice ROOT/usr/local/etc/hearth ROOT/usr/local/var/log/hearth\n", "next, as alice (no sudo): hearth init agent"},
		{"prefix", "alice", "/opt/hearth", "alice ROOT/opt/hearth/etc/hearth ROOT/opt/hearth/var/log/hearth\n", "gave ROOT/opt/hearth/etc/hearth"},
		{"root", "", "/usr/local", "", "stay root's: run install.sh with sudo from the account that runs Ollama"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(chownLog)
			root := t.TempDir()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", "install.sh", "--bin", bin, "--prefix", tt.prefix)
			cmd.Env = append(os.Environ(), "PATH="+shims+string(os.PathListSeparator)+os.Getenv("PATH"), "DESTDIR="+root, "SUDO_USER="+tt.sudoUser)
			if tt.sudoUser == "" && os.Geteuid() != 0 {
				t.Skip("the root case needs id -un to say root")
			}
			out, err := cmd.CombinedOutput()
			says := strings.ReplaceAll(string(out), root, "ROOT")
			if err != nil {
				t.Fatalf("install.sh: %v\n%s", err, says)
			}
			if !strings.Contains(says, tt.wantSays) {
				t.Errorf("install.sh does not say %q:\n%s", tt.wantSays, says)
			}
			if fi, err := os.Stat(filepath.Join(root, tt.prefix, "bin/hearth")); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("the binary: %v", err)
			}
			plist, err := os.ReadFile(filepath.Join(root, "Library/LaunchAgents/dev.hearth.agent.plist"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"<string>" + tt.prefix + "/bin/hearth</string>", "<string>" + tt.prefix + "/etc/hearth/agent.yaml</string>",
				"<string>" + tt.prefix + "/var/log/hearth/agent.log</string>"} {
				if !strings.Contains(string(plist), want) {
					t.Errorf("the plist lacks %s", want)
				}
			}
			for _, dir := range []string{"etc/hearth", "var/log/hearth"} {
				if fi, err := os.Stat(filepath.Join(root, tt.prefix, dir)); err != nil || !fi.IsDir() {
					t.Errorf("no directory %s/%s: %v", tt.prefix, dir, err)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "etc/systemd")); !os.IsNotExist(err) {
				t.Errorf("systemd units on a Mac: %v", err)
			}
			chowned, _ := os.ReadFile(chownLog)
			if got := strings.ReplaceAll(string(chowned), root, "ROOT"); got != tt.wantChown {
				t.Errorf("chown ran %q, want %q", got, tt.wantChown)
			}
		})
	}
}

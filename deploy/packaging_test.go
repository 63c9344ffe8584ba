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

// TestPreremoveKeepsServicesOnUpgrade: the packages' preremove script stops and disables the
// services when hearth is removed, and leaves them alone when it is upgraded (deb "upgrade",
// rpm 1), which runs it too.
func TestPreremoveKeepsServicesOnUpgrade(t *testing.T) {
	for arg, wantDisable := range map[string]bool{"remove": true, "purge": true, "0": true, "upgrade": false, "1": false, "failed-upgrade": false} {
		dir := t.TempDir()
		log := filepath.Join(dir, "systemctl.log")
		os.WriteFile(filepath.Join(dir, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >>"+log+"\n"), 0o755)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "sh", "packaging/preremove.sh", arg)
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "HEARTH_SYSTEMD_RUN="+dir)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("preremove.sh %s: %v\n%s", arg, err, out)
		}
		ran, _ := os.ReadFile(log)
		want := ""
		if wantDisable {
			want = "disable --now hearth-agent.service\ndisable --now hearth-relay.service\n"
		}
		if string(ran) != want {
			t.Errorf("preremove.sh %s ran systemctl %q, want %q", arg, strings.TrimSpace(string(ran)), strings.TrimSpace(want))
		}
	}
}

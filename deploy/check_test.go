package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runCheck runs check.sh with bin and a fake shellcheck that prints shellcheckSays and exits
// shellcheckExit (the real tools' verdicts are CI's; this is about what a failure prints).
func runCheck(t *testing.T, bin, shellcheckSays string, shellcheckExit int) (string, int) {
	t.Helper()
	fake := t.TempDir()
	script := "#!/bin/sh\necho '" + shellcheckSays + "'\nexit " + strconv.Itoa(shellcheckExit) + "\n"
	if err := os.WriteFile(filepath.Join(fake, "shellcheck"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "check.sh", bin)
	cmd.Env = append(os.Environ(), "PATH="+fake+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("sh check.sh: %v", err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// TestCheckShSaysWhy: a failing check.sh names the check that failed and shows the output
// that says why, instead of exiting with set -e's silence.
func TestCheckShSaysWhy(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "hearth")
	os.WriteFile(bad, []byte("#!/bin/sh\necho 'cannot execute binary file: Exec format error'\nexit 126\n"), 0o755)

	out, code := runCheck(t, bad, "install.sh:3: SC2086 (info): Double quote to prevent globbing", 1)
	for _, want := range []string{"SC2086 (info): Double quote", "shellcheck found problems", "FAILED (exit 1) while: shellcheck"} {
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("shellcheck failing: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}

	out, code = runCheck(t, bad, "", 0)
	for _, want := range []string{"shellcheck: ok", "Exec format error", "the installed hearth does not run",
		"FAILED (exit 1) while: install.sh into a temporary root"} {
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("a binary that does not run: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}

	if head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		stale := filepath.Join(t.TempDir(), "hearth")
		os.WriteFile(stale, []byte("#!/bin/sh\necho 'hearth v0.1.0 (commit 0123456789ab, go1.26 linux/amd64)'\n"), 0o755)
		out, code = runCheck(t, stale, "", 0)
		if want := "does not name the commit " + strings.TrimSpace(string(head)); code == 0 || !strings.Contains(out, want) {
			t.Errorf("a binary of another commit: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}

	out, code = runCheck(t, filepath.Join(t.TempDir(), "none"), "", 0)
	if code == 0 || !strings.Contains(out, "no hearth binary at ") {
		t.Errorf("no binary: exit %d:\n%s", code, out)
	}
}

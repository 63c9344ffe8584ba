package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

// TestChildIsTerminatedWhenTheAgentDies: an agent killed with SIGKILL sends its managed
// Ollama SIGTERM, which `ollama serve` answers by stopping its runners. The "agent" is this
// test binary run again (TestChildAttrParent), the "Ollama" a script that records the signal
// it got; with SIGKILL as the parent-death signal it records nothing and its runner lived on.
func TestChildIsTerminatedWhenTheAgentDies(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "signal")
	script := filepath.Join(dir, "ollama")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntrap 'echo TERM > \"$MARK\"; exit 0' TERM\necho $$ > \"$MARK.started\"\nwhile :; do sleep 0.05; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestChildAttrParent$", "-test.count=1")
	parent.Env = append(os.Environ(), "HEARTH_TEST_CHILDATTR="+script, "MARK="+mark)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	hearthtest.Eventually(t, "the parent's child to start", 10*time.Second, func() bool {
		_, err := os.Stat(mark + ".started")
		return err == nil
	})
	t.Cleanup(func() { // a child that outlived the test's failure
		if b, err := os.ReadFile(mark + ".started"); err == nil {
			var pid int
			if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	hearthtest.Eventually(t, "SIGTERM to the child of a killed agent (Ollama would leave its runner behind)", 10*time.Second, func() bool {
		b, _ := os.ReadFile(mark)
		return strings.TrimSpace(string(b)) == "TERM"
	})
}

// TestChildAttrParent is the agent of TestChildIsTerminatedWhenTheAgentDies: it starts the
// child as the agent starts Ollama and waits to be killed.
func TestChildAttrParent(t *testing.T) {
	script := os.Getenv("HEARTH_TEST_CHILDATTR")
	if script == "" {
		t.Skip("run by TestChildIsTerminatedWhenTheAgentDies")
	}
	cmd := exec.Command(script)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

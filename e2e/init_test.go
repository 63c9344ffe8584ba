//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInitAndDoctorWithRealOllama: the built hearth's `hearth init agent` finds the real
// Ollama (through OLLAMA_HOST, as on a home machine) and lists its models in the config and its
// output; `hearth doctor` on that config names the real Ollama's version, and, with no agent
// running on the written node.listen, fails with exit status 1 and says so.
func TestInitAndDoctorWithRealOllama(t *testing.T) {
	s := use(t)
	s.agentOnly(t)
	dir := t.TempDir()
	ollamaHost := strings.TrimPrefix(s.ollamaURL, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	initCmd := exec.CommandContext(ctx, s.hearthBin, "init", "agent", "--name", "e2e-home", "--relay", "relay.test:7000",
		"--token", relayTunnelToken, "--dir", dir, "--state-dir", filepath.Join(dir, "state"))
	initCmd.Env = append(initCmd.Environ(), "HOME="+s.home(), "OLLAMA_HOST="+ollamaHost)
	out, err := initCmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hearth init agent: %v\n%s", err, out)
	}
	for _, want := range []string{"Ollama at " + s.ollamaURL + " has 3 model(s)", "tiny:latest", "tiny2:latest", toolsModel + ":latest",
		"--join e2e-home:7946 --cluster-secret "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("init output lacks %q:\n%s", want, out)
		}
	}
	runHearth(t, s, "config", "check", "--role", "agent", "--env-file", filepath.Join(dir, "agent.env"), filepath.Join(dir, "agent.yaml"))

	doc := exec.CommandContext(ctx, s.hearthBin, "doctor", "--config", filepath.Join(dir, "agent.yaml"))
	doc.Env = append(doc.Environ(), "HOME="+s.home())
	out, err = doc.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("doctor with no agent running: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"ok   ollama       Ollama ", " answers at " + s.ollamaURL + ".",
		"FAIL agent        the agent does not answer on 0.0.0.0:11500", "checks failed."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
}

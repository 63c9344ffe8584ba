//go:build e2e

package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestAgentTellsSystemdItIsReady: the built `hearth agent`, started as systemd starts a
// Type=notify unit (NOTIFY_SOCKET, WATCHDOG_USEC), sends READY=1 once it is built, WATCHDOG=1
// while it runs and STOPPING=1 on SIGTERM, then exits 0.
func TestAgentTellsSystemdItIsReady(t *testing.T) {
	s := use(t)
	s.agentOnly(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "agent.yaml")
	spec := agentSpec{Name: "notified", OllamaURL: s.ollamaURL}
	if err := os.WriteFile(cfg, []byte(spec.yaml(port, filepath.Join(dir, "data"))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.hearthBin, "agent", "--config", cfg)
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Env = append(os.Environ(), "HOME="+s.home(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	t.Cleanup(func() { killGroup(cmd.Process.Pid, 5*time.Second) })
	read := func() string {
		t.Helper()
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("notify socket: %v\nagent log:\n%s", err, log.String())
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if got := read(); got != "WATCHDOG=1" {
		t.Fatalf("second notification %q, want WATCHDOG=1", got)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for got := read(); got != "STOPPING=1"; got = read() {
		if got != "WATCHDOG=1" {
			t.Fatalf("notification %q, want STOPPING=1", got)
		}
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent still running 30s after SIGTERM")
	}
}

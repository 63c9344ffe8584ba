package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/doctor"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/internal/setup"
	"github.com/hearthlab/hearth/relay"
	"github.com/hearthlab/hearth/relay/tokens"
)

// runInitCmd runs `hearth init ARGS` with the machine parts given (no chown, no systemctl).
func runInitCmd(t *testing.T, d initDeps, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := newInitCmd(d)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("hearth init %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func testInitDeps(root string, ran *[]string) initDeps {
	return initDeps{
		env:  setup.Env{Chown: func(string) error { return nil }},
		host: func() (string, error) { return "Home-Node.lan", nil },
		systemd: setup.Systemd{Root: root, Binary: "/usr/local/bin/hearth",
			Run: func(_ context.Context, name string, args ...string) error {
				*ran = append(*ran, name+" "+strings.Join(args, " "))
				return nil
			},
			UserExists: func(string) bool { return true }},
	}
}

// A Mac has no systemd: --systemd there says what to do instead of running useradd.
func TestInitSystemdOnAMac(t *testing.T) {
	var ran []string
	d := testInitDeps(t.TempDir(), &ran)
	d.env.GOOS = "darwin"
	cmd := newInitCmd(d)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"agent", "--no-ollama", "--dir", t.TempDir(), "--systemd"})
	err := cmd.ExecuteContext(t.Context())
	if err == nil || !strings.Contains(err.Error(), "a Mac has no systemd: sudo sh install.sh puts the launchd plist in place") || len(ran) != 0 {
		t.Errorf("init --systemd on a Mac: %v, ran %v", err, ran)
	}
}

// writeCert writes a self-signed certificate for names, valid for 90 days (hearthtest.WriteCert).
func writeCert(t *testing.T, dir string, names ...string) (certFile, keyFile string) {
	t.Helper()
	return hearthtest.WriteCert(t, dir, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour), names...)
}

// pastedLine is the `hearth init agent ...` line that `hearth init relay` printed.
func pastedLine(t *testing.T, out string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "hearth init agent --relay ") {
			return strings.Fields(l)[2:]
		}
	}
	t.Fatalf("no `hearth init agent` line in:\n%s", out)
	return nil
}

// TestInitConfigsConnectAndChat is the ten-minute path in one process: `hearth init relay`
// on the "VPS" (a brought certificate), the printed line pasted into `hearth init agent` at
// "home" (ollamasim as its Ollama), both started from the files written — only their
// listeners moved to 127.0.0.1 and kernel-chosen ports — and a phone's chat through the tunnel.
func TestInitConfigsConnectAndChat(t *testing.T) {
	tmp := t.TempDir()
	var ran []string
	d := testInitDeps(filepath.Join(tmp, "root"), &ran)
	certFile, keyFile := writeCert(t, tmp, "relay.test")
	vps, home := filepath.Join(tmp, "vps"), filepath.Join(tmp, "home")

	var err error
	out := runInitCmd(t, d, "relay", "--domain", "relay.test", "--cert", certFile, "--key", keyFile,
		"--dir", vps, "--state-dir", filepath.Join(vps, "state"), "--systemd")
	paste := pastedLine(t, out)
	if paste[len(paste)-2] != "--relay-ca" {
		t.Fatalf("a brought certificate's paste line should ask for --relay-ca: %v", paste)
	}
	paste[len(paste)-1] = certFile

	sim := ollamasim.New(ollamasim.Config{Models: []ollamasim.Model{{Name: "tiny"}}, Tokens: 5})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	agentOut := runInitCmd(t, d, append(paste, "--ollama", sim.URL(), "--dir", home, "--state-dir", filepath.Join(home, "state"), "--systemd")...)
	if !strings.Contains(agentOut, "has 1 model(s): tiny:latest") {
		t.Errorf("init agent did not list the Ollama's models:\n%s", agentOut)
	}
	if want := []string{"systemctl daemon-reload", "systemctl enable hearth-relay.service", "systemctl daemon-reload", "systemctl enable hearth-agent.service"}; strings.Join(ran, ",") != strings.Join(want, ",") {
		t.Errorf("ran %v, want %v", ran, want)
	}
	if _, err := os.Stat(filepath.Join(tmp, "root/etc/systemd/system/hearth-agent.service")); err != nil {
		t.Error(err)
	}

	rcfg := loadWritten(t, vps, "relay", config.LoadRelayWith)
	rcfg.Listen = config.RelayListen{HTTPS: "127.0.0.1:0"}
	rcfg.Tunnel.Bind = "127.0.0.1:0"
	var logs hearthtest.Logs
	rl, err := relay.New(rcfg, "", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "relay", rl.Run)

	acfg := loadWritten(t, home, "agent", config.LoadAgentWith)
	if acfg.Node.Name != "home-node" || acfg.Tunnel.Relay != "relay.test:7000" || acfg.Ollama.URL != sim.URL() {
		t.Fatalf("agent config: name %q relay %q ollama %q", acfg.Node.Name, acfg.Tunnel.Relay, acfg.Ollama.URL)
	}
	acfg.Node.Listen, acfg.Cluster.Bind = "127.0.0.1:0", "127.0.0.1:0"
	acfg.Tunnel.Relay, acfg.Tunnel.ServerName = rl.TunnelAddr().String(), "relay.test" // relay.test does not resolve here
	a, err := agent.New(acfg, slog.New(slog.NewTextHandler(&logs, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "agent", a.Run)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})

	token, _, err := rl.Store().Create(t.Context(), tokens.Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(pem)
	phone := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, rl.HTTPSAddr().String())
		},
	}}
	t.Cleanup(phone.CloseIdleConnections)
	var status int
	var body []byte
	hearthtest.Eventually(t, "a chat through the tunnel answered", 30*time.Second, func() bool {
		req, _ := http.NewRequest(http.MethodPost, "https://relay.test/v1/chat/completions",
			strings.NewReader(`{"model":"tiny","messages":[{"role":"user","content":"hello"}]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := phone.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		return status == http.StatusOK
	})
	var answer struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &answer) != nil || len(answer.Choices) != 1 || !strings.HasPrefix(answer.Choices[0].Message.Content, "tok0 ") {
		t.Fatalf("chat through the tunnel: %d %s", status, body)
	}

	// `hearth doctor` on both machines finds nothing wrong: DNS and port ownership are
	// answered by seams (relay.test does not resolve; the ports' holder is this test binary).
	env := doctor.Env{
		LookupHost: func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil },
		PortHolder: func(int) string { return "hearth (pid 1)" },
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == "relay.test:443" {
				addr = rl.HTTPSAddr().String()
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	rcfg.Listen.HTTPS, rcfg.Tunnel.Bind = rl.HTTPSAddr().String(), rl.TunnelAddr().String()
	acfg.Node.Listen, acfg.Cluster.Bind = a.Addr().String(), a.GossipAddr()
	for _, report := range []doctor.Report{doctor.Relay(t.Context(), rcfg, env), doctor.Agent(t.Context(), acfg, env)} {
		var b strings.Builder
		report.Write(&b)
		if !report.OK() || !strings.Contains(b.String(), "checks passed") {
			t.Errorf("doctor on the %s:\n%s", report.Role, b.String())
		}
		t.Logf("doctor on the %s:\n%s", report.Role, b.String())
	}

	// The command itself, on the written agent.yaml (its env file beside it): the agent is not
	// running on 0.0.0.0:11500, so doctor fails and says so.
	for _, k := range []string{"HEARTH_CLUSTER_KEY", "HEARTH_TUNNEL_TOKEN"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	out, err = run("doctor", "--config", filepath.Join(home, "agent.yaml"))
	var silent silentError
	if !errors.As(err, &silent) || !strings.Contains(out, "ok   config       "+filepath.Join(home, "agent.yaml")+" loads.") ||
		!strings.Contains(out, "FAIL agent        the agent does not answer on 0.0.0.0:11500") {
		t.Errorf("doctor on a stopped agent: %v\n%s", err, out)
	}
}

// loadWritten loads DIR/ROLE.yaml with the ${VAR}s of DIR/ROLE.env, as systemd's
// EnvironmentFile provides them.
func loadWritten[T any](t *testing.T, dir, role string, load func(string, func(string) (string, bool)) (T, error)) T {
	t.Helper()
	env, err := config.ReadEnvFile(filepath.Join(dir, role+".env"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, role+".env"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s.env mode %v, want 0600", role, fi.Mode().Perm())
	}
	cfg, err := load(filepath.Join(dir, role+".yaml"), config.EnvLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestEnvFileFillsTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.yaml")
	os.WriteFile(filepath.Join(dir, "relay.env"), []byte("# secrets\nHEARTH_TEST_FROM_FILE=from-file\nHEARTH_TEST_SET=from-file\n"), 0o600)
	t.Setenv("HEARTH_TEST_SET", "from-process")
	t.Setenv("HEARTH_TEST_FROM_FILE", "")
	os.Unsetenv("HEARTH_TEST_FROM_FILE")
	if err := loadEnvFiles("", cfg, true, config.ReadEnvFile); err != nil {
		t.Fatal(err)
	}
	if got, want := os.Getenv("HEARTH_TEST_FROM_FILE")+","+os.Getenv("HEARTH_TEST_SET"), "from-file,from-process"; got != want {
		t.Errorf("environment %q, want %q (the process's own value wins)", got, want)
	}
	os.WriteFile(filepath.Join(dir, "bad.env"), []byte("not a line\n"), 0o600)
	if err := loadEnvFiles(filepath.Join(dir, "bad.env"), cfg, true, config.ReadEnvFile); err == nil || !strings.Contains(err.Error(), "bad.env:1: not VAR=value") {
		t.Errorf("bad env file: %v", err)
	}
	if err := loadEnvFiles("", filepath.Join(dir, "none", "agent.yaml"), true, config.ReadEnvFile); err != nil {
		t.Errorf("a missing env file beside the config is no error: %v", err)
	}
}

// An env file that exists but this user may not read (on a Mac, agent.env that `sudo hearth
// init` left root's) is an error that says what to do, not a silent skip that ends in
// "HEARTH_CLUSTER_KEY is not set" far from its cause; unless its config needs nothing more
// (a container whose env_file set it all) or the command reads no config (hearth version).
func TestUnreadableEnvFileSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	envPath := filepath.Join(dir, "agent.env")
	os.WriteFile(cfg, []byte("# ${VAR}s come from agent.env\ncluster: { secret: \"${HEARTH_TEST_UNREADABLE_KEY}\" }\n"), 0o644)
	os.WriteFile(envPath, []byte("HEARTH_TEST_UNREADABLE_KEY=a2V5\n"), 0o600)
	// Root reads any file: the test fakes the one a user may not read, as os.Open reports it.
	read := func(p string) (map[string]string, error) {
		if p == envPath {
			return nil, fmt.Errorf("config: %w", &fs.PathError{Op: "open", Path: p, Err: syscall.EACCES})
		}
		return config.ReadEnvFile(p)
	}
	t.Setenv("HEARTH_TEST_UNREADABLE_KEY", "")
	os.Unsetenv("HEARTH_TEST_UNREADABLE_KEY")
	err := loadEnvFiles("", cfg, true, read)
	for _, want := range []string{envPath + " exists but ", " may not read it, and " + cfg + " needs ${HEARTH_TEST_UNREADABLE_KEY} from it",
		"run hearth with sudo", "sudo chown "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("unreadable env file: %v, want it to say %q", err, want)
		}
	}
	if err := loadEnvFiles("", cfg, false, read); err != nil {
		t.Errorf("a command that reads no config: %v", err)
	}
	if err := loadEnvFiles(envPath, "", false, read); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("--env-file named but unreadable: %v", err)
	}
	t.Setenv("HEARTH_TEST_UNREADABLE_KEY", "from-env_file")
	if err := loadEnvFiles("", cfg, true, read); err != nil {
		t.Errorf("the config needs nothing more from the file: %v", err)
	}
	if os.Geteuid() != 0 { // the real thing, where the test user is not root
		os.Unsetenv("HEARTH_TEST_UNREADABLE_KEY")
		os.Chmod(envPath, 0)
		if err := loadEnvFiles("", cfg, true, config.ReadEnvFile); err == nil || !strings.Contains(err.Error(), "may not read it") {
			t.Errorf("a mode 0000 env file: %v", err)
		}
	}
}

func TestDoctorConfigProblems(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "relay.yaml")
	os.WriteFile(bad, []byte("domains: [ai.example.com]\ntunnel: { token: \"${HEARTH_TEST_UNSET_TOKEN}\" }\n"), 0o644)
	out, err := run("doctor", "--config", bad)
	var silent silentError
	if !errors.As(err, &silent) || !strings.HasPrefix(out, "FAIL config       "+bad+":2: environment variable HEARTH_TEST_UNSET_TOKEN is not set") {
		t.Errorf("doctor on a config that does not load: %v\n%s", err, out)
	}
	if _, err := run("doctor", "--role", "nas"); err == nil || err.Error() != `--role "nas": use agent or relay` {
		t.Errorf("--role nas: %v", err)
	}
}

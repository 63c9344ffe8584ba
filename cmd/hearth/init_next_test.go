package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/config"
)

// nextCommand is the hearth command on the line of out that starts with label, as args.
func nextCommand(t *testing.T, out, label string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), label); ok {
			f := strings.Fields(rest)
			if len(f) == 0 || f[0] != "hearth" {
				t.Fatalf("%q is not a hearth command: %q", label, rest)
			}
			return f[1:]
		}
	}
	t.Fatalf("no %q line in:\n%s", label, out)
	return nil
}

// TestInitNextStepsRunAsPrinted: the commands `hearth init` prints as next steps run as
// printed (the phone's token is made in the database the written config names), and no
// secret of the env files is printed but the relay's tunnel token in the one paste line.
func TestInitNextStepsRunAsPrinted(t *testing.T) {
	tmp := t.TempDir()
	var ran []string
	d := testInitDeps(filepath.Join(tmp, "root"), &ran)
	vps, home := filepath.Join(tmp, "vps"), filepath.Join(tmp, "home")
	state := filepath.Join(vps, "state")
	out := runInitCmd(t, d, "relay", "--domain", "relay.test", "--email", "me@example.com", "--dir", vps, "--state-dir", state)
	relayEnv, err := config.ReadEnvFile(filepath.Join(vps, "relay.env"))
	if err != nil {
		t.Fatal(err)
	}
	paste := pastedLine(t, out)
	noSecretsPrinted(t, out, relayEnv, "hearth init agent --relay relay.test:7000 --token "+relayEnv["HEARTH_TUNNEL_TOKEN"])

	if got := nextCommand(t, out, "Check it:"); strings.Join(got, " ") != "doctor --role relay --config "+filepath.Join(vps, "relay.yaml") {
		t.Errorf("the doctor line runs %q: it must name the written config", got)
	}
	// The token command loads the written config, its ${VAR}s from relay.env beside it.
	for _, k := range []string{"HEARTH_TUNNEL_TOKEN", "HEARTH_ADMIN_KEY"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	tokenOut, err := run(nextCommand(t, out, "A token for the phone:")...)
	if err != nil || !strings.Contains(tokenOut, `Created token "phone"`) {
		t.Fatalf("the printed token command: %v\n%s", err, tokenOut)
	}
	if _, err := os.Stat(filepath.Join(state, "relay.db")); err != nil {
		t.Errorf("the token is not in the written config's database: %v", err)
	}

	agentOut := runInitCmd(t, d, append(paste, "--no-ollama", "--dir", home, "--state-dir", filepath.Join(home, "state"))...)
	agentEnv, err := config.ReadEnvFile(filepath.Join(home, "agent.env"))
	if err != nil {
		t.Fatal(err)
	}
	noSecretsPrinted(t, agentOut, agentEnv, "")
	if !strings.Contains(agentOut, "--cluster-secret KEY") || !strings.Contains(agentOut, "HEARTH_CLUSTER_KEY in "+filepath.Join(home, "agent.env")) {
		t.Errorf("the join line should say where the cluster key is:\n%s", agentOut)
	}
	if got := nextCommand(t, agentOut, "Check it:"); strings.Join(got, " ") != "doctor --role agent --config "+filepath.Join(home, "agent.yaml") {
		t.Errorf("the doctor line runs %q: it must name the written config", got)
	}
}

// noSecretsPrinted fails when out holds a value of env anywhere but on the line allowed.
func noSecretsPrinted(t *testing.T, out string, env map[string]string, allowed string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if allowed != "" && strings.TrimSpace(l) == allowed {
			continue
		}
		for k, v := range env {
			if v != "" && strings.Contains(l, v) {
				t.Errorf("%s is printed: %q", k, l)
			}
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadEnvFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.env")
	os.WriteFile(good, []byte("# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='single'\nE=\n"), 0o600)
	env, err := ReadEnvFile(good)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "two words", "C": "quoted # not a comment", "D": "single", "E": ""}
	if len(env) != len(want) {
		t.Errorf("got %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	bad := filepath.Join(dir, "bad.env")
	os.WriteFile(bad, []byte("A=1\n1X=2\n"), 0o600)
	if _, err := ReadEnvFile(bad); err == nil || err.Error() != bad+":2: not VAR=value (names are letters, digits and _)" {
		t.Errorf("bad: %v", err)
	}
	if _, err := ReadEnvFile(filepath.Join(dir, "none.env")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing: %v", err)
	}
}

func TestLoadRelayWithLooksUpOnlyThere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.yaml")
	os.WriteFile(path, []byte("domains: [ai.example.com]\ntunnel: { token: \"${T}\" }\nadmin_key: \"${A}\"\n"), 0o600)
	cfg, err := LoadRelayWith(path, EnvLookup(map[string]string{"T": "tunnel-0123456789abcdef", "A": "admin-0123456789abcdef"}))
	if err != nil || cfg.Tunnel.Token != "tunnel-0123456789abcdef" || cfg.AdminKey != "admin-0123456789abcdef" {
		t.Fatalf("%+v %v", cfg.Tunnel, err)
	}
	if _, err := LoadRelayWith(path, func(string) (string, bool) { return "", false }); err == nil || !strings.Contains(err.Error(), "environment variable T is not set") {
		t.Errorf("unset: %v", err)
	}
}

// UnsetVars names what an env file must still supply: ${VAR}s in values only (not in comments,
// not $${escaped}), those the lookup lacks.
func TestUnsetVars(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("# ${VAR}s come from agent.env\ncluster: { secret: \"${K}\" }\ntunnel: { token: \"${T}\", relay: \"$${NOT}:7000\" }\n"), 0o644)
	lookup := func(k string) (string, bool) { return "x", k == "T" }
	if got := strings.Join(UnsetVars(path, lookup), ","); got != "K" {
		t.Errorf("unset %q, want K", got)
	}
	if got := UnsetVars(path, func(string) (string, bool) { return "x", true }); len(got) != 0 {
		t.Errorf("all set: %v", got)
	}
	if got := UnsetVars(filepath.Join(t.TempDir(), "none.yaml"), lookup); len(got) != 0 {
		t.Errorf("no file: %v", got)
	}
}

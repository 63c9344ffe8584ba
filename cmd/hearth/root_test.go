package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func run(args ...string) (string, error) {
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		file, out, err string
	}{
		{"../../internal/config/testdata/minimal.good.yaml", "../../internal/config/testdata/minimal.good.yaml: ok (agent config)\n", ""},
		{"../../internal/config/testdata/unknown-key.bad.yaml", "",
			`../../internal/config/testdata/unknown-key.bad.yaml:3: unknown key "lisen" in node (known keys: api_keys, cors_origins, data_dir, listen, max_body, name, trusted_networks)`},
	}
	for _, tt := range tests {
		out, err := run("config", "check", tt.file)
		if out != tt.out {
			t.Errorf("%s: output %q, want %q", tt.file, out, tt.out)
		}
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("%s: error %v, want %q", tt.file, err, tt.err)
		}
	}
}

// `hearth config check FILE` takes the ${VAR}s from the env file beside FILE, as the relay
// and agent do: on the pair `hearth init` writes (and whose header says to run it) it said
// "environment variable HEARTH_TUNNEL_TOKEN is not set".
func TestConfigCheckReadsTheEnvFileBesideIt(t *testing.T) {
	for _, v := range []string{"HEARTH_TUNNEL_TOKEN", "HEARTH_ADMIN_KEY"} {
		t.Setenv(v, "") // restored after the test; unset during it, as on a fresh machine
		os.Unsetenv(v)
	}
	dir := t.TempDir()
	if out, err := run("init", "relay", "--domain", "ai.example.com", "--cert", "/c.pem", "--key", "/k.pem", "--dir", dir, "--state-dir", dir); err != nil {
		t.Fatalf("init relay: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "relay.yaml")
	out, err := run("config", "check", "--role", "relay", cfg)
	if err != nil || out != cfg+": ok (relay config)\n" {
		t.Errorf("config check %s: %v\n%s", cfg, err, out)
	}
	// The file by --config, and the role from its name: "check --config relay.yaml" said
	// "accepts 1 arg(s)", and without --role a relay.yaml was read as an agent's config.
	for _, args := range [][]string{{"config", "check", "--config", cfg}, {"config", "check", cfg}} {
		if out, err := run(args...); err != nil || out != cfg+": ok (relay config)\n" {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := run("config", "check"); err == nil || !strings.Contains(err.Error(), "hearth config check FILE") {
		t.Errorf("config check without a file: %v\n%s", err, out)
	}
}

// A flag's usage must not hold `backquotes`: pflag takes the quoted words for the value's
// name, and help showed "--token hearth init relay" and "--env-file hearth init".
func TestFlagHelpNamesItsValue(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if name, _ := pflag.UnquoteUsage(f); strings.Contains(name, " ") {
					t.Errorf("%s --%s: help shows its value as %q", c.CommandPath(), f.Name, name)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}

func TestVersion(t *testing.T) {
	out, err := run("version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "hearth dev (commit ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version output %q", out)
	}
}

func TestHelpNamesEachRole(t *testing.T) {
	out, err := run("--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hearth agent", "hearth relay", "operator", "--log-format", "--config"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}

func TestBadLogFlags(t *testing.T) {
	_, err := run("agent", "--log-level", "loud")
	if err == nil || err.Error() != `--log-level "loud": use debug, info, warn or error` {
		t.Errorf("got %v", err)
	}
}

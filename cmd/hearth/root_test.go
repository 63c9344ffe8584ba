package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
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
			`../../internal/config/testdata/unknown-key.bad.yaml:3: unknown key "lisen" in node (known keys: api_keys, data_dir, listen, max_body, name, trusted_networks)`},
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

package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readBack is what init validates the env file with: the file as hearth reads it must give
// back exactly the variables written, and nothing from the process environment.
func TestReadBack(t *testing.T) {
	dir := t.TempDir()
	vars := [][2]string{{"HEARTH_CLUSTER_KEY", "a2V5"}, {"HEARTH_TUNNEL_TOKEN", "0123456789abcdef"}}
	good := filepath.Join(dir, "good.env")
	os.WriteFile(good, envFile("# header\n", vars), 0o600)
	t.Setenv("HEARTH_FROM_PROCESS", "x")
	lookup, err := readBack(good, vars)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := lookup("HEARTH_TUNNEL_TOKEN"); !ok || v != "0123456789abcdef" {
		t.Errorf("lookup = %q, %v", v, ok)
	}
	if _, ok := lookup("HEARTH_FROM_PROCESS"); ok {
		t.Error("the lookup reads the process environment")
	}
	for name, tt := range map[string]struct{ data, want string }{
		"changed": {"HEARTH_CLUSTER_KEY=a2V5\nHEARTH_TUNNEL_TOKEN='0123456789abcdef'x\n", "HEARTH_TUNNEL_TOKEN does not read back"},
		"extra":   {"HEARTH_CLUSTER_KEY=a2V5\nHEARTH_TUNNEL_TOKEN=0123456789abcdef\nOTHER=1\n", "holds 3 variables, not the 2 written"},
		"broken":  {"HEARTH_CLUSTER_KEY=a2V5\nnot a line\n", "does not read back: " + filepath.Join(dir, "broken.env") + ":2"},
	} {
		p := filepath.Join(dir, name+".env")
		os.WriteFile(p, []byte(tt.data), 0o600)
		if _, err := readBack(p, vars); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
	}
}

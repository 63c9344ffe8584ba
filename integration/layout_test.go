package integration

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/hearthlab/hearth"

// TestImportsFollowTheLayout: the package layout of DESIGN.md holds. router and rag never
// import agent or relay; nothing imports the relay root (the wiring) but cmd/hearth and tests
// (integration, e2e, the relay's own external tests) and the benchmarks that start a relay;
// the relay does not import router.
func TestImportsFollowTheLayout(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod above the integration package: %v", err)
	}
	var problems []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		dir := filepath.ToSlash(filepath.Dir(rel))
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if why := forbidden(dir, strings.HasSuffix(path, "_test.go"), p); why != "" {
				problems = append(problems, filepath.ToSlash(rel)+" imports "+p+": "+why)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d Go files under %s", files, root)
	}
	if len(problems) > 0 {
		t.Errorf("imports that DESIGN.md's layout forbids:\n%s", strings.Join(problems, "\n"))
	}
}

// forbidden says why a file in dir (relative to the module, slash-separated) may not import
// p, or "" when it may.
func forbidden(dir string, test bool, p string) string {
	under := func(d, pkg string) bool { return d == pkg || strings.HasPrefix(d, pkg+"/") }
	if !strings.HasPrefix(p, module+"/") {
		return ""
	}
	target := strings.TrimPrefix(p, module+"/")
	switch {
	case (under(dir, "router") || under(dir, "rag")) && (under(target, "agent") || under(target, "relay")):
		return "router and rag never import the roles"
	case target == "relay" && !(dir == "cmd/hearth" || under(dir, "integration") || under(dir, "e2e") ||
		under(dir, "bench") || (dir == "relay" && test)):
		return "only cmd/hearth and tests import the relay root (the wiring): import the relay/... package that holds it"
	case under(dir, "relay") && under(target, "router"):
		return "the relay shares vocabulary with router through internal/ packages, not router"
	}
	return ""
}

func TestForbidden(t *testing.T) {
	for _, tc := range []struct {
		dir    string
		test   bool
		p      string
		denied bool
	}{
		{"router/cluster", false, module + "/agent", true},
		{"rag", true, module + "/relay/tokens", true},
		{"router", false, module + "/internal/apierror", false},
		{"relay/chain", false, module + "/relay", true},
		{"relay", false, module + "/relay/tokens", false},
		{"relay", true, module + "/relay", false},
		{"cmd/hearth", false, module + "/relay", false},
		{"agent", false, module + "/relay", true},
		{"relay/usage", false, module + "/router", true},
		{"relay/tokens", false, "github.com/other/relay", false},
	} {
		if got := forbidden(tc.dir, tc.test, tc.p) != ""; got != tc.denied {
			t.Errorf("forbidden(%q, %v, %q) = %v, want %v", tc.dir, tc.test, tc.p, got, tc.denied)
		}
	}
}

// TestLayoutNamesEveryPackage: every directory of the module (top level, and under internal/,
// relay/, bench/) is named in DESIGN.md's layout, so that the layout matches `ls`.
func TestLayoutNamesEveryPackage(t *testing.T) {
	design, err := os.ReadFile("../docs/DESIGN.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(design), "## Layout\n")
	if !ok {
		t.Fatal("docs/DESIGN.md has no Layout section")
	}
	block, _, _ = strings.Cut(block, "\n## ")
	named := map[string]bool{}
	for _, w := range strings.FieldsFunc(block, func(r rune) bool {
		return r == ' ' || r == '\n' || r == ',' || r == ':' || r == '(' || r == ')' || r == '`'
	}) {
		for _, seg := range strings.Split(w, "/") {
			named[strings.Trim(seg, ".")] = true
		}
	}
	skip := map[string]bool{"dist": true, "bin": true, "testdata": true, "node_modules": true, "static": true, "node": true}
	var missing []string
	for _, dir := range []string{"..", "../internal", "../relay", "../bench"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !skip[e.Name()] && !named[e.Name()] {
				missing = append(missing, strings.TrimPrefix(filepath.Join(dir, e.Name()), "../"))
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("directories DESIGN.md's layout does not name: %v", missing)
	}
}

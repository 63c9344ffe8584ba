//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestOllamaCLI drives the real ollama CLI with OLLAMA_HOST set to the agent, as a LAN user would.
// The subtests run in order: run loads tiny, so ps has something to show.
func TestOllamaCLI(t *testing.T) {
	s := use(t)

	t.Run("list", func(t *testing.T) {
		r := s.ollamaCLI(t, s.agentURL, "list")
		if r.code != 0 {
			t.Fatalf("ollama list: exit %d\nstderr: %s", r.code, r.stderr)
		}
		rows := tableFirstColumn(r.stdout)
		for _, want := range []string{"tiny:latest", "tiny2:latest"} {
			if !rows[want] {
				t.Errorf("ollama list has no row %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("show", func(t *testing.T) {
		r := s.ollamaCLI(t, s.agentURL, "show", "tiny")
		if r.code != 0 {
			t.Fatalf("ollama show tiny: exit %d\nstderr: %s", r.code, r.stderr)
		}
		// The model section names the architecture; the parameters section holds what
		// serve.sh set in the Modelfile.
		for _, re := range []string{`(?m)^\s+architecture\s+llama\s*$`, `(?m)^\s+num_predict\s+32\s*$`} {
			if !regexp.MustCompile(re).MatchString(r.stdout) {
				t.Errorf("ollama show tiny: no line matching %s:\n%s", re, r.stdout)
			}
		}
	})

	t.Run("run", func(t *testing.T) {
		// tiny's output is noise and the CLI cannot set a seed: about one run in a hundred is
		// only tokens that print nothing. Such a run is tried again, up to three times.
		var r cliResult
		var before int
		for try := 1; try <= 3; try++ {
			before = s.capture.count()
			r = s.ollamaCLI(t, s.agentURL, "run", "--verbose", "tiny", "hello")
			if r.code != 0 {
				t.Fatalf("ollama run tiny hello: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if strings.TrimSpace(r.stdout) != "" {
				break
			}
			t.Logf("try %d: ollama run printed no text; stderr: %s", try, r.stderr)
		}
		if strings.TrimSpace(r.stdout) == "" {
			t.Errorf("ollama run printed no text in 3 tries")
		}
		// --verbose prints the final chunk's counters: the generation really ran and its last
		// chunk reached the CLI through the agent.
		m := regexp.MustCompile(`(?m)^eval count:\s+(\d+) token`).FindStringSubmatch(r.stderr)
		if m == nil {
			t.Fatalf("ollama run --verbose printed no eval count; stderr:\n%s", r.stderr)
		}
		if n, _ := strconv.Atoi(m[1]); n < 1 || n > 32 {
			t.Errorf("eval count = %d, want 1..32 (num_predict 32)", n)
		}
		// With a prompt on the command line, the CLI streams from /api/generate.
		gens := 0
		for _, ex := range s.capture.since(before) {
			if ex.Method == "POST" && ex.Path == "/api/generate" && strings.Contains(string(ex.Body), `"model":"tiny"`) {
				gens++
				if code, body := ex.Response(); code != 200 || strings.Count(string(body), "\n") < 2 {
					t.Errorf("Ollama answered the CLI's generate with %d and %d lines, want 200 and a stream",
						code, strings.Count(string(body), "\n"))
				}
			}
		}
		if gens != 1 {
			t.Errorf("Ollama saw %d POST /api/generate for tiny from ollama run, want 1", gens)
		}
	})

	t.Run("ps", func(t *testing.T) {
		r := s.ollamaCLI(t, s.agentURL, "ps")
		if r.code != 0 {
			t.Fatalf("ollama ps: exit %d\nstderr: %s", r.code, r.stderr)
		}
		if !tableFirstColumn(r.stdout)["tiny:latest"] {
			t.Errorf("ollama ps does not show tiny:latest loaded after ollama run:\n%s", r.stdout)
		}
	})

	t.Run("pull unknown model", func(t *testing.T) {
		// Ollama's own words first, straight from Ollama; then the same through the agent. Pulls
		// reach the registry only through the refusing proxy (stack.proxyEnv), so the text is the
		// same on every machine.
		direct := s.ollamaCLI(t, s.ollamaURL, "pull", "doesnotexist")
		want := lastErrorLine(direct.stderr)
		if direct.code == 0 || want == "" {
			t.Fatalf("pulled straight from Ollama: exit %d, stderr %q; want a failure with an Error: line",
				direct.code, direct.stderr)
		}
		t.Logf("Ollama says: %s", want)

		r := s.ollamaCLI(t, s.agentURL, "pull", "doesnotexist")
		if r.code == 0 {
			t.Fatalf("ollama pull doesnotexist through the agent: exit 0, want failure\nstderr: %s", r.stderr)
		}
		if got := lastErrorLine(r.stderr); got != want {
			t.Errorf("ollama pull doesnotexist through the agent\n got: %q\nwant: %q (Ollama's own)", got, want)
		}
	})
}

// TestOllamaCLIModelStore creates, copies and removes a model with the CLI through the agent:
// create checks the GGUF blob with HEAD /api/blobs/:digest, then POSTs /api/create.
func TestOllamaCLIModelStore(t *testing.T) {
	s := use(t)
	modelfile := filepath.Join(t.TempDir(), "Modelfile")
	mf := fmt.Sprintf("FROM %s\nTEMPLATE \"{{ .Prompt }}\"\nPARAMETER num_predict 8\n", filepath.Join(s.cache, "tiny.gguf"))
	if err := os.WriteFile(modelfile, []byte(mf), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := [][]string{
		{"create", "tiny-cli", "-f", modelfile},
		{"cp", "tiny-cli", "tiny-cli-copy"},
	}
	for _, args := range steps {
		if r := s.ollamaCLI(t, s.agentURL, args...); r.code != 0 {
			t.Fatalf("ollama %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	rows := tableFirstColumn(s.ollamaCLI(t, s.agentURL, "list").stdout)
	if !rows["tiny-cli:latest"] || !rows["tiny-cli-copy:latest"] {
		t.Errorf("ollama list after create and cp: %v, want tiny-cli:latest and tiny-cli-copy:latest", rows)
	}
	if r := s.ollamaCLI(t, s.agentURL, "show", "--parameters", "tiny-cli-copy"); r.code != 0 ||
		!regexp.MustCompile(`(?m)^num_predict\s+8\s*$`).MatchString(r.stdout) {
		t.Errorf("ollama show --parameters tiny-cli-copy: exit %d, %q; want num_predict 8", r.code, r.stdout)
	}
	if r := s.ollamaCLI(t, s.agentURL, "rm", "tiny-cli", "tiny-cli-copy"); r.code != 0 {
		t.Errorf("ollama rm: exit %d\nstderr: %s", r.code, r.stderr)
	}
	names, err := tagNames(s.ollamaURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "tiny-cli") {
			t.Errorf("Ollama still has %s after ollama rm through the agent", n)
		}
	}
	rows = tableFirstColumn(s.ollamaCLI(t, s.agentURL, "list").stdout)
	if rows["tiny-cli:latest"] || rows["tiny-cli-copy:latest"] {
		t.Errorf("ollama list through the agent still shows removed models: %v", rows)
	}
}

// tableFirstColumn returns the first column of each row of the CLI's tables (list, ps).
func tableFirstColumn(out string) map[string]bool {
	rows := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = true
		}
	}
	return rows
}

// lastErrorLine is the CLI's last "Error: ..." line, without progress-bar noise before it.
func lastErrorLine(stderr string) string {
	var last string
	for _, line := range strings.Split(stderr, "\n") {
		if i := strings.LastIndex(line, "Error: "); i >= 0 {
			last = strings.TrimSpace(line[i:])
		}
	}
	return last
}

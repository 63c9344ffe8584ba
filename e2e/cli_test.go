//go:build e2e

package e2e

import (
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
		before := s.capture.count()
		r := s.ollamaCLI(t, s.agentURL, "run", "--verbose", "tiny", "hello")
		if r.code != 0 {
			t.Fatalf("ollama run tiny hello: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if strings.TrimSpace(r.stdout) == "" {
			t.Errorf("ollama run printed no text; stderr: %s", r.stderr)
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
		chats := 0
		for _, ex := range s.capture.since(before) {
			if ex.Method == "POST" && ex.Path == "/api/chat" && strings.Contains(string(ex.Body), `"model":"tiny"`) {
				chats++
				if code, body := ex.Response(); code != 200 || strings.Count(string(body), "\n") < 2 {
					t.Errorf("Ollama answered the CLI's chat with %d and %d lines, want 200 and a stream",
						code, strings.Count(string(body), "\n"))
				}
			}
		}
		if chats != 1 {
			t.Errorf("Ollama saw %d POST /api/chat for tiny from ollama run, want 1", chats)
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

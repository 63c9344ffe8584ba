package integration

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/tokens"
)

// TestRelayWebApp: the app's shell is public on the relay's domain, its API needs the token
// and runs through the chain, and a non-browser GET / still answers as Ollama behind the token.
func TestRelayWebApp(t *testing.T) {
	w := startWorld(t, "tls-alpn-01")
	get := func(path, auth, accept string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+relayDomain+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := w.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return resp, b.String()
	}
	tok := "Bearer " + w.token
	// The relay learns home's models from its /api/tags, a moment after the tunnel is up.
	hearthtest.Eventually(t, "home's models in the app's list", 30*time.Second, func() bool {
		_, body := get("/app/v1/models", tok, "")
		return strings.Contains(body, `"id":"tiny:latest"`)
	})
	for _, c := range []struct {
		name, path, auth, accept string
		status                   int
		want                     string
	}{
		{"browser at /", "/", "", "text/html,application/xhtml+xml", 200, `<script type="module" src="/app/app.js">`},
		{"shell file", "/app/md.js", "", "", 200, "DOMPurify"},
		{"GET / not a browser, no token", "/", "", "*/*", 401, ""},
		{"GET / not a browser, token", "/", tok, "", 200, "Ollama is running"},
		{"app API without token", "/app/v1/models", "", "", 401, ""},
		{"app API with token", "/app/v1/models", tok, "", 200, `{"id":"tiny:latest","owned_by":"home","group":"home"}`},
	} {
		resp, body := get(c.path, c.auth, c.accept)
		if resp.StatusCode != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: GET %s: %d %.200q, want %d with %q", c.name, c.path, resp.StatusCode, body, c.status, c.want)
		}
		if c.status == 200 && c.auth == "" {
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
				t.Errorf("%s: CSP %q, want the app's own (script-src 'self', nothing unsafe)", c.name, csp)
			}
		}
	}

	resp, body := w.do(t, http.MethodPost, "/app/v1/generations", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}`, tok)
	var g struct{ ID, Channel string }
	if err := json.Unmarshal([]byte(body), &g); err != nil || resp.StatusCode != 201 || g.ID == "" {
		t.Fatalf("POST /app/v1/generations: %d %s", resp.StatusCode, body)
	}
	if resp, body := w.do(t, http.MethodPost, "/app/v1/generations", `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`, "Bearer wrong"); resp.StatusCode != 401 {
		t.Errorf("a generation with a wrong token: %d %s, want 401", resp.StatusCode, body)
	}
	other, _, err := w.relay.Store().Create(t.Context(), tokens.Spec{Name: "tablet"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := get("/app/v1/generations/"+g.ID+"/events", "", ""); resp.StatusCode != 401 {
		t.Errorf("the generation without a token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get("/app/v1/generations/"+g.ID+"/events", "Bearer "+other, ""); resp.StatusCode != 404 {
		t.Errorf("another token's view of the generation: %d, want 404", resp.StatusCode)
	}
	_, events := get("/app/v1/generations/"+g.ID+"/events", tok, "")
	var text strings.Builder
	for line := range strings.SplitSeq(events, "\n") {
		var c struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok && json.Unmarshal([]byte(d), &c) == nil && len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if text.String() != "tok0 tok1 tok2 tok3 tok4 tok5 " || !strings.Contains(events, `"channel":"home"`) || !strings.Contains(events, `"state":"done"`) {
		t.Errorf("the generation's events give %q:\n%s\nwant the sim's 6 tokens from the home channel, done", text.String(), events)
	}
	// Revoked, the token reads nothing more of the answer the relay keeps for it.
	if err := w.relay.Store().Revoke(t.Context(), "phone"); err != nil {
		t.Fatal(err)
	}
	if resp, body := get("/app/v1/generations/"+g.ID+"/events", tok, ""); resp.StatusCode != 401 || !strings.Contains(body, `"code":"token_revoked"`) {
		t.Errorf("the generation with its token revoked: %d %.200s, want 401 token_revoked", resp.StatusCode, body)
	}
}

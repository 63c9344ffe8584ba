package router

import (
	"net/http"
	"strings"
	"testing"
)

// TestCORS: a chat page in the browser (Open WebUI's client side, a browser extension) gets the
// preflight answers Ollama gives it; another site's page gets no permission to read, and
// CORS grants no access: an untrusted caller still needs a key.
func TestCORS(t *testing.T) {
	srv := newTestServer(t, healthyNode(t, "http://127.0.0.1:1", "tiny:latest"), func(c *ServerConfig) {
		c.CORSOrigins = []string{"chrome-extension://*"}
	})
	ask := func(method, path, origin string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	preflight := func(origin string) *http.Response {
		return ask(http.MethodOptions, "/api/chat", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,authorization,x-stainless-os")
	}
	for _, origin := range []string{"http://localhost:3000", "http://127.0.0.1:8080", "chrome-extension://abcdef"} {
		resp := preflight(origin)
		if resp.StatusCode >= 300 || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
			t.Errorf("preflight from %s: %d, allow-origin %q, allow-headers %q", origin, resp.StatusCode,
				resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Access-Control-Allow-Headers"))
		}
	}
	if got := preflight("https://evil.example").Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("another site's page was allowed: %q", got)
	}
	if resp := ask(http.MethodGet, "/api/tags", "http://localhost:3000"); resp.StatusCode != http.StatusOK ||
		resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("GET /api/tags from a local page: %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	// CORS is no key: from an untrusted address the request itself is refused.
	locked := newTestServer(t, healthyNode(t, "http://127.0.0.1:1", "tiny:latest"), func(c *ServerConfig) {
		c.Trusted, c.APIKeys = nil, []string{"0123456789abcdef"}
	})
	srv = locked
	if resp := preflight("http://localhost:3000"); resp.StatusCode >= 300 {
		t.Errorf("a preflight needs no key (browsers send none): %d", resp.StatusCode)
	}
	if resp := ask(http.MethodGet, "/api/tags", "http://localhost:3000"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/tags from a local page without a key, untrusted: %d, want 401", resp.StatusCode)
	}
}

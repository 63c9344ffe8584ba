package router

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// The agent's / answers browsers with the web app and everyone else as Ollama does, and the
// app's static shell needs no key while the API behind it, the app's own (its generations)
// included, still does.
func TestAppMount(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app "+r.URL.Path) })
	for _, c := range []struct {
		name    string
		trusted bool
		method  string
		path    string
		accept  string
		key     string
		status  int
		want    string
	}{
		{"browser at /, trusted", true, http.MethodGet, "/", "text/html,*/*", "", 200, "app /"},
		{"ollama CLI GET /, trusted", true, http.MethodGet, "/", "", "", 200, "Ollama is running"},
		{"ollama CLI HEAD /, trusted", true, http.MethodHead, "/", "", "", 200, ""},
		{"browser at /, untrusted", false, http.MethodGet, "/", "text/html", "", 200, "app /"},
		{"ollama CLI HEAD /, untrusted without key", false, http.MethodHead, "/", "", "", 200, ""},
		{"GET / untrusted without key", false, http.MethodGet, "/", "*/*", "", 401, "node.trusted_networks"},
		{"shell file, untrusted", false, http.MethodGet, "/app/app.js", "", "", 200, "app /app/app.js"},
		{"API, untrusted without key", false, http.MethodGet, "/v1/models", "", "", 401, "node.trusted_networks"},
		{"app's generation, untrusted without key", false, http.MethodGet, "/app/v1/generations/g1/events", "", "", 401, "node.trusted_networks"},
		{"app's generation stopped, untrusted without key", false, http.MethodDelete, "/app/v1/generations/g1", "", "", 401, "node.trusted_networks"},
		{"app's generation, untrusted with a wrong key", false, http.MethodGet, "/app/v1/generations/g1/events", "", "nope", 401, "node.api_keys"},
		{"app's generation, untrusted with a key", false, http.MethodGet, "/app/v1/generations/g1/events", "", "k1", 200, "app /app/v1/generations/g1/events"},
		{"app's models, trusted", true, http.MethodGet, "/app/v1/models", "", "", 200, "app /app/v1/models"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newTestServer(t, healthyNode(t, "http://127.0.0.1:1", "tiny:latest"), func(cfg *ServerConfig) {
				cfg.App = app
				cfg.APIKeys = []string{"k1"}
				if !c.trusted {
					cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
				}
			})
			req, _ := http.NewRequest(c.method, srv.url+c.path, nil)
			if c.accept != "" {
				req.Header.Set("Accept", c.accept)
			}
			if c.key != "" {
				req.Header.Set("Authorization", "Bearer "+c.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
				t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.path, resp.StatusCode, b, c.status, c.want)
			}
		})
	}
}

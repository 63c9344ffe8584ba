package webapp

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestShell(t *testing.T) {
	_, srv := newTestApp(t, &fakeChat{}, Limits{})
	for _, c := range []struct {
		path, ctype, want string
	}{
		{"/", "text/html", `<script type="module" src="/app/app.js">`},
		{"/app/", "text/html", `viewport-fit=cover`},
		{"/app/app.js", "text/javascript", "startGeneration"},
		{"/app/sw.js", "text/javascript", "caches"},
		{"/app/manifest.webmanifest", "application/manifest+json", `"display": "standalone"`},
		{"/app/vendor/marked.esm.js", "text/javascript", "marked v18.2.1"},
		{"/app/offline.html", "text/html", "offline"},
	} {
		resp := call(t, http.MethodGet, srv.URL+c.path, "", "", "Accept-Encoding", "gzip")
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: not gzip: %v", c.path, err)
		}
		b, _ := io.ReadAll(zr)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(b), c.want) {
			t.Errorf("GET %s: %d %s, want 200 %s containing %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype, c.want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); csp != CSP || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q, want the app's", c.path, csp)
		}
		etag := resp.Header.Get("ETag")
		resp = call(t, http.MethodGet, srv.URL+c.path, "", "", "If-None-Match", etag)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", c.path, resp.StatusCode)
		}
	}
	for _, p := range []string{"/app/icons/icon-192.png", "/app/icons/maskable-512.png"} {
		resp := call(t, http.MethodGet, srv.URL+p, "", "")
		img, err := png.Decode(resp.Body)
		resp.Body.Close()
		if err != nil || img.Bounds().Dx() < 192 {
			t.Errorf("GET %s: %v, want a PNG icon", p, err)
		}
	}
	resp := call(t, http.MethodGet, srv.URL+"/app/nothing.js", "", "")
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /app/nothing.js: %d, want 404", resp.StatusCode)
	}
}

func TestShellHasNoInlineScript(t *testing.T) {
	b, err := staticFS.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "onclick=", "onload=", "http://", "https://", "style="} {
		if bytes.Contains(b, []byte(bad)) {
			t.Errorf("index.html has %q: the CSP forbids inline code and other origins", bad)
		}
	}
}

func TestForBrowsers(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "app") })
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "Ollama is running") })
	h := ForBrowsers(app, next)
	for _, c := range []struct{ method, accept, want string }{
		{http.MethodGet, "text/html,application/xhtml+xml,*/*;q=0.8", "app"},
		{http.MethodGet, "", "Ollama is running"},
		{http.MethodGet, "*/*", "Ollama is running"},
		{http.MethodHead, "text/html", "Ollama is running"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, "/", nil)
		req.Header.Set("Accept", c.accept)
		h.ServeHTTP(rec, req)
		if rec.Body.String() != c.want {
			t.Errorf("%s / Accept %q: %q, want %q", c.method, c.accept, rec.Body.String(), c.want)
		}
	}
}

func TestModelsGrouped(t *testing.T) {
	_, srv := newTestApp(t, &fakeChat{}, Limits{})
	resp := call(t, http.MethodGet, srv.URL+"/app/v1/models", "alice", "")
	defer resp.Body.Close()
	var v struct {
		Role string
		Home []string
		Data []appModel
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range v.Data {
		got[m.ID] = m.Group
	}
	want := map[string]string{"tiny": "home", "rag:docs": "rag", "deepseek-chat": "vendor"}
	for id, g := range want {
		if got[id] != g {
			t.Errorf("model %s in group %q, want %q (all: %v)", id, got[id], g, got)
		}
	}
	if v.Role != "relay" || len(v.Home) != 1 {
		t.Errorf("role %q home %v, want relay [home]", v.Role, v.Home)
	}
}

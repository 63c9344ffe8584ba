// Package webapp is hearth's installable chat app: the static shell (go:embed, gzipped once in
// memory, its own strict Content-Security-Policy), the grouped model list and the server-owned
// generations that outlive a phone's connection. The relay and the agent mount one App each and
// give it the handler their own /v1 surface runs through, so every API call the app makes is
// authenticated and routed exactly as any other client's. Only the relay and the agent (its
// router's HTTP surface) import this package.
package webapp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/hearthlab/hearth/internal/logging"
)

//go:generate go run mkicons.go

//go:embed static
var staticFS embed.FS

// CSP is the app's Content-Security-Policy: its own origin only, no inline script, no other
// origin for anything; images may be data: and blob: URLs (attachments the user picked).
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'self'"

// Options is what a role gives its App.
type Options struct {
	// Role is "relay" or "agent"; the app shows it and groups models by it.
	Role string
	// API serves POST /v1/chat/completions and GET /v1/models with the role's own
	// authentication (the relay's token check and channel chain, the agent's router).
	API http.Handler
	// Owner names who a request to /app/v1/ is, once the role's authentication in front of
	// the app let it through (the relay: the token's id). A generation is readable and
	// stoppable only by the owner that started it; a request whose Owner is "" is refused
	// with 401. nil: the Authorization header as it came is the owner (the agent's keys).
	Owner func(*http.Request) string
	// Carry copies into ctx what API needs of the request's context (the relay: the token its
	// authentication found). A generation's upstream call runs under the app's own context,
	// not the request's, which ends when the phone goes away. nil: nothing is carried.
	Carry func(ctx context.Context, r *http.Request) context.Context
	// Revoked tells whether an owner (Owner's answer) may no longer use the app (the relay:
	// its token was revoked or expired). Checked every few seconds: that owner's generations
	// are stopped and forgotten, and their open streams end; its next requests are refused by
	// the role's authentication. nil: never.
	Revoked func(owner string) bool
	// HomeChannels name the /v1/models owners that are home (on the relay: the home
	// channels; on the agent every model is home and this is ignored).
	HomeChannels []string
	// Limits bound the generations kept in memory (zero values: DefaultLimits).
	Limits Limits
}

// App is the web app's handler and the owner of its generations.
type App struct {
	opts   Options
	log    *slog.Logger
	files  map[string]*asset
	gens   *generations
	ctx    context.Context // generations run under it; Run's end cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type asset struct {
	body, gz    []byte
	ctype, etag string
}

// New builds the app; the static files are read and gzipped here, once.
func New(opts Options, logger *slog.Logger) *App {
	a := &App{opts: opts, log: logging.OrDiscard(logger), files: map[string]*asset{}}
	a.opts.Limits = opts.Limits.complete()
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.gens = newGenerations(a.opts.Limits)
	// The files are compiled in: reading them cannot fail.
	_ = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err == nil {
			a.add(strings.TrimPrefix(p, "static"), b)
		}
		return err
	})
	return a
}

func (a *App) add(name string, b []byte) {
	sum := sha256.Sum256(b)
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".webmanifest":
		ct = "application/manifest+json"
	case ".md", ".LICENSE":
		ct = "text/plain; charset=utf-8"
	case ".js", ".mjs":
		ct = "text/javascript; charset=utf-8"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	as := &asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	if !strings.HasPrefix(ct, "image/png") {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(b)
		_ = zw.Close()
		if buf.Len() < len(b) {
			as.gz = buf.Bytes()
		}
	}
	a.files[name] = as
}

// Run owns the generations: when ctx ends it stops those still running and waits for them,
// so that their upstream calls end (and record usage) before the role closes its stores.
func (a *App) Run(ctx context.Context) {
	t := time.NewTicker(a.opts.Limits.TTL / 4)
	defer t.Stop()
	var revoked <-chan time.Time
	if a.opts.Revoked != nil {
		rt := time.NewTicker(revokeCheck)
		defer rt.Stop()
		revoked = rt.C
	}
	for {
		select {
		case <-ctx.Done():
			a.cancel()
			a.wg.Wait()
			return
		case <-t.C:
			a.gens.sweep(time.Now())
		case <-revoked:
			a.gens.dropRevoked(a.opts.Revoked)
		}
	}
}

// revokeCheck is how often Run asks Options.Revoked about the owners of the generations.
var revokeCheck = 2 * time.Second // a variable for tests

// ServeHTTP serves /app/... (and / for the shell).
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/app/v1/generations":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		a.startGeneration(w, r)
	case strings.HasPrefix(p, "/app/v1/generations/"):
		a.generation(w, r, strings.TrimPrefix(p, "/app/v1/generations/"))
	case p == "/app/v1/models":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		a.models(w, r)
	case strings.HasPrefix(p, "/app/v1/"):
		writeError(w, http.StatusNotFound, "not_found", "no such app endpoint: "+r.Method+" "+p)
	default:
		a.static(w, r)
	}
}

// static serves the shell: / and /app/ are index.html; everything else under /app/ is a file.
func (a *App) static(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/app")
	if name == "" || name == "/" {
		name = "/index.html"
	}
	as, ok := a.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Content-Type", as.ctype)
	h.Set("ETag", as.etag)
	h.Set("Vary", "Accept-Encoding")
	// The service worker keeps the shell for offline use; the network copy is revalidated.
	h.Set("Cache-Control", "no-cache")
	if name == "/sw.js" {
		h.Set("Service-Worker-Allowed", "/")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && match == as.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := as.body
	if as.gz != nil && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		body = as.gz
	}
	h.Set("Content-Length", itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// ForBrowsers sends GET requests that ask for HTML (a browser opening the address) to app and
// everything else to next: the ollama CLI's and scripts' GET / keep their old answer.
func ForBrowsers(app, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if app != nil && r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			app.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

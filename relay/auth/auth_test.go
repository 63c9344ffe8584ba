package auth

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tokens/tokenstest"
)

const testAdminKey = "admin-0123456789abcdef"

type authFixture struct {
	auth  *Auth
	store *tokens.Store
	clock *hearthtest.Clock
	srv   *httptest.Server
}

// newAuthFixture serves /v1/, /api/ and / behind Require (answering with the token's name,
// after CheckModel for a JSON body's model) and /admin/v1/ behind Admin, on 127.0.0.1.
func newAuthFixture(t *testing.T, limits config.RelayLimits, logger *slog.Logger) *authFixture {
	t.Helper()
	clk := hearthtest.NewClock()
	st := tokenstest.Open(t, filepath.Join(t.TempDir(), "relay.db"), tokens.WithClock(clk.Now))
	a := New(st, limits, testAdminKey, logger)
	a.now = clk.Now
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Model string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body.Model != "" && !a.CheckModel(w, r, body.Model) {
			return
		}
		tok, _ := TokenFrom(r.Context())
		fmt.Fprintf(w, "ok %s auth=%q", tok.Name, r.Header.Get("Authorization"))
	})
	mux := http.NewServeMux()
	mux.Handle("/", a.Require(api))
	mux.Handle("/admin/v1/", a.Admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "admin ok")
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &authFixture{auth: a, store: st, clock: clk, srv: srv}
}

func (f *authFixture) create(t *testing.T, spec tokens.Spec) string {
	t.Helper()
	secret, _, err := f.store.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

type answer struct {
	status     int
	message    string
	retryAfter string
	body       string
}

// do sends a request and reads the error message in the dialect of the path.
func (f *authFixture) do(t *testing.T, method, path, authz, model string) answer {
	t.Helper()
	var body io.Reader
	if model != "" {
		body = strings.NewReader(`{"model":"` + model + `"}`)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
	if resp.StatusCode >= 400 {
		if strings.HasPrefix(req.URL.Path, "/v1/") {
			var e struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Type == "" {
				t.Fatalf("%s: not an OpenAI error: %s", req.URL.Path, b)
			}
			a.message = e.Error.Message
		} else {
			var e struct{ Error string }
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%s: not an Ollama error: %s", req.URL.Path, b)
			}
			a.message = e.Error
		}
	}
	return a
}

func TestAuthRefusalsInBothDialects(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{}, nil)
	good := f.create(t, tokens.Spec{Name: "phone", Models: []string{"qwen3:*", "rag:*"}})
	revoked := f.create(t, tokens.Spec{Name: "old"})
	expiring := f.create(t, tokens.Spec{Name: "trial", Expires: time.Hour})
	f.clock.Advance(30 * time.Minute)
	if err := f.store.Revoke(t.Context(), "old"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour)

	for _, tc := range []struct {
		name, authz, model string
		status             int
		message            string
	}{
		{"no token", "", "", 401, "no token: send Authorization: Bearer <token>; create one with `hearth token create --name NAME`"},
		{"empty bearer", "Bearer ", "", 401, "no token: send Authorization: Bearer <token>; create one with `hearth token create --name NAME`"},
		{"wrong token", "Bearer hth_wrongwrongwrong", "", 401, "unknown token: check that it was copied whole, or create one with `hearth token create --name NAME`"},
		{"revoked", "Bearer " + revoked, "", 401, "this token was revoked on 2026-03-01 10:30 UTC"},
		{"expired", "Bearer " + expiring, "", 401, "this token expired on 2026-03-01 11:00 UTC"},
		{"model not allowed", "Bearer " + good, "llama3", 403, `token "phone" may not use model "llama3": it allows qwen3:*, rag:*`},
		{"basic auth", "Basic dXNlcjpwYXNz", "", 401, "the Authorization header is neither \"Bearer <token>\" nor an ollama signature (OLLAMA_AUTH=1): send Authorization: Bearer <token>; create one with `hearth token create --name NAME`"},
		{"allowed model", "Bearer " + good, "qwen3:14b", 200, ""},
		{"lower-case scheme", "bearer " + good, "rag:docs", 200, ""},
	} {
		for _, path := range []string{"/v1/chat/completions", "/api/chat"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				got := f.do(t, "POST", path, tc.authz, tc.model)
				if got.status != tc.status || got.message != tc.message {
					t.Fatalf("got %d %q\nwant %d %q", got.status, got.message, tc.status, tc.message)
				}
				if tc.status == 200 && got.body != `ok phone auth=""` {
					t.Errorf("body %q: want the token in context and no Authorization header downstream", got.body)
				}
			})
		}
	}
}

func TestAuthLockout(t *testing.T) {
	limits := config.RelayLimits{AuthFailures: 3, AuthWindow: time.Minute, AuthBlock: 10 * time.Minute}
	f := newAuthFixture(t, limits, nil)
	good := "Bearer " + f.create(t, tokens.Spec{Name: "phone"})
	wrong := "Bearer hth_guess"

	// Failures spread wider than the window do not add up.
	for i := 0; i < 2; i++ {
		if got := f.do(t, "GET", "/api/tags", wrong, ""); got.status != 401 {
			t.Fatalf("failure %d: %d", i+1, got.status)
		}
	}
	f.clock.Advance(61 * time.Second)
	// Expired, revoked and missing tokens are not guesses and do not count either.
	for i := 0; i < 5; i++ {
		f.do(t, "GET", "/api/tags", "", "")
	}
	for i := 0; i < 2; i++ {
		if got := f.do(t, "GET", "/api/tags", wrong, ""); got.status != 401 {
			t.Fatalf("failure %d in a new window: %d", i+1, got.status)
		}
	}
	if got := f.do(t, "GET", "/api/tags", good, ""); got.status != 200 {
		t.Fatalf("not blocked yet: %d %s", got.status, got.body)
	}
	// The third failure within the window blocks the address for what fails authentication;
	// valid tokens still pass, the admin route does not (auth_block_test.go has the details).
	if got := f.do(t, "GET", "/api/tags", wrong, ""); got.status != 401 {
		t.Fatalf("third failure: %d", got.status)
	}
	for _, tc := range []struct {
		advance    time.Duration
		path       string
		authz      string
		status     int
		retryAfter string
	}{
		{0, "/api/tags", wrong, 429, "600"},
		{0, "/v1/models", wrong, 429, "600"},
		{0, "/api/tags", good, 200, ""},
		{0, "/admin/v1/tokens", "Bearer " + testAdminKey, 429, "600"}, // the admin route stays shut
		{9*time.Minute + 30*time.Second, "/api/tags", wrong, 429, "30"},
		{30 * time.Second, "/api/tags", good, 200, ""},
		{0, "/api/tags", wrong, 401, ""},
	} {
		f.clock.Advance(tc.advance)
		got := f.do(t, "GET", tc.path, tc.authz, "")
		if got.status != tc.status || got.retryAfter != tc.retryAfter {
			t.Fatalf("+%s %s: %d Retry-After %q (%s), want %d %q", tc.advance, tc.path, got.status, got.retryAfter, got.body, tc.status, tc.retryAfter)
		}
		if tc.status == 429 && got.message != "too many failed attempts from your address: blocked, try again in "+tc.retryAfter+" s" {
			t.Errorf("message %q", got.message)
		}
	}
}

func TestAuthRateLimit(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{RequestsPerMinute: 3}, nil)
	phone := "Bearer " + f.create(t, tokens.Spec{Name: "phone"})
	laptop := "Bearer " + f.create(t, tokens.Spec{Name: "laptop"})
	for i := 0; i < 3; i++ {
		if got := f.do(t, "GET", "/api/tags", phone, ""); got.status != 200 {
			t.Fatalf("request %d: %d", i+1, got.status)
		}
	}
	for _, path := range []string{"/api/tags", "/v1/models"} {
		got := f.do(t, "GET", path, phone, "")
		want := `token "phone" is over its limit of 3 requests per minute (limits.requests_per_minute): retry in 20 s`
		if got.status != 429 || got.retryAfter != "20" || got.message != want {
			t.Fatalf("%s over the limit: %d %q %q", path, got.status, got.retryAfter, got.message)
		}
	}
	if got := f.do(t, "GET", "/api/tags", laptop, ""); got.status != 200 {
		t.Errorf("another token is not limited by phone's use: %d", got.status)
	}
	f.clock.Advance(20 * time.Second)
	if got := f.do(t, "GET", "/api/tags", phone, ""); got.status != 200 {
		t.Errorf("after 20 s one request is allowed again: %d", got.status)
	}
	if got := f.do(t, "GET", "/api/tags", phone, ""); got.status != 429 {
		t.Errorf("but only one: %d", got.status)
	}
	// Being rate limited is not an auth failure: it never blocks the address.
	for i := 0; i < 20; i++ {
		f.do(t, "GET", "/api/tags", phone, "")
	}
	if got := f.do(t, "GET", "/api/tags", laptop, ""); got.status != 200 {
		t.Errorf("laptop after phone's rate limiting: %d", got.status)
	}
}

func TestAuthAdminRoutes(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{}, nil)
	tok := f.create(t, tokens.Spec{Name: "phone"})
	priv, _, keyLine := hearthtest.OllamaKey(t)
	f.create(t, tokens.Spec{Name: "laptop", OllamaKey: keyLine})
	signed := hearthtest.SignLikeOllama(t, priv, "GET", "/admin/v1/tokens", f.clock.Now())

	const needKey = "this route needs the admin key: send Authorization: Bearer <admin_key> (admin_key in relay.yaml)"
	for _, tc := range []struct {
		name, authz string
		status      int
		message     string
	}{
		{"admin key", "Bearer " + testAdminKey, 200, ""},
		{"client token", "Bearer " + tok, 403, "this route needs the admin key"},
		{"ollama key of a token", signed.Header.Get("Authorization"), 403, "this route needs the admin key"},
		{"wrong key", "Bearer " + testAdminKey + "x", 401, needKey},
		{"no key", "", 401, needKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.srv.URL+"/admin/v1/tokens?"+signed.URL.RawQuery, nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			got := send(t, req)
			if got.status != tc.status || got.message != tc.message || (tc.status == 200 && got.body != "admin ok") {
				t.Fatalf("got %d %q %q, want %d %q", got.status, got.message, got.body, tc.status, tc.message)
			}
		})
	}
	// The admin key is not a client token.
	if got := f.do(t, "GET", "/api/tags", "Bearer "+testAdminKey, ""); got.status != 401 {
		t.Errorf("admin key on a client route: %d", got.status)
	}
	// An empty admin key in the config opens nothing.
	a := New(f.store, config.RelayLimits{}, "", nil)
	if a.isAdminKey("") {
		t.Error("an empty admin key matches an empty bearer")
	}
}

func TestAuthOllamaSignature(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{}, nil)
	priv, _, keyLine := hearthtest.OllamaKey(t)
	f.create(t, tokens.Spec{Name: "laptop", OllamaKey: keyLine, Models: []string{"qwen3:*"}})
	stranger, _, _ := hearthtest.OllamaKey(t)

	for _, tc := range []struct {
		name    string
		key     []byte
		signAt  time.Duration // from the relay's clock
		model   string
		status  int
		message string
	}{
		{"registered", priv, 0, "qwen3:4b", 200, ""},
		{"registered, model not allowed", priv, 0, "llama3", 403, `token "laptop" may not use model "llama3": it allows qwen3:*`},
		// 403, not 401: the ollama CLI shows a 403's message but hides a 401's.
		{"unregistered", stranger, 0, "", 403, "this ollama key is not registered on the relay: register it with `hearth token create --name NAME --ollama-key \"$(cat ~/.ollama/id_ed25519.pub)\"`"},
		{"stale", priv, -6 * time.Minute, "", 403, "the ollama signature is out of date: signed at 2026-03-01T09:54:00Z, 6m0s before the relay's time (allowed ±5m0s): check this computer's clock"},
		{"from the future", priv, 10 * time.Minute, "", 403, "the ollama signature is out of date: signed at 2026-03-01T10:10:00Z, 10m0s after the relay's time (allowed ±5m0s): check this computer's clock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signed := hearthtest.SignLikeOllama(t, tc.key, "POST", "/api/chat", f.clock.Now().Add(tc.signAt))
			var body io.Reader
			if tc.model != "" {
				body = strings.NewReader(`{"model":"` + tc.model + `"}`)
			}
			req, _ := http.NewRequest("POST", f.srv.URL+"/api/chat?"+signed.URL.RawQuery, body)
			req.Header.Set("Authorization", signed.Header.Get("Authorization"))
			got := send(t, req)
			if got.status != tc.status || got.message != tc.message {
				t.Fatalf("got %d %q\nwant %d %q", got.status, got.message, tc.status, tc.message)
			}
			if tc.status == 200 && got.body != `ok laptop auth=""` {
				t.Errorf("body %q", got.body)
			}
		})
	}
}

// The real ollama Go client (the CLI's) with OLLAMA_AUTH=1 gets through with a registered key
// and is refused with an unregistered one.
func TestAuthOllamaClient(t *testing.T) {
	st := tokenstest.Open(t, filepath.Join(t.TempDir(), "relay.db")) // the real clock: the client signs with it
	a := New(st, config.RelayLimits{}, testAdminKey, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/tags", func(w http.ResponseWriter, r *http.Request) {
		tok, _ := TokenFrom(r.Context())
		fmt.Fprintf(w, `{"models":[{"name":%q}]}`, "hello-"+tok.Name)
	})
	mux.HandleFunc("/api/chat", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"model":"qwen3:4b","message":{"role":"assistant","content":"hi"},"done":true}`+"\n")
	})
	srv := httptest.NewServer(a.Require(mux))
	t.Cleanup(srv.Close)
	base, _ := url.Parse(srv.URL)
	t.Setenv("OLLAMA_AUTH", "1")

	line := hearthtest.OllamaHome(t)
	client := api.NewClient(base, srv.Client())
	chat := func() (string, error) {
		var reply string
		err := client.Chat(t.Context(), &api.ChatRequest{Model: "qwen3:4b", Messages: []api.Message{{Role: "user", Content: "hi"}}},
			func(r api.ChatResponse) error { reply += r.Message.Content; return nil })
		return reply, err
	}
	// Refused, and the CLI's client shows why: both its plain and its streaming calls.
	if _, err := client.List(t.Context()); err == nil || !strings.Contains(err.Error(), "this ollama key is not registered") {
		t.Errorf("List with an unregistered key: %v", err)
	}
	if _, err := chat(); err == nil || !strings.Contains(err.Error(), "this ollama key is not registered") {
		t.Errorf("Chat with an unregistered key: %v", err)
	}

	if _, _, err := st.Create(t.Context(), tokens.Spec{Name: "laptop", OllamaKey: line}); err != nil {
		t.Fatal(err)
	}
	list, err := client.List(t.Context())
	if err != nil || len(list.Models) != 1 || list.Models[0].Name != "hello-laptop" {
		t.Fatalf("List with a registered key: %+v %v", list, err)
	}
	if reply, err := chat(); err != nil || reply != "hi" {
		t.Fatalf("Chat (a signed stream) with a registered key: %q %v", reply, err)
	}
}

func TestAuthLogsNoSecrets(t *testing.T) {
	var logs hearthtest.Logs
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newAuthFixture(t, config.RelayLimits{AuthFailures: 3, RequestsPerMinute: 2}, logger)
	good := f.create(t, tokens.Spec{Name: "phone", Models: []string{"qwen3:*"}})
	revoked := f.create(t, tokens.Spec{Name: "old"})
	if err := f.store.Revoke(t.Context(), "old"); err != nil {
		t.Fatal(err)
	}
	priv, _, keyLine := hearthtest.OllamaKey(t)
	f.create(t, tokens.Spec{Name: "laptop", OllamaKey: keyLine})
	signed := hearthtest.SignLikeOllama(t, priv, "GET", "/api/tags", f.clock.Now())
	sigHeader := signed.Header.Get("Authorization")
	wrong := "hth_thisIsAWrongGuessThatMustNotBeLogged"

	for _, authz := range []string{"Bearer " + good, "Bearer " + good, "Bearer " + good, "Bearer " + revoked, "Bearer " + testAdminKey} {
		f.do(t, "GET", "/api/tags", authz, "")
	}
	f.do(t, "POST", "/v1/chat/completions", "Bearer "+good, "llama3")
	for _, authz := range []string{"Bearer " + good, "Bearer " + wrong + "x", "Bearer " + testAdminKey} {
		f.do(t, "GET", "/admin/v1/tokens", authz, "")
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/api/tags?"+signed.URL.RawQuery, nil)
	req.Header.Set("Authorization", sigHeader)
	send(t, req)
	for i := 0; i < 4; i++ { // to the lockout
		f.do(t, "GET", "/api/tags", "Bearer "+wrong, "")
	}

	out := logs.String()
	keyPart, sigPart, _ := strings.Cut(sigHeader, ":")
	for name, secret := range map[string]string{"token": good, "revoked token": revoked, "wrong token": wrong,
		"admin key": testAdminKey, "ollama public key": keyPart, "ollama signature": sigPart, "token body": strings.TrimPrefix(good, "hth_")} {
		if strings.Contains(out, secret) {
			t.Errorf("the %s is in the log", name)
		}
	}
	for _, want := range []string{`"msg":"auth: too many failures, address blocked"`, `"ip":"127.0.0.1"`, `"auth_name":"phone"`, `"auth_name":"old"`, `"why":"token revoked"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "address blocked"); n != 1 {
		t.Errorf("the block is logged %d times, want once", n)
	}
}

func TestAuthIPKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.7:51234", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:1", "::ffff:192.0.2.7"},
		{"unix", "unix"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		if got := authIP(r); got != tc.want {
			t.Errorf("authIP(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

func TestAuthCheckModelWithoutRequire(t *testing.T) {
	a := New(nil, config.RelayLimits{}, testAdminKey, nil)
	w := httptest.NewRecorder()
	if a.CheckModel(w, httptest.NewRequest("POST", "/v1/chat/completions", nil), "qwen3") || w.Code != 401 {
		t.Errorf("no token in context: %d", w.Code)
	}
}

// The cost of Require on the request path, for DESIGN's performance budget: a Bearer token
// (hash + map + rate bucket) and an ollama signature (ed25519 verification on top).
func BenchmarkAuthRequire(b *testing.B) {
	st, err := tokens.Open(filepath.Join(b.TempDir(), "relay.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	secret, _, err := st.Create(b.Context(), tokens.Spec{Name: "bench", Models: []string{"qwen3:*"}})
	if err != nil {
		b.Fatal(err)
	}
	priv, _, keyLine := hearthtest.OllamaKey(b)
	if _, _, err := st.Create(b.Context(), tokens.Spec{Name: "laptop", OllamaKey: keyLine}); err != nil {
		b.Fatal(err)
	}
	a := New(st, config.RelayLimits{RequestsPerMinute: 1 << 30, IPRequestsPerMinute: 1 << 30}, testAdminKey, nil)
	h := a.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	signed := hearthtest.SignLikeOllama(b, priv, "POST", "/api/chat", time.Now())
	for _, bc := range []struct {
		name, authz string
		req         *http.Request
	}{
		{"bearer", "Bearer " + secret, httptest.NewRequest("POST", "/v1/chat/completions", nil)},
		{"ollama", signed.Header.Get("Authorization"), signed},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				bc.req.Header.Set("Authorization", bc.authz)
				h.ServeHTTP(w, bc.req)
			}
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		})
	}
}

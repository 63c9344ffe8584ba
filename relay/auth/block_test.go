package auth

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tunnel"
)

// blockLimits block an address for 10 minutes after 3 guesses within a minute.
var blockLimits = config.RelayLimits{AuthFailures: 3, AuthWindow: time.Minute, AuthBlock: 10 * time.Minute}

const blockedMessage = "too many failed attempts from your address: blocked, try again in "

// An address is often shared (a household's NAT): once it is blocked, its valid tokens still
// get through; only what fails authentication gets the block's 429. The admin routes stay
// shut to the address, admin key or not: the block is what slows down guessing that key.
func TestAuthBlockSparesValidCredentials(t *testing.T) {
	f := newAuthFixture(t, blockLimits, nil)
	good, revoked, expired := f.liveRevokedExpired(t, tokens.Spec{Name: "phone", Models: []string{"qwen3:*"}})
	good, revoked, expired = "Bearer "+good, "Bearer "+revoked, "Bearer "+expired
	wrong := "Bearer hth_guessguessguess"
	admin := "Bearer " + testAdminKey

	for i := 0; i < 3; i++ { // the third blocks the address
		if got := f.do(t, "GET", "/api/tags", wrong, ""); got.status != 401 {
			t.Fatalf("failure %d: %d %s", i+1, got.status, got.body)
		}
	}
	for _, tc := range []struct {
		name       string
		advance    time.Duration
		method     string
		path       string
		authz      string
		model      string
		status     int
		retryAfter string
		body       string // the whole body of a 200; empty: not checked
		message    string // the error message of a refusal; empty with a 429: the block's
	}{
		{name: "wrong key", path: "/api/tags", authz: wrong, status: 429, retryAfter: "600"},
		{name: "wrong key, OpenAI dialect", path: "/v1/models", authz: wrong, status: 429, retryAfter: "600"},
		{name: "no key", path: "/api/tags", status: 429, retryAfter: "600"},
		{name: "revoked token", path: "/api/tags", authz: revoked, status: 429, retryAfter: "600"},
		{name: "expired token", path: "/v1/models", authz: expired, status: 429, retryAfter: "600"},
		{name: "malformed header", path: "/api/tags", authz: "Basic dXNlcjpwYXNz", status: 429, retryAfter: "600"},
		{name: "valid token", path: "/api/tags", authz: good, status: 200, body: `ok phone auth=""`},
		{name: "valid token, allowed model", method: "POST", path: "/v1/chat/completions", authz: good, model: "qwen3:4b", status: 200, body: `ok phone auth=""`},
		{name: "valid token, model not allowed", method: "POST", path: "/v1/chat/completions", authz: good, model: "llama3", status: 403,
			message: `token "phone" may not use model "llama3": it allows qwen3:*`},
		{name: "admin key", path: "/admin/v1/tokens", authz: admin, status: 429, retryAfter: "600"},
		{name: "valid token on an admin route", path: "/admin/v1/tokens", authz: good, status: 429, retryAfter: "600"},
		{name: "wrong admin key", path: "/admin/v1/tokens", authz: admin + "x", status: 429, retryAfter: "600"},
		{name: "no admin key", path: "/admin/v1/tokens", status: 429, retryAfter: "600"},
		{name: "wrong key near the end", advance: 9*time.Minute + 30*time.Second, path: "/api/tags", authz: wrong, status: 429, retryAfter: "30"},
		{name: "valid token near the end", path: "/api/tags", authz: good, status: 200, body: `ok phone auth=""`},
		{name: "admin key near the end", path: "/admin/v1/tokens", authz: admin, status: 429, retryAfter: "30"},
		// The failures refused during the block were not counted: the next ones start afresh.
		{name: "wrong key after the block", advance: 30 * time.Second, path: "/api/tags", authz: wrong, status: 401,
			message: "unknown token: check that it was copied whole, or create one with `hearth token create --name NAME`"},
		{name: "second wrong key after the block", path: "/api/tags", authz: wrong, status: 401,
			message: "unknown token: check that it was copied whole, or create one with `hearth token create --name NAME`"},
	} {
		f.clock.Advance(tc.advance)
		method := tc.method
		if method == "" {
			method = "GET"
		}
		got := f.do(t, method, tc.path, tc.authz, tc.model)
		message := tc.message
		if tc.status == 429 && message == "" {
			message = blockedMessage + tc.retryAfter + " s"
		}
		if got.status != tc.status || got.retryAfter != tc.retryAfter || got.message != message || (tc.body != "" && got.body != tc.body) {
			t.Errorf("%s: got %d Retry-After %q %q %q\nwant %d Retry-After %q %q %q",
				tc.name, got.status, got.retryAfter, got.message, got.body, tc.status, tc.retryAfter, message, tc.body)
		}
	}
}

// The lockout keys an IPv6 client by its /64, which a whole household shares: the valid token
// of one device passes while a neighbour's guesses keep the prefix blocked.
func TestAuthBlockSharedAddress(t *testing.T) {
	f := newAuthFixture(t, blockLimits, nil)
	good := "Bearer " + f.create(t, tokens.Spec{Name: "phone"})
	wrong := "Bearer hth_guessguessguess"
	h := f.srv.Config.Handler
	do := func(remote, authz string) (int, string, string) {
		r := httptest.NewRequest("GET", "/api/tags", nil)
		r.RemoteAddr = remote
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Header().Get("Retry-After"), w.Body.String()
	}
	const guesser = "[2001:db8:1:2::a]:50000"
	for i := 0; i < 3; i++ {
		if code, _, body := do(guesser, wrong); code != 401 {
			t.Fatalf("failure %d: %d %s", i+1, code, body)
		}
	}
	for _, tc := range []struct {
		name, remote, authz string
		status              int
		retryAfter          string
		body                string // contained in the body
	}{
		{"the guesser", guesser, wrong, 429, "600", blockedMessage + "600 s"},
		{"the guesser's valid token", guesser, good, 200, "", `ok phone auth=""`},
		{"same /64, valid token", "[2001:db8:1:2:ffff::1]:443", good, 200, "", `ok phone auth=""`},
		{"same /64, wrong key", "[2001:db8:1:2:ffff::1]:443", wrong, 429, "600", blockedMessage + "600 s"},
		{"same /64, no key", "[2001:db8:1:2:ffff::1]:443", "", 429, "600", blockedMessage + "600 s"},
		{"another /64, wrong key", "[2001:db8:1:3::a]:443", wrong, 401, "", "unknown token"},
		{"an IPv4 address, wrong key", "192.0.2.7:1", wrong, 401, "", "unknown token"},
	} {
		code, retry, body := do(tc.remote, tc.authz)
		if code != tc.status || retry != tc.retryAfter || !strings.Contains(body, tc.body) {
			t.Errorf("%s: got %d Retry-After %q %s\nwant %d Retry-After %q, a body with %q", tc.name, code, retry, body, tc.status, tc.retryAfter, tc.body)
		}
	}
}

// The sites' login form counts only guesses toward the lockout, like Require: a revoked or
// expired token is a real one past its time. A valid token signs in from a blocked address.
func TestSiteLoginBlock(t *testing.T) {
	f := newAuthFixture(t, blockLimits, nil)
	good, revoked, expired := f.liveRevokedExpired(t, tokens.Spec{Name: "phone"})
	s := &Sites{auth: f.auth, store: f.store, log: slog.New(slog.DiscardHandler)}
	site := tunnel.Site{Host: "chat.example.com", Name: "chat", Channel: "home", Auth: "token", Online: true}
	const remote = "198.51.100.4:40000"

	login := func(token string) *http.Response {
		form := url.Values{"token": {token}, "next": {"/chat?x=1"}}
		r := httptest.NewRequest("POST", "https://chat.example.com"+loginPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		s.Serve(w, r, site)
		return w.Result()
	}
	const (
		pastItsTime = "That token was revoked or has expired."
		notValid    = "That token is not valid here."
		tooMany     = "Too many failed attempts from your address: try again later."
	)
	for _, tc := range []struct {
		name, token string
		status      int
		message     string // in the page
	}{
		// Far more than AuthFailures, and none of them counts.
		{"revoked 1", revoked, 401, pastItsTime},
		{"expired 1", expired, 401, pastItsTime},
		{"revoked 2", revoked, 401, pastItsTime},
		{"expired 2", expired, 401, pastItsTime},
		{"revoked 3", revoked, 401, pastItsTime},
		{"expired 3", expired, 401, pastItsTime},
		{"wrong 1", "hth_guessguessguess", 401, notValid},
		{"wrong 2", "hth_guessguessguess", 401, notValid},
		{"wrong 3 blocks", "hth_guessguessguess", 401, notValid},
		{"wrong while blocked", "hth_guessguessguess", 429, tooMany},
		{"revoked while blocked", revoked, 429, tooMany},
		{"valid while blocked", good, 303, ""},
	} {
		resp := login(tc.token)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.message) {
			t.Fatalf("%s: got %d %s\nwant %d with %q", tc.name, resp.StatusCode, b, tc.status, tc.message)
		}
		if tc.status != 303 {
			continue
		}
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == siteCookie {
				cookie = c
			}
		}
		if loc := resp.Header.Get("Location"); loc != "/chat?x=1" || cookie == nil || cookie.Value != good {
			t.Errorf("%s: Location %q, cookie %v: want /chat?x=1 and the token's cookie", tc.name, loc, cookie)
		}
	}

	// The form and the API share the lockout of the address.
	r := httptest.NewRequest("GET", "/api/tags", nil)
	r.RemoteAddr = remote
	r.Header.Set("Authorization", "Bearer hth_guessguessguess")
	w := httptest.NewRecorder()
	f.srv.Config.Handler.ServeHTTP(w, r)
	if w.Code != 429 || w.Header().Get("Retry-After") != "600" {
		t.Errorf("a wrong key on the API from the address the form blocked: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
}

// liveRevokedExpired creates a live token from spec, one revoked ("old") and one expired
// ("trial", by moving the clock two minutes on), and returns their secrets.
func (f *authFixture) liveRevokedExpired(t *testing.T, spec tokens.Spec) (live, revoked, expired string) {
	t.Helper()
	live = f.create(t, spec)
	revoked = f.create(t, tokens.Spec{Name: "old"})
	if err := f.store.Revoke(t.Context(), "old"); err != nil {
		t.Fatal(err)
	}
	expired = f.create(t, tokens.Spec{Name: "trial", Expires: time.Minute})
	f.clock.Advance(2 * time.Minute)
	return live, revoked, expired
}

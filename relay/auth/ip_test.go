package auth

// The per-address rate limit, and the sites' cookie under the lockout and that limit.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tunnel"
)

// doFrom sends a GET to the fixture's handler from remote and reads the error message in the
// dialect of the path.
func (f *authFixture) doFrom(t *testing.T, remote, path, authz string) answer {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr = remote
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	f.srv.Config.Handler.ServeHTTP(w, r)
	a := answer{status: w.Code, retryAfter: w.Header().Get("Retry-After"), body: w.Body.String()}
	if w.Code >= 400 {
		if strings.HasPrefix(path, "/v1/") {
			var e struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Type == "" {
				t.Fatalf("%s: not an OpenAI error: %s", path, w.Body)
			}
			a.message = e.Error.Message
		} else {
			var e struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("%s: not an Ollama error: %s", path, w.Body)
			}
			a.message = e.Error
		}
	}
	return a
}

func addressLimited(limit, retry int) string {
	return fmt.Sprintf("too many requests from your address: it is over the relay's limit of %d requests per minute, "+
		"shared by every token used from it (limits.ip_requests_per_minute): retry in %d s", limit, retry)
}

// A household shares one address: its tokens together get limits.ip_requests_per_minute,
// each still within its own limit; another address has its own budget, and an IPv6 /64 is
// one address.
func TestAuthAddressRateLimit(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{RequestsPerMinute: 100, IPRequestsPerMinute: 4}, nil)
	phone := "Bearer " + f.create(t, tokens.Spec{Name: "phone"})
	laptop := "Bearer " + f.create(t, tokens.Spec{Name: "laptop"})
	const (
		home      = "198.51.100.4:40000"
		homeV6    = "[2001:db8:1:2::a]:50000"
		sameV6    = "[2001:db8:1:2:ffff::1]:443"
		otherV6   = "[2001:db8:1:3::a]:443"
		neighbour = "198.51.100.5:40000"
	)
	for _, tc := range []struct {
		name          string
		advance       time.Duration
		remote, path  string
		authz         string
		status        int
		retryAfter    string
		message, body string
	}{
		{name: "phone 1", remote: home, path: "/api/tags", authz: phone, status: 200, body: `ok phone auth=""`},
		{name: "laptop 1", remote: home, path: "/v1/models", authz: laptop, status: 200, body: `ok laptop auth=""`},
		{name: "phone 2", remote: home, path: "/api/tags", authz: phone, status: 200},
		{name: "laptop 2", remote: home, path: "/api/tags", authz: laptop, status: 200},
		// 4 requests a minute is one per 15 s.
		{name: "phone over the address's limit", remote: home, path: "/api/tags", authz: phone, status: 429, retryAfter: "15", message: addressLimited(4, 15)},
		{name: "laptop over the address's limit", remote: home, path: "/v1/models", authz: laptop, status: 429, retryAfter: "15", message: addressLimited(4, 15)},
		{name: "phone from another address", remote: neighbour, path: "/api/tags", authz: phone, status: 200, body: `ok phone auth=""`},
		{name: "laptop from another address", remote: neighbour, path: "/v1/models", authz: laptop, status: 200},
		{name: "10 s later, still over", advance: 10 * time.Second, remote: home, path: "/api/tags", authz: phone, status: 429, retryAfter: "5", message: addressLimited(4, 5)},
		{name: "15 s later, one more", advance: 5 * time.Second, remote: home, path: "/api/tags", authz: laptop, status: 200, body: `ok laptop auth=""`},
		{name: "and no more", remote: home, path: "/api/tags", authz: phone, status: 429, retryAfter: "15", message: addressLimited(4, 15)},
		// A /64 is one address.
		{name: "v6 1", remote: homeV6, path: "/api/tags", authz: phone, status: 200},
		{name: "v6 2", remote: sameV6, path: "/api/tags", authz: laptop, status: 200},
		{name: "v6 3", remote: homeV6, path: "/api/tags", authz: laptop, status: 200},
		{name: "v6 4", remote: sameV6, path: "/api/tags", authz: phone, status: 200},
		{name: "same /64 over", remote: homeV6, path: "/v1/models", authz: phone, status: 429, retryAfter: "15", message: addressLimited(4, 15)},
		{name: "another /64", remote: otherV6, path: "/api/tags", authz: phone, status: 200},
	} {
		f.clock.Advance(tc.advance)
		got := f.doFrom(t, tc.remote, tc.path, tc.authz)
		if got.status != tc.status || got.retryAfter != tc.retryAfter || got.message != tc.message || (tc.body != "" && got.body != tc.body) {
			t.Errorf("%s: got %d Retry-After %q %q %q\nwant %d Retry-After %q %q %q",
				tc.name, got.status, got.retryAfter, got.message, got.body, tc.status, tc.retryAfter, tc.message, tc.body)
		}
	}
}

// A request refused by one limit spends neither, and requests that fail authentication do
// not spend the address's budget: one device retrying an expired token must not starve the
// household's valid ones.
func TestAuthAddressRateLimitCountsOnlyWhatPasses(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{RequestsPerMinute: 2, IPRequestsPerMinute: 3}, nil)
	phone := "Bearer " + f.create(t, tokens.Spec{Name: "phone"})
	laptop := "Bearer " + f.create(t, tokens.Spec{Name: "laptop"})
	expiring := "Bearer " + f.create(t, tokens.Spec{Name: "trial", Expires: time.Minute})
	f.clock.Advance(2 * time.Minute)
	const home = "198.51.100.4:40000"
	tokenLimited := `token "phone" is over its limit of 2 requests per minute (limits.requests_per_minute): retry in 30 s`
	for _, tc := range []struct {
		name, authz, path string
		status            int
		retryAfter        string
		message           string
	}{
		{"no token 1", "", "/api/tags", 401, "", "no token: send Authorization: Bearer <token>; " + createHint},
		{"expired 1", expiring, "/api/tags", 401, "", "this token expired on 2026-03-01 10:01 UTC"},
		{"expired 2", expiring, "/v1/models", 401, "", "this token expired on 2026-03-01 10:01 UTC"},
		{"expired 3", expiring, "/api/tags", 401, "", "this token expired on 2026-03-01 10:01 UTC"},
		{"expired 4", expiring, "/api/tags", 401, "", "this token expired on 2026-03-01 10:01 UTC"},
		{"phone 1", phone, "/api/tags", 200, "", ""},
		{"phone 2", phone, "/api/tags", 200, "", ""},
		{"phone over its own limit", phone, "/api/tags", 429, "30", tokenLimited},
		{"phone over its own limit again", phone, "/v1/models", 429, "30", tokenLimited},
		{"laptop takes the address's third", laptop, "/api/tags", 200, "", ""},
		{"laptop over the address's limit", laptop, "/api/tags", 429, "20", addressLimited(3, 20)},
	} {
		got := f.doFrom(t, home, tc.path, tc.authz)
		if got.status != tc.status || got.retryAfter != tc.retryAfter || got.message != tc.message {
			t.Errorf("%s: got %d Retry-After %q %q\nwant %d Retry-After %q %q", tc.name, got.status, got.retryAfter, got.message,
				tc.status, tc.retryAfter, tc.message)
		}
	}
}

// Limits built by hand with no per-address limit get the default, 600, not "no requests";
// and the buckets of a flood of addresses stay within maxTrackedIPs.
func TestAuthAddressRateLimitDefaultAndBound(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{RequestsPerMinute: 100000}, nil)
	if got, want := f.auth.limits.IPRequestsPerMinute, config.DefaultRelay().Limits.IPRequestsPerMinute; got != want || want != 600 {
		t.Fatalf("IPRequestsPerMinute %d, want the default %d (600)", got, want)
	}
	phone := "Bearer " + f.create(t, tokens.Spec{Name: "phone"})
	for i := 0; i < 600; i++ {
		if got := f.doFrom(t, "192.0.2.1:1234", "/api/tags", phone); got.status != 200 {
			t.Fatalf("request %d: %d %s", i+1, got.status, got.body)
		}
	}
	if got := f.doFrom(t, "192.0.2.1:1234", "/api/tags", phone); got.status != 429 || got.retryAfter != "1" || got.message != addressLimited(600, 1) {
		t.Errorf("request 601: %d Retry-After %q %q", got.status, got.retryAfter, got.message)
	}

	tok, err := f.store.Check(strings.TrimPrefix(phone, "Bearer "))
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	for i := 0; i < 2*maxTrackedIPs; i++ {
		f.auth.allow(tok, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), now)
	}
	if n := f.auth.ipRates.Len(); n != maxTrackedIPs {
		t.Errorf("%d address buckets after %d addresses, want at most %d", n, 2*maxTrackedIPs, maxTrackedIPs)
	}
}

type siteAnswer struct {
	status        int
	retryAfter    string
	body          string
	location      string
	cookieDropped bool
}

// offlineTunnel answers as a tunnel.Server with no agent connected.
type offlineTunnel struct{}

func (offlineTunnel) Forward(w http.ResponseWriter, _ *http.Request, host string) {
	http.Error(w, "tunnel: "+host+" is not connected", http.StatusServiceUnavailable)
}

// newSiteFixture serves one site with token auth whose home is not connected: a request that
// passes the relay's checks gets the tunnel's 503.
func newSiteFixture(t *testing.T, f *authFixture) func(remote, cookie, authz string, html bool) siteAnswer {
	s := &Sites{tunnel: offlineTunnel{}, auth: f.auth, store: f.store,
		log: slog.New(slog.DiscardHandler)}
	site := tunnel.Site{Host: "chat.example.com", Name: "chat", Channel: "home", Auth: "token", Online: true}
	return func(remote, cookie, authz string, html bool) siteAnswer {
		r := httptest.NewRequest("GET", "https://chat.example.com/chat?x=1", nil)
		r.RemoteAddr = remote
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: siteCookie, Value: cookie})
		}
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if html {
			r.Header.Set("Accept", "text/html,application/xhtml+xml")
		}
		w := httptest.NewRecorder()
		s.Serve(w, r, site)
		a := siteAnswer{status: w.Code, retryAfter: w.Header().Get("Retry-After"), body: w.Body.String(), location: w.Header().Get("Location")}
		for _, c := range w.Result().Cookies() {
			a.cookieDropped = a.cookieDropped || (c.Name == siteCookie && c.MaxAge < 0)
		}
		return a
	}
}

// The site cookie is a sign-in like the login form: a wrong one counts toward the lockout
// (a revoked or expired one does not), a blocked address gets the block's 429 for a bad
// cookie, and a valid cookie still passes from a blocked address. A bad cookie is dropped,
// so that the browser does not send it with every request of the page.
func TestSiteCookieBlock(t *testing.T) {
	f := newAuthFixture(t, blockLimits, nil)
	good, revoked, expired := f.liveRevokedExpired(t, tokens.Spec{Name: "phone"})
	do := newSiteFixture(t, f)
	const (
		remote     = "198.51.100.4:40000"
		wrong      = "hth_guessguessguess"
		passed     = "tunnel: chat.example.com is not connected"
		askToken   = "This app needs a hearth token"
		toLogin    = loginPath + "?next=%2Fchat%3Fx%3D1"
		blockedTxt = "Too many failed attempts from your address: blocked, try again in "
	)
	for _, tc := range []struct {
		name          string
		advance       time.Duration
		cookie, authz string
		html          bool
		status        int
		retryAfter    string
		body          string // contained
		location      string
		dropped       bool
	}{
		{name: "valid", cookie: good, status: 503, body: passed},
		// Far more than AuthFailures, and none of them counts.
		{name: "revoked 1", cookie: revoked, html: true, status: 303, location: toLogin, dropped: true},
		{name: "expired 1", cookie: expired, status: 401, body: askToken, dropped: true},
		{name: "revoked 2", cookie: revoked, status: 401, body: askToken, dropped: true},
		{name: "expired 2", cookie: expired, html: true, status: 303, location: toLogin, dropped: true},
		{name: "revoked 3", cookie: revoked, status: 401, body: askToken, dropped: true},
		{name: "no cookie", status: 401, body: askToken},
		{name: "wrong 1", cookie: wrong, status: 401, body: askToken, dropped: true},
		{name: "wrong 2", cookie: wrong, html: true, status: 303, location: toLogin, dropped: true},
		{name: "wrong 3 blocks", cookie: wrong, status: 401, body: askToken, dropped: true},
		{name: "wrong while blocked", cookie: wrong, status: 429, retryAfter: "600", body: blockedTxt + "600 s", dropped: true},
		{name: "wrong while blocked, a browser", cookie: wrong, html: true, status: 429, retryAfter: "600", body: tooManyFailures, dropped: true},
		{name: "revoked while blocked", cookie: revoked, status: 429, retryAfter: "600", body: blockedTxt + "600 s", dropped: true},
		{name: "valid while blocked", cookie: good, status: 503, body: passed},
		{name: "valid bearer while blocked", authz: "Bearer " + good, status: 503, body: passed},
		{name: "wrong near the end", advance: 9 * time.Minute, cookie: wrong, status: 429, retryAfter: "60", body: blockedTxt + "60 s", dropped: true},
		{name: "wrong after the block", advance: time.Minute, cookie: wrong, status: 401, body: askToken, dropped: true},
	} {
		f.clock.Advance(tc.advance)
		got := do(remote, tc.cookie, tc.authz, tc.html)
		if got.status != tc.status || got.retryAfter != tc.retryAfter || !strings.Contains(got.body, tc.body) ||
			got.location != tc.location || got.cookieDropped != tc.dropped {
			t.Errorf("%s: got %d Retry-After %q Location %q dropped %v %q\nwant %d Retry-After %q Location %q dropped %v, a body with %q",
				tc.name, got.status, got.retryAfter, got.location, got.cookieDropped, got.body,
				tc.status, tc.retryAfter, tc.location, tc.dropped, tc.body)
		}
	}

	// The cookie's failures block the address for the API too, and another address is free.
	f.clock.Advance(11 * time.Minute)
	for i := 0; i < 3; i++ {
		do(remote, wrong, "", false)
	}
	if got := f.doFrom(t, remote, "/api/tags", "Bearer "+wrong); got.status != 429 || got.retryAfter != "600" || got.message != blockedMessage+"600 s" {
		t.Errorf("a wrong key on the API from the address the cookie blocked: %d Retry-After %q %q", got.status, got.retryAfter, got.message)
	}
	if got := do("198.51.100.5:1", wrong, "", false); got.status != 401 {
		t.Errorf("a wrong cookie from another address: %d %s", got.status, got.body)
	}
}

// A valid cookie spends the address's budget like a Bearer token through Require.
func TestSiteCookieAddressRateLimit(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{IPRequestsPerMinute: 3}, nil)
	good := f.create(t, tokens.Spec{Name: "phone"})
	do := newSiteFixture(t, f)
	const remote = "198.51.100.4:40000"
	for i, authz := range []string{"", "Bearer " + good, ""} {
		cookie := good
		if authz != "" {
			cookie = ""
		}
		if got := do(remote, cookie, authz, true); got.status != 503 {
			t.Fatalf("request %d: %d %s", i+1, got.status, got.body)
		}
	}
	got := do(remote, good, "", true)
	want := "Too many requests from your address: it is over the relay's limit of 3 requests per minute (limits.ip_requests_per_minute). Retry in 20 s."
	if got.status != 429 || got.retryAfter != "20" || !strings.Contains(got.body, want) || got.cookieDropped {
		t.Errorf("a valid cookie over the address's limit: %d Retry-After %q dropped %v %q", got.status, got.retryAfter, got.cookieDropped, got.body)
	}
	if got := f.doFrom(t, remote, "/v1/models", "Bearer "+good); got.status != 429 || got.retryAfter != "20" || got.message != addressLimited(3, 20) {
		t.Errorf("the API from the same address: %d Retry-After %q %q", got.status, got.retryAfter, got.message)
	}
	if got := do("198.51.100.5:1", good, "", true); got.status != 503 {
		t.Errorf("a valid cookie from another address: %d %s", got.status, got.body)
	}
}

// Package auth is the relay's gate: tokens on every route (a Bearer token, or the ollama
// CLI's key signature), the models a token may use, per-token and per-address rate limits,
// the lockout of addresses that guess, the admin key, and the browser sign-in of exposed
// sites (a login page and a host-only cookie). It uses relay/tokens, nothing else of the relay.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/relay/tokens"
)

// maxTrackedIPs bounds the memory of the failure lockout, and that of the per-address rate
// limit: the least recently seen addresses are forgotten first.
const maxTrackedIPs = 16384

// Auth guards the relay's routes: client tokens (Bearer or an ollama CLI signature) with a
// per-token and a per-address request rate, the admin key for /admin, and a lockout of
// addresses that keep failing. Every check is in memory. Logs name tokens by name and id only.
type Auth struct {
	store     *tokens.Store
	limits    config.RelayLimits
	adminHash [sha256.Size]byte
	hasAdmin  bool
	log       *slog.Logger
	now       func() time.Time // tests advance their own clock
	window    time.Duration    // ollama signature timestamps

	mu  sync.RWMutex
	ips *simplelru.LRU[string, *ipRecord]

	rateMu  sync.Mutex
	buckets map[string]*rateBucket // token id → bucket; as many as tokens in use
	// ipRates: address (authIP) → bucket, bounded like ips. An address forgotten under a
	// flood of others starts again with a full bucket: a burst of one limit at most.
	ipRates *simplelru.LRU[string, *rateBucket]
}

type ipRecord struct {
	windowStart  time.Time
	failures     int
	blockedUntil time.Time
}

type rateBucket struct {
	tokens float64
	last   time.Time
}

// NewAuth builds the middleware. Zero limits take the defaults of config.DefaultRelay; an
// empty adminKey refuses every admin request. A nil logger discards.
func New(store *tokens.Store, limits config.RelayLimits, adminKey string, logger *slog.Logger) *Auth {
	def := config.DefaultRelay().Limits
	if limits.RequestsPerMinute <= 0 {
		limits.RequestsPerMinute = def.RequestsPerMinute
	}
	if limits.IPRequestsPerMinute <= 0 {
		limits.IPRequestsPerMinute = def.IPRequestsPerMinute
	}
	if limits.AuthFailures <= 0 {
		limits.AuthFailures = def.AuthFailures
	}
	if limits.AuthWindow <= 0 {
		limits.AuthWindow = def.AuthWindow
	}
	if limits.AuthBlock <= 0 {
		limits.AuthBlock = def.AuthBlock
	}
	ips, _ := simplelru.NewLRU[string, *ipRecord](maxTrackedIPs, nil) // fails only for size <= 0
	ipRates, _ := simplelru.NewLRU[string, *rateBucket](maxTrackedIPs, nil)
	return &Auth{store: store, limits: limits, adminHash: sha256.Sum256([]byte(adminKey)), hasAdmin: adminKey != "",
		log: logging.OrDiscard(logger), now: time.Now, window: tokens.DefaultOllamaWindow, ips: ips, buckets: map[string]*rateBucket{},
		ipRates: ipRates}
}

type tokenCtxKey struct{}

// TokenFrom returns the token Require put in the request's context.
func TokenFrom(ctx context.Context) (tokens.Token, bool) {
	t, ok := ctx.Value(tokenCtxKey{}).(tokens.Token)
	return t, ok
}

// WithToken returns ctx carrying tok, as Require's requests do: for work that outlives the
// request Require let through (the web app's generations) and runs under a context of its own.
func WithToken(ctx context.Context, tok tokens.Token) context.Context {
	return context.WithValue(ctx, tokenCtxKey{}, tok)
}

// Require lets a request through with a valid token in its context, and removes the
// Authorization header, so the relay's credential never travels home or to a vendor.
//
// The credential is checked before the lockout: an address is often shared (a household's
// NAT, an IPv6 /64), and one member's wrong key must not lock out the others' valid tokens.
// Only requests that fail are refused for the block.
//
// The rate limits, the token's and the address's, are taken after the credential, for the
// same reason: the address's limit is the budget of everyone behind it, all their tokens
// together, and a device that keeps retrying a wrong or expired key must not spend it for the
// others. What fails authentication costs a lookup in memory, and guesses have the lockout.
func (a *Auth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := a.now()
		d := apierror.DialectOf(r.URL.Path)
		ip := authIP(r)
		tok, viaOllama, err := a.identify(r, now)
		if err != nil {
			if left := a.blockedFor(ip, now); left > 0 {
				writeBlocked(w, d, left)
				return
			}
			a.refuse(w, d, ip, tok, viaOllama, err, now)
			return
		}
		if tokenWait, ipWait := a.allow(tok, ip, now); tokenWait > 0 || ipWait > 0 {
			if ipWait > tokenWait {
				a.log.Debug("auth: address rate limit", "auth_name", tok.Name, "auth_id", tok.ID, "ip", ip)
				apierror.Write(w, d, &apierror.Error{Status: http.StatusTooManyRequests, Code: "rate_limit_exceeded",
					RetryAfter: apierror.RetrySeconds(ipWait), Message: a.addressLimitMessage(ipWait)})
				return
			}
			a.log.Debug("auth: rate limit", "auth_name", tok.Name, "auth_id", tok.ID, "ip", ip)
			limit, where := a.limits.RequestsPerMinute, "limits.requests_per_minute"
			if tok.RPM > 0 {
				limit, where = tok.RPM, "the token's rpm"
			}
			apierror.Write(w, d, &apierror.Error{Status: http.StatusTooManyRequests, Code: "rate_limit_exceeded",
				RetryAfter: apierror.RetrySeconds(tokenWait), Message: fmt.Sprintf("token %q is over its limit of %d requests per minute (%s): retry in %d s",
					tok.Name, limit, where, apierror.RetrySeconds(tokenWait))})
			return
		}
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r.WithContext(WithToken(r.Context(), tok)))
	})
}

// identify reads the credential: a Bearer token, or else an ollama CLI signature.
func (a *Auth) identify(r *http.Request, now time.Time) (tok tokens.Token, viaOllama bool, err error) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		return tokens.Token{}, false, tokens.ErrNoToken
	}
	if scheme, secret, _ := strings.Cut(h, " "); strings.EqualFold(scheme, "Bearer") {
		tok, err = a.store.Check(strings.TrimSpace(secret))
		return tok, false, err
	}
	pub, err := tokens.VerifyOllamaSignature(r, now, a.window)
	if err != nil {
		return tokens.Token{}, true, err
	}
	tok, err = a.store.CheckOllamaKey(pub)
	return tok, true, err
}

const createHint = "create one with `hearth token create --name NAME`"

// refuse answers a failed identification; only what looks like guessing counts toward the
// lockout (a wrong secret, a forged signature), not an expired token that a phone retries.
func (a *Auth) refuse(w http.ResponseWriter, d apierror.Dialect, ip string, tok tokens.Token, viaOllama bool, err error, now time.Time) {
	e := &apierror.Error{Status: http.StatusUnauthorized, Code: "invalid_api_key"}
	guess := false
	switch {
	case errors.Is(err, tokens.ErrNoToken):
		e.Code, e.Message = "missing_api_key", "no token: send Authorization: Bearer <token>; "+createHint
	case errors.Is(err, tokens.ErrRevoked):
		e.Code, e.Message = "token_revoked", "this token was revoked on "+tokens.FormatWhen(*tok.RevokedAt)
	case errors.Is(err, tokens.ErrExpired):
		e.Code, e.Message = "token_expired", "this token expired on "+tokens.FormatWhen(*tok.ExpiresAt)
	case errors.Is(err, tokens.ErrUnknownToken) && viaOllama:
		e.Message = "this ollama key is not registered on the relay: register it with " +
			"`hearth token create --name NAME --ollama-key \"$(cat ~/.ollama/id_ed25519.pub)\"`"
	case errors.Is(err, tokens.ErrUnknownToken):
		guess = true
		e.Message = "unknown token: check that it was copied whole, or " + createHint
	case errors.Is(err, tokens.ErrStaleSignature):
		e.Message = "the ollama signature is out of date: " + strings.TrimPrefix(err.Error(), tokens.ErrStaleSignature.Error()+": ") +
			": check this computer's clock"
	case errors.Is(err, tokens.ErrBadSignature):
		guess = true
		e.Message = "the ollama signature does not verify"
	default:
		e.Message = "the Authorization header is neither \"Bearer <token>\" nor an ollama signature (OLLAMA_AUTH=1): send Authorization: Bearer <token>; " + createHint
	}
	a.log.Debug("auth: refused", "ip", ip, "why", authReason(err), "auth_name", tok.Name, "auth_id", tok.ID)
	if guess {
		a.fail(ip, now)
	}
	if viaOllama && !errors.Is(err, tokens.ErrMalformedSignature) {
		// The ollama CLI drops the body of a 401 (it prints "something went wrong" or offers an
		// ollama.com sign-in) but prints the message of a 403: a signed request is refused so.
		e.Status = http.StatusForbidden
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth"`)
	}
	apierror.Write(w, d, e)
}

// authReason is a log-safe word for err: the sentinel, never the credential.
func authReason(err error) string {
	for _, s := range []error{tokens.ErrNoToken, tokens.ErrUnknownToken, tokens.ErrRevoked, tokens.ErrExpired, tokens.ErrMalformedSignature, tokens.ErrBadSignature, tokens.ErrStaleSignature} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "other"
}

// Admin lets only the admin key through. A client token, even a valid one, gets 403. Unlike
// Require, a blocked address is refused before the key is read: the admin key may be chosen
// by a person, and the block is what slows down guessing it.
func (a *Auth) Admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := a.now()
		d := apierror.DialectOf(r.URL.Path)
		ip := authIP(r)
		if left := a.blockedFor(ip, now); left > 0 {
			writeBlocked(w, d, left)
			return
		}
		h := strings.TrimSpace(r.Header.Get("Authorization"))
		if scheme, secret, _ := strings.Cut(h, " "); strings.EqualFold(scheme, "Bearer") && a.isAdminKey(strings.TrimSpace(secret)) {
			r.Header.Del("Authorization")
			next.ServeHTTP(w, r)
			return
		}
		tok, _, err := a.identify(r, now)
		if err == nil || errors.Is(err, tokens.ErrRevoked) || errors.Is(err, tokens.ErrExpired) {
			a.log.Debug("auth: client token on an admin route", "ip", ip, "auth_name", tok.Name, "auth_id", tok.ID)
			apierror.Write(w, d, &apierror.Error{Status: http.StatusForbidden, Code: "admin_key_required",
				Message: "this route needs the admin key"})
			return
		}
		if errors.Is(err, tokens.ErrUnknownToken) || errors.Is(err, tokens.ErrBadSignature) {
			a.fail(ip, now)
		}
		a.log.Debug("auth: admin refused", "ip", ip, "why", authReason(err))
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth admin"`)
		apierror.Write(w, d, &apierror.Error{Status: http.StatusUnauthorized, Code: "invalid_api_key",
			Message: "this route needs the admin key: send Authorization: Bearer <admin_key> (admin_key in relay.yaml)"})
	})
}

func (a *Auth) isAdminKey(key string) bool {
	sum := sha256.Sum256([]byte(key)) // equal lengths, so the comparison time says nothing
	return a.hasAdmin && subtle.ConstantTimeCompare(sum[:], a.adminHash[:]) == 1
}

// CheckModel answers 403 and returns false when the request's token may not use model.
func (a *Auth) CheckModel(w http.ResponseWriter, r *http.Request, model string) bool {
	d := apierror.DialectOf(r.URL.Path)
	tok, ok := TokenFrom(r.Context())
	if !ok {
		apierror.Write(w, d, &apierror.Error{Status: http.StatusUnauthorized, Code: "missing_api_key",
			Message: "no token: send Authorization: Bearer <token>; " + createHint})
		return false
	}
	if tokens.Allows(tok, model) {
		return true
	}
	apierror.Write(w, d, &apierror.Error{Status: http.StatusForbidden, Code: "model_not_allowed",
		Message: fmt.Sprintf("token %q may not use model %q: it allows %s", tok.Name, model, strings.Join(tok.Models, ", "))})
	return false
}

// blockLeft is how long r's address stays locked out; 0 when it is not.
func (a *Auth) blockLeft(r *http.Request) time.Duration { return a.blockedFor(authIP(r), a.now()) }

// allowAddress takes one request from the bucket of r's address, for the sites' cookie,
// which has no Require; it returns how long to wait when the bucket is empty, else 0.
func (a *Auth) allowAddress(r *http.Request) time.Duration {
	perMin := float64(a.limits.IPRequestsPerMinute)
	a.rateMu.Lock()
	defer a.rateMu.Unlock()
	b := a.ipBucket(authIP(r), a.now(), perMin)
	if wait := b.wait(perMin); wait > 0 {
		return wait
	}
	b.tokens--
	return 0
}

// addressLimitMessage tells a client its address is over limits.ip_requests_per_minute.
func (a *Auth) addressLimitMessage(wait time.Duration) string {
	return fmt.Sprintf("too many requests from your address: it is over the relay's limit of %d requests per minute, "+
		"shared by every token used from it (limits.ip_requests_per_minute): retry in %d s", a.limits.IPRequestsPerMinute, apierror.RetrySeconds(wait))
}

// failed counts a failed sign-in from r's address (for the sites' login form).
func (a *Auth) failed(r *http.Request) { a.fail(authIP(r), a.now()) }

func (a *Auth) blockedFor(ip string, now time.Time) time.Duration {
	a.mu.RLock()
	rec, ok := a.ips.Peek(ip)
	var until time.Time
	if ok {
		until = rec.blockedUntil
	}
	a.mu.RUnlock()
	if now.Before(until) {
		return until.Sub(now)
	}
	return 0
}

// fail counts one failure from ip; AuthFailures of them within AuthWindow block it.
func (a *Auth) fail(ip string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, ok := a.ips.Get(ip)
	if !ok {
		rec = &ipRecord{}
		a.ips.Add(ip, rec)
	}
	if now.Before(rec.blockedUntil) {
		return
	}
	if rec.failures == 0 || now.Sub(rec.windowStart) > a.limits.AuthWindow {
		rec.windowStart, rec.failures = now, 0
	}
	rec.failures++
	if rec.failures >= a.limits.AuthFailures {
		rec.blockedUntil, rec.failures = now.Add(a.limits.AuthBlock), 0
		a.log.Warn("auth: too many failures, address blocked", "ip", ip, "failures", a.limits.AuthFailures,
			"within", a.limits.AuthWindow.String(), "for", a.limits.AuthBlock.String())
	}
}

func writeBlocked(w http.ResponseWriter, d apierror.Dialect, left time.Duration) {
	apierror.Write(w, d, &apierror.Error{Status: http.StatusTooManyRequests, Code: "too_many_auth_failures",
		RetryAfter: apierror.RetrySeconds(left), Message: fmt.Sprintf("too many failed attempts from your address: blocked, try again in %d s", apierror.RetrySeconds(left))})
}

// allow takes one request from the token's bucket (its RPM, else RequestsPerMinute) and one
// from the address's (IPRequestsPerMinute), or from neither: a request refused by one limit
// does not spend the other. Each bucket holds a minute's worth and refills evenly over the
// minute. It returns how long to wait for each bucket, 0 for both when the request may go.
func (a *Auth) allow(tok tokens.Token, ip string, now time.Time) (tokenWait, ipWait time.Duration) {
	perMin := float64(a.limits.RequestsPerMinute)
	if tok.RPM > 0 {
		perMin = float64(tok.RPM)
	}
	ipPerMin := float64(a.limits.IPRequestsPerMinute)
	a.rateMu.Lock()
	defer a.rateMu.Unlock()
	b := a.buckets[tok.ID]
	if b == nil {
		b = &rateBucket{tokens: perMin, last: now}
		a.buckets[tok.ID] = b
	}
	b.refill(now, perMin) // also caps it when `hearth token set` lowered the token's rpm
	ib := a.ipBucket(ip, now, ipPerMin)
	tokenWait, ipWait = b.wait(perMin), ib.wait(ipPerMin)
	if tokenWait == 0 && ipWait == 0 {
		b.tokens--
		ib.tokens--
	}
	return tokenWait, ipWait
}

// ipBucket returns ip's bucket, refilled to now; a.rateMu must be held.
func (a *Auth) ipBucket(ip string, now time.Time, perMin float64) *rateBucket {
	b, ok := a.ipRates.Get(ip)
	if !ok {
		b = &rateBucket{tokens: perMin, last: now}
		a.ipRates.Add(ip, b)
	}
	b.refill(now, perMin)
	return b
}

// refill adds what the time since the last refill earned, up to a minute's worth.
func (b *rateBucket) refill(now time.Time, perMin float64) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens, b.last = b.tokens+dt*perMin/60, now
	}
	b.tokens = min(perMin, b.tokens)
}

// wait is how long until the bucket holds one whole request; 0 when it does.
func (b *rateBucket) wait(perMin float64) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return max(time.Nanosecond, time.Duration((1-b.tokens)/(perMin/60)*float64(time.Second)))
}

// authIP is the address that failures and the address's rate limit count against: the TCP
// peer (the relay is the edge; headers like X-Forwarded-For are the client's to forge), an
// IPv6 client by its /64.
func authIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

package chain

import (
	"sync"
	"time"
)

// breaker is a circuit breaker: after failsToOpen consecutive failures it opens and refuses
// calls for a cooldown that doubles on each reopening up to maxCooldown; when the cooldown
// has passed it lets one call through (half-open), whose success closes it.
type breaker struct {
	mu          sync.Mutex
	fails       int
	open        bool
	until       time.Time
	cooldown    time.Duration
	probing     bool      // the half-open call is out
	restUntil   time.Time // a vendor's Retry-After: no calls before then, whatever the state
	failsToOpen int
	minCooldown time.Duration
	maxCooldown time.Duration
}

func newBreaker() *breaker {
	return &breaker{failsToOpen: 3, minCooldown: 5 * time.Second, maxCooldown: 5 * time.Minute}
}

// allow reports whether a call may go now; a true answer while half-open reserves the probe.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.restUntil) {
		return false
	}
	if !b.open {
		return true
	}
	if now.Before(b.until) || b.probing {
		return false
	}
	b.probing = true
	return true
}

// success closes the breaker.
func (b *breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails, b.open, b.probing, b.cooldown = 0, false, false, 0
}

// failure counts a failure; it reports whether the breaker opened now.
func (b *breaker) failure(now time.Time) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails++
	if b.open && b.probing { // the half-open probe failed: longer cooldown
		b.probing = false
		b.cooldown = min(2*b.cooldown, b.maxCooldown)
		b.until = now.Add(b.cooldown)
		return false
	}
	if !b.open && b.fails >= b.failsToOpen {
		b.open = true
		b.cooldown = b.minCooldown
		b.until = now.Add(b.cooldown)
		return true
	}
	return false
}

// rest refuses calls until until, as a vendor's 429 Retry-After asks: calling sooner only
// earns more 429s (and may get the key banned).
func (b *breaker) rest(until time.Time) {
	b.mu.Lock()
	if until.After(b.restUntil) {
		b.restUntil = until
	}
	b.mu.Unlock()
}

// restingFor is how long the vendor's Retry-After still rests it (0: not resting).
func (b *breaker) restingFor(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(b.restUntil.Sub(now), 0)
}

// release gives back a half-open probe that ended neither way (the client left).
func (b *breaker) release() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// state is "closed", "open", "half-open" or "rate-limited", for the admin views.
func (b *breaker) state(now time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case now.Before(b.restUntil):
		return "rate-limited"
	case !b.open:
		return "closed"
	case now.Before(b.until):
		return "open"
	default:
		return "half-open"
	}
}

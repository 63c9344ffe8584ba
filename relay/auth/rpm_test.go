package auth

import (
	"testing"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/tokens"
)

// A token's own rpm replaces limits.requests_per_minute for it, lower or higher.
func TestQuotaAuthUsesTheTokensRPM(t *testing.T) {
	f := newAuthFixture(t, config.RelayLimits{RequestsPerMinute: 3}, nil)
	slow := "Bearer " + f.create(t, tokens.Spec{Name: "slow", RPM: 1})
	fast := "Bearer " + f.create(t, tokens.Spec{Name: "fast", RPM: 6})
	if got := f.do(t, "GET", "/api/tags", slow, ""); got.status != 200 {
		t.Fatalf("first request: %d", got.status)
	}
	got := f.do(t, "GET", "/v1/models", slow, "")
	want := `token "slow" is over its limit of 1 requests per minute (the token's rpm): retry in 60 s`
	if got.status != 429 || got.retryAfter != "60" || got.message != want {
		t.Errorf("over its own rpm: %d %q %q", got.status, got.retryAfter, got.message)
	}
	for i := range 6 {
		if got := f.do(t, "GET", "/api/tags", fast, ""); got.status != 200 {
			t.Fatalf("fast request %d of its 6: %d", i+1, got.status)
		}
	}
	if got := f.do(t, "GET", "/api/tags", fast, ""); got.status != 429 {
		t.Errorf("fast's seventh: %d", got.status)
	}
}

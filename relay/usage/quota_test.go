package usage

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tokens/tokenstest"
)

// reserveErr is Reserve's refusal as the client would read it.
func reserveErr(t *testing.T, u *Log, tok tokens.Token, model string, est int) *LimitError {
	t.Helper()
	settle, err := u.Reserve(tok, model, est)
	if err == nil {
		settle(count.Usage{})
		return nil
	}
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("Reserve: %T %v, want a *LimitError", err, err)
	}
	return le
}

// use serves a request as the chain does: Reserve, then settle and Record what model served
// it with n prompt and m completion tokens.
func use(t *testing.T, u *Log, tok tokens.Token, requested, served string, n, m int) {
	t.Helper()
	settle, err := u.Reserve(tok, requested, n)
	if err != nil {
		t.Fatalf("Reserve before using %d+%d: %v", n, m, err)
	}
	settle(count.Usage{PromptTokens: n, CompletionTokens: m})
	u.Record(Record{TokenID: tok.ID, TokenName: tok.Name, Channel: "test", RequestedModel: requested, ServedModel: served,
		PromptTokens: n, CompletionTokens: m, Status: 200})
}

func TestQuotaMonthlyTokens(t *testing.T) {
	f := newUsageFixture(t)
	f.clock.Advance(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).Sub(f.clock.Now()))
	phone := tokens.Token{ID: "tok_phone", Name: "phone", MonthlyTokens: 1_000_000}
	laptop := tokens.Token{ID: "tok_laptop", Name: "laptop"}

	use(t, f.usage, phone, "qwen3:14b", "qwen3:14b", 400_000, 500_000)
	use(t, f.usage, laptop, "qwen3:14b", "qwen3:14b", 5_000_000, 0) // no quota: never refused, counts for nobody else
	if le := reserveErr(t, f.usage, phone, "qwen3:14b", 99_000); le != nil {
		t.Fatalf("900,000 used + 99,000 fits in 1,000,000: %v", le)
	}
	for _, tc := range []struct {
		name string
		est  int
		want string
	}{
		{"does not fit", 100_001, "token \"phone\" has used 900,000 of its 1,000,000 tokens this month and this request needs about 100,001 " +
			"(resets 2026-12-01 UTC); raise it with `hearth token set phone --quota-tokens N`"},
	} {
		le := reserveErr(t, f.usage, phone, "qwen3:14b", tc.est)
		if le == nil || le.Message != tc.want || !errors.Is(le, ErrQuota) || le.RetryAfter != 0 {
			t.Fatalf("%s: %+v\nwant %q", tc.name, le, tc.want)
		}
	}
	// A stream answers more than it was reserved for: the quota is overrun, then refuses all.
	use(t, f.usage, phone, "qwen3:14b", "qwen3:14b", 3_400, 300_000)
	want := "token \"phone\" has used 1,203,400 of its 1,000,000 tokens this month (resets 2026-12-01 UTC); raise it with `hearth token set phone --quota-tokens N`"
	if le := reserveErr(t, f.usage, phone, "qwen3:14b", 0); le == nil || le.Message != want {
		t.Fatalf("over the quota: %+v\nwant %q", le, want)
	}
	if ae := reserveErr(t, f.usage, phone, "qwen3:14b", 1).APIError(); ae.Status != 429 || ae.Code != "insufficient_quota" || ae.RetryAfter != 0 || ae.Message != want {
		t.Errorf("the 429: %+v", ae)
	}
	if le := reserveErr(t, f.usage, laptop, "qwen3:14b", 1_000_000); le != nil {
		t.Errorf("laptop has no quota: %v", le)
	}

	// The month rolls over at midnight UTC on the 1st.
	f.clock.Advance(time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC).Sub(f.clock.Now()))
	if le := reserveErr(t, f.usage, phone, "qwen3:14b", 1); le == nil {
		t.Fatal("still November: refused")
	}
	f.clock.Advance(time.Second)
	if le := reserveErr(t, f.usage, phone, "qwen3:14b", 999_000); le != nil {
		t.Fatalf("December: a new quota: %v", le)
	}
}

func TestQuotaReservationsCountUntilSettledOrExpired(t *testing.T) {
	f := newUsageFixture(t)
	tok := tokens.Token{ID: "tok_phone", Name: "phone", MonthlyTokens: 1000}
	settle1, err := f.usage.Reserve(tok, "qwen3:14b", 600)
	if err != nil {
		t.Fatal(err)
	}
	le := reserveErr(t, f.usage, tok, "qwen3:14b", 600)
	want := "token \"phone\" has used 600 of its 1,000 tokens this month and this request needs about 600 (resets 2026-04-01 UTC); " +
		"raise it with `hearth token set phone --quota-tokens N`"
	if le == nil || le.Message != want {
		t.Fatalf("a request under way holds its estimate: %+v", le)
	}
	settle1(count.Usage{PromptTokens: 100, CompletionTokens: 100}) // it used less than reserved
	settle1(count.Usage{PromptTokens: 100, CompletionTokens: 100}) // a second settle does nothing
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 800); le != nil {
		t.Fatalf("200 used + 800: %v", le)
	}

	// A reservation nobody settles stops holding after 10 minutes.
	if _, err := f.usage.Reserve(tok, "qwen3:14b", 700); err != nil {
		t.Fatal(err)
	}
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 200); le == nil {
		t.Fatal("200 used + 700 held + 200: not refused")
	}
	f.clock.Advance(reservationTTL)
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 800); le != nil {
		t.Fatalf("after the reservation expired: %v", le)
	}
	// Settling an expired reservation still counts what was used.
	settle, err := f.usage.Reserve(tok, "qwen3:14b", 10)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(reservationTTL + time.Minute)
	f.usage.expireHolds(f.clock.Now())
	settle(count.Usage{PromptTokens: 10, CompletionTokens: 700})
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 100); le == nil || !strings.HasPrefix(le.Message, `token "phone" has used 910 of its 1,000`) {
		t.Errorf("after a late settle: %+v", le)
	}
}

func TestQuotaMonthlyCost(t *testing.T) {
	f := newUsageFixture(t) // deepseek-chat: 0.27 prompt, 1.10 completion per million
	tok := tokens.Token{ID: "tok_phone", Name: "phone", MonthlyCost: 1}
	use(t, f.usage, tok, "qwen3:14b", "qwen3:14b", 50_000_000, 0) // priced at 0: free
	// Asked for the home model, served by the vendor's: the vendor's price counts.
	use(t, f.usage, tok, "qwen3:14b", "deepseek-chat", 1_000_000, 500_000)
	// A record of last month counts for last month.
	f.usage.Record(Record{Time: f.clock.Now().AddDate(0, -1, 0), TokenID: tok.ID, ServedModel: "deepseek-chat", PromptTokens: 1e8})
	// 0.27 + 0.55 = 0.82 used; 700,000 prompt tokens more would cost 0.189.
	le := reserveErr(t, f.usage, tok, "deepseek-chat", 700_000)
	want := "token \"phone\" has used 0.82 of its cost quota of 1.00 this month and this request would cost about 0.19 (resets 2026-04-01 UTC); " +
		"raise it with `hearth token set phone --quota-cost N`"
	if le == nil || le.Message != want || !errors.Is(le, ErrQuota) {
		t.Fatalf("%+v\nwant %q", le, want)
	}
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 5_000_000); le != nil {
		t.Errorf("a free model is never refused by a cost quota that is not used up: %v", le)
	}
	use(t, f.usage, tok, "deepseek-chat", "deepseek-chat", 0, 200_000)
	want = "token \"phone\" has used 1.04 of its cost quota of 1.00 this month (resets 2026-04-01 UTC); raise it with `hearth token set phone --quota-cost N`"
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 1); le == nil || le.Message != want {
		t.Fatalf("used up: %+v\nwant %q", le, want)
	}
}

func TestQuotaTokensPerMinute(t *testing.T) {
	f := newUsageFixture(t)
	tok := tokens.Token{ID: "tok_phone", Name: "phone", TPM: 1000}
	t0 := f.clock.Now()
	use(t, f.usage, tok, "qwen3:14b", "qwen3:14b", 100, 500) // 600 at t0
	f.clock.Advance(10 * time.Second)
	use(t, f.usage, tok, "qwen3:14b", "qwen3:14b", 100, 200) // 300 at t0+10s
	f.clock.Advance(10 * time.Second)
	for _, tc := range []struct {
		est   int
		retry time.Duration // 0 = allowed
	}{
		{100, 0},                 // 900 + 100
		{101, 40 * time.Second},  // when the 600 of t0 leave the window
		{5000, 50 * time.Second}, // when the window is empty: one request alone always fits
	} {
		le := reserveErr(t, f.usage, tok, "qwen3:14b", tc.est)
		switch {
		case tc.retry == 0 && le != nil:
			t.Errorf("est %d: refused: %v", tc.est, le)
		case tc.retry == 0:
		case le == nil || le.RetryAfter != tc.retry || !errors.Is(le, ErrTPM):
			t.Errorf("est %d: %+v, want retry after %s", tc.est, le, tc.retry)
		}
	}
	le := reserveErr(t, f.usage, tok, "qwen3:14b", 101)
	want := `token "phone" is over its limit of 1,000 tokens per minute (the token's tpm): retry in 40 s`
	if ae := le.APIError(); le.Message != want || ae.Code != "rate_limit_exceeded" || ae.RetryAfter != 40 || ae.Status != 429 {
		t.Errorf("the 429: %+v %+v", le, ae)
	}
	f.clock.Advance(t0.Add(time.Minute).Sub(f.clock.Now()))
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 700); le != nil {
		t.Errorf("a minute after t0, 300 in the window + 700: %v", le)
	}
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 701); le == nil || le.RetryAfter != 10*time.Second {
		t.Errorf("300 + 701: %+v, want retry in 10 s", le)
	}
	// Requests under way count too; their settling frees the window.
	settle, err := f.usage.Reserve(tok, "qwen3:14b", 700)
	if err != nil {
		t.Fatal(err)
	}
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 1); le == nil {
		t.Error("300 + 700 held + 1: allowed")
	}
	settle(count.Usage{PromptTokens: 600})
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 100); le != nil {
		t.Errorf("300 + 600 + 100 after the settle: %v", le)
	}
	f.clock.Advance(2 * time.Minute)
	if le := reserveErr(t, f.usage, tok, "qwen3:14b", 100_000); le != nil {
		t.Errorf("an idle token, one big request: %v", le)
	}
}

func TestQuotaTotalsAreLoadedAtStart(t *testing.T) {
	f := newUsageFixture(t)
	now := f.clock.Now() // 2026-03-01 10:00
	for _, r := range []Record{
		{Time: now.Add(-time.Hour), TokenID: "tok_phone", PromptTokens: 600_000, CompletionTokens: 400_000, ServedModel: "deepseek-chat"},
		{Time: now.Add(-11 * time.Hour), TokenID: "tok_phone", PromptTokens: 9_000_000, ServedModel: "deepseek-chat"}, // February
		{Time: now.Add(-time.Hour), TokenID: "tok_laptop", PromptTokens: 1, ServedModel: "deepseek-chat"},
	} {
		r.TokenName, r.Channel, r.Status = strings.TrimPrefix(r.TokenID, "tok_"), "deepseek", 200
		f.usage.Record(r)
	}
	f.flush(t)
	u2, err := New(f.store, config.UsageConfig{}, testPrices, nil, WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	tok := tokens.Token{ID: "tok_phone", Name: "phone", MonthlyTokens: 1_000_000, MonthlyCost: 10}
	want := "token \"phone\" has used 1,000,000 of its 1,000,000 tokens this month (resets 2026-04-01 UTC); raise it with `hearth token set phone --quota-tokens N`"
	if le := reserveErr(t, u2, tok, "deepseek-chat", 0); le == nil || le.Message != want {
		t.Fatalf("after a restart: %+v\nwant %q", le, want)
	}
	tok.MonthlyTokens = 0
	tok.MonthlyCost = 0.71 // 0.162 + 0.44 = 0.602 used in March
	if le := reserveErr(t, u2, tok, "deepseek-chat", 500_000); le == nil ||
		!strings.HasPrefix(le.Message, `token "phone" has used 0.60 of its cost quota of 0.71 this month and this request would cost about 0.1`) {
		t.Errorf("cost after a restart: %+v", le)
	}
}

func TestQuotaTokenLimitsAreStored(t *testing.T) {
	clk := hearthtest.NewClock()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := tokenstest.Open(t, path, tokens.WithClock(clk.Now))
	ctx := t.Context()
	secret, tok, err := s.Create(ctx, tokens.Spec{Name: "kid", RPM: 10, TPM: 20_000, MonthlyTokens: 2_000_000, MonthlyCost: 5.5})
	if err != nil {
		t.Fatal(err)
	}
	want := tokens.Limits{RPM: 10, TPM: 20_000, MonthlyTokens: 2_000_000, MonthlyCost: 5.5}
	if tok.Limits() != want {
		t.Errorf("created: %+v", tok.Limits())
	}
	if got, err := s.Check(secret); err != nil || got.Limits() != want {
		t.Errorf("checked: %+v %v", got.Limits(), err)
	}
	got, err := s.SetLimits(ctx, "kid", func(l *tokens.Limits) { l.RPM, l.MonthlyCost = 0, 7 })
	want = tokens.Limits{TPM: 20_000, MonthlyTokens: 2_000_000, MonthlyCost: 7}
	if err != nil || got.Limits() != want || got.ID != tok.ID {
		t.Fatalf("set: %+v %v", got, err)
	}
	reader := tokenstest.Open(t, path) // another process, e.g. the running relay
	if list, err := reader.List(ctx); err != nil || len(list) != 1 || list[0].Limits() != want {
		t.Errorf("read back: %+v %v", list, err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want string
	}{
		{"negative rpm", func() error { _, _, err := s.Create(ctx, tokens.Spec{Name: "x", RPM: -1}); return err },
			"token x: rpm -1: give 0 (the relay's default) or more"},
		{"negative cost", func() error {
			_, err := s.SetLimits(ctx, "kid", func(l *tokens.Limits) { l.MonthlyCost = -2 })
			return err
		}, "token kid: monthly cost quota -2: give 0 (none) or a positive number"},
		{"unknown token", func() error { _, err := s.SetLimits(ctx, "nobody", func(*tokens.Limits) {}); return err },
			"no live token named nobody (`hearth token list` shows them)"},
	} {
		if err := tc.do(); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := s.Revoke(ctx, "kid"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetLimits(ctx, "kid", func(*tokens.Limits) {}); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("a revoked token's limits: %v", err)
	}
}

package usage

// The usage admin API, its query parsing, and the cost and token estimates.

import (
	"encoding/json"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
)

func TestUsageAdminHandler(t *testing.T) {
	f := newUsageFixture(t)
	f.usage.Record(Record{Time: f.clock.Now().Add(-time.Hour), TokenID: "tok_1", TokenName: "phone", Channel: "deepseek",
		RequestedModel: "deepseek-chat", ServedModel: "deepseek-chat", PromptTokens: 1000, CompletionTokens: 1000,
		TTFT: 1500 * time.Microsecond, Duration: 2 * time.Second, Status: 200})
	f.usage.Record(Record{Time: f.clock.Now().Add(-10 * 24 * time.Hour), TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	f.flush(t)
	h := f.usage.AdminHandler()
	for _, tc := range []struct {
		method, query string
		status        int
		body          string
	}{
		{"GET", "?by=channel", 200, `{"by":"channel","rows":[{"key":"deepseek","requests":1,"errors":0,"prompt_tokens":1000,` +
			`"completion_tokens":1000,"estimated_share":0,"cost":0.00137,"avg_ttft_ms":1.5,"avg_duration_ms":2000}],"since":"2026-02-22T10:00:00Z"}`},
		{"GET", "?by=channel&since=30d", 200, `"rows":[{"key":"deepseek"`},
		{"GET", "?by=channel&since=all", 200, `"since":"1970-01-01T00:00:00Z"`},
		{"GET", "?since=2026-03-01", 200, `{"by":"day","rows":[{"key":"2026-03-01",`},
		{"GET", "?by=week", 400, `"message":"by \"week\": use day, token, channel or model"`},
		{"GET", "?since=yesterday", 400, `"message":"since \"yesterday\": give a period back from now (7d, 12h, 2w), a date (2026-03-01) or \"all\""`},
		{"POST", "", 405, `use GET`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/admin/v1/usage"+tc.query, nil))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %s\nwant %d containing %s", tc.method, tc.query, rec.Code, rec.Body, tc.status, tc.body)
		}
		if tc.status == 200 && !json.Valid(rec.Body.Bytes()) {
			t.Errorf("%s: not JSON: %s", tc.query, rec.Body)
		}
	}
}

func TestUsageParseSince(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"", now.Add(-7 * 24 * time.Hour), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"12h", now.Add(-12 * time.Hour), false},
		{"2w", now.Add(-14 * 24 * time.Hour), false},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), false},
		{"2026-03-01T08:00:00+01:00", time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC), false},
		{"all", time.Unix(0, 0), false},
		{"yesterday", time.Time{}, true},
		{"-3d", time.Time{}, true},
	} {
		got, err := ParseSince(tc.in, now)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestUsageCostFromPrices(t *testing.T) {
	f := newUsageFixture(t)
	u := count.Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000}
	for _, tc := range []struct {
		model string
		want  float64
	}{
		{"deepseek-chat", 0.27 + 0.55},
		{"DeepSeek-Chat", 0.27 + 0.55},
		{"openai/gpt-4o-2024-08-06", 2.5 + 5}, // the first matching glob wins
		{"gpt-4o-mini", 5 + 7.5},
		{"qwen3:14b", 0},
		{"llama3", 1 + 1},
		{"llama3:latest", 1 + 1},
		{"llama3:8b", 0},
		{"unknown-model", 0},
		{"", 0},
	} {
		if got := f.usage.Cost(tc.model, u); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Cost(%q) = %v, want %v", tc.model, got, tc.want)
		}
	}
	if err := f.usage.SetPrices([]config.Price{{Model: "[", Prompt: 1}}); err == nil ||
		err.Error() != `relay: usage: prices[0] model "[": not a glob (use * and ? as in "deepseek-*")` {
		t.Errorf("a bad glob: %v", err)
	}
	if err := f.usage.SetPrices([]config.Price{{Model: "*", Prompt: 1, Completion: 1}}); err != nil {
		t.Fatal(err)
	}
	if got := f.usage.Cost("qwen3:14b", u); got != 1.5 {
		t.Errorf("after SetPrices: %v, want 1.5", got)
	}
}

// The request path's share of the usage log, and the writer's cost per record off the path.
func BenchmarkUsage(b *testing.B) {
	open := func(b *testing.B, opts ...Option) *Log {
		st, err := tokens.Open(filepath.Join(b.TempDir(), "relay.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		u, err := New(st, config.UsageConfig{}, testPrices, nil, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return u
	}
	tok := tokens.Token{ID: "tok_1", Name: "phone", TPM: 1 << 30, MonthlyTokens: 1 << 50, MonthlyCost: 1e12}
	rec := Record{Time: time.Now(), TokenID: "tok_1", TokenName: "phone", Channel: "deepseek", RequestedModel: "qwen3:14b",
		ServedModel: "deepseek-chat", PromptTokens: 100, CompletionTokens: 200, Status: 200, Stream: true}
	b.Run("reserve+settle", func(b *testing.B) {
		u := open(b)
		b.ReportAllocs()
		for b.Loop() {
			settle, err := u.Reserve(tok, "deepseek-chat", 100)
			if err != nil {
				b.Fatal(err)
			}
			settle(count.Usage{PromptTokens: 100, CompletionTokens: 200})
		}
	})
	b.Run("record", func(b *testing.B) {
		u := open(b)
		b.ReportAllocs()
		for i := range b.N {
			if i%usageBatch == 0 { // what a flush does to the buffer, without the writing
				u.mu.Lock()
				u.buf = u.buf[:0]
				u.mu.Unlock()
			}
			u.Record(rec)
		}
		if u.Dropped() > 0 {
			b.Fatalf("%d dropped", u.Dropped())
		}
	})
	b.Run("flush-per-record", func(b *testing.B) {
		u := open(b, WithBuffer(b.N+1))
		for range b.N {
			u.Record(rec)
		}
		b.ResetTimer()
		if err := u.flush(b.Context()); err != nil {
			b.Fatal(err)
		}
	})
}

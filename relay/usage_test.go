package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

var testPrices = []config.Price{
	{Model: "deepseek-chat", Prompt: 0.27, Completion: 1.10},
	{Model: "openai/gpt-4o*", Prompt: 2.5, Completion: 10},
	{Model: "gpt-4o*", Prompt: 5, Completion: 15}, // shadowed for openai/... by the line above
	{Model: "qwen3:*", Prompt: 0, Completion: 0},
	{Model: "llama3", Prompt: 1, Completion: 2},
}

type usageFixture struct {
	store *Store
	usage *UsageLog
	clock *testClock
	path  string
	logs  *lockedBuffer
}

func newUsageFixture(t *testing.T, opts ...UsageOption) *usageFixture {
	t.Helper()
	clk := newTestClock()
	path := filepath.Join(t.TempDir(), "relay.db")
	st := openTestStore(t, path, WithClock(clk.Now))
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	u, err := NewUsageLog(st, config.UsageConfig{FlushInterval: time.Hour, Retention: 400 * 24 * time.Hour}, testPrices, log,
		append([]UsageOption{WithUsageClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &usageFixture{store: st, usage: u, clock: clk, path: path, logs: logs}
}

// run starts u.Run and returns a function that stops it and waits.
func (f *usageFixture) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.usage.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (f *usageFixture) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.store.db.QueryRow(`SELECT COUNT(*) FROM usage_records`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *usageFixture) flush(t *testing.T) {
	t.Helper()
	if err := f.usage.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// readRecords reads the rows back as records, oldest first.
func readRecords(t *testing.T, st *Store) ([]UsageRecord, []float64) {
	t.Helper()
	rows, err := st.db.Query(`SELECT time, token_id, token_name, channel, key_id, requested_model, served_model, prompt_tokens,
		completion_tokens, estimated, ttft_us, duration_us, status, fell_back_from, stream, cost FROM usage_records ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []UsageRecord
	var costs []float64
	for rows.Next() {
		var r UsageRecord
		var ms, ttft, dur int64
		var cost float64
		if err := rows.Scan(&ms, &r.TokenID, &r.TokenName, &r.Channel, &r.KeyID, &r.RequestedModel, &r.ServedModel, &r.PromptTokens,
			&r.CompletionTokens, &r.Estimated, &ttft, &dur, &r.Status, &r.FellBackFrom, &r.Stream, &cost); err != nil {
			t.Fatal(err)
		}
		r.Time = time.UnixMilli(ms).UTC()
		r.TTFT, r.Duration = time.Duration(ttft)*time.Microsecond, time.Duration(dur)*time.Microsecond
		out = append(out, r)
		costs = append(costs, cost)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, costs
}

func TestUsageRecordsAreWrittenInOneTransactionPerFlush(t *testing.T) {
	f := newUsageFixture(t)
	var txs, rowsInTx atomic.Int64
	f.usage.inFlush = func(n int) { txs.Add(1); rowsInTx.Add(int64(n)) }
	t0 := f.clock.Now()
	want := []struct {
		rec  UsageRecord
		cost float64
	}{
		{UsageRecord{Time: t0, TokenID: "tok_1", TokenName: "phone", Channel: "home", RequestedModel: "qwen3:14b", ServedModel: "qwen3:14b",
			PromptTokens: 120, CompletionTokens: 300, TTFT: 180 * time.Millisecond, Duration: 2 * time.Second, Status: 200, Stream: true}, 0},
		{UsageRecord{Time: t0.Add(time.Second), TokenID: "tok_1", TokenName: "phone", Channel: "deepseek", KeyID: "deepseek#2",
			RequestedModel: "qwen3:14b", ServedModel: "deepseek-chat", PromptTokens: 1000, CompletionTokens: 2000, Estimated: true,
			TTFT: 700 * time.Millisecond, Duration: 3 * time.Second, Status: 200, FellBackFrom: "home", Stream: true},
			(1000*0.27 + 2000*1.10) / 1e6},
		{UsageRecord{Time: t0.Add(2 * time.Second), TokenID: "tok_2", TokenName: "laptop", Channel: "openai", KeyID: "openai#1",
			RequestedModel: "gpt-4o", ServedModel: "openai/gpt-4o-2024-08-06", PromptTokens: 50, CompletionTokens: 10,
			TTFT: 900 * time.Millisecond, Duration: 900 * time.Millisecond, Status: 200, FellBackFrom: "home,deepseek"},
			(50*2.5 + 10*10.0) / 1e6},
		{UsageRecord{Time: t0.Add(3 * time.Second), TokenID: "tok_2", TokenName: "laptop", Channel: "deepseek", KeyID: "deepseek#1",
			RequestedModel: "deepseek-chat", Duration: 40 * time.Millisecond, Status: 502, FellBackFrom: "home"}, 0},
	}
	for _, w := range want {
		f.usage.Record(w.rec)
	}
	if n := f.count(t); n != 0 {
		t.Fatalf("Record wrote %d rows itself: it must only buffer", n)
	}
	f.flush(t)
	if txs.Load() != 1 || rowsInTx.Load() != int64(len(want)) {
		t.Fatalf("one flush: %d transactions with %d rows, want 1 with %d", txs.Load(), rowsInTx.Load(), len(want))
	}
	got, costs := readRecords(t, f.store)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i, w := range want {
		if !reflect.DeepEqual(got[i], w.rec) {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], w.rec)
		}
		if math.Abs(costs[i]-w.cost) > 1e-12 {
			t.Errorf("row %d: cost %v, want %v", i, costs[i], w.cost)
		}
	}
	f.flush(t) // nothing buffered: no transaction at all
	if txs.Load() != 1 {
		t.Errorf("an empty flush opened a transaction")
	}

	// A record without a time gets the clock's.
	f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	f.flush(t)
	if got, _ := readRecords(t, f.store); !got[len(got)-1].Time.Equal(f.clock.Now()) {
		t.Errorf("time of a record without one: %v, want %v", got[len(got)-1].Time, f.clock.Now())
	}
}

func TestUsageBatchWakesTheWriterAndRunFlushesAtTheEnd(t *testing.T) {
	f := newUsageFixture(t) // the flush interval is an hour: only the batch size wakes the writer
	var txs atomic.Int64
	var sizes sync.Map
	f.usage.inFlush = func(n int) { sizes.Store(txs.Add(1), n) }
	stop := f.run(t)
	for i := range usageBatch - 1 {
		f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", PromptTokens: i, Status: 200})
	}
	if n := f.count(t); n != 0 {
		t.Fatalf("%d rows written before the batch was full or the interval passed", n)
	}
	f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	waitFor(t, "a full batch is written", func() bool { return f.count(t) == usageBatch })
	for range 10 {
		f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	}
	stop()
	if n := f.count(t); n != usageBatch+10 {
		t.Errorf("after Run ended: %d rows, want %d (the rest is flushed on the way out)", n, usageBatch+10)
	}
	if n, _ := sizes.Load(int64(1)); txs.Load() != 2 || n != usageBatch {
		t.Errorf("%d transactions (first of %v rows), want 2: the batch, then the rest", txs.Load(), n)
	}
}

// One-api's failure under load: concurrent writers and "database is locked". Here 20
// goroutines record 500 requests each, spread over about half a second, while every flush is
// slow (it holds the write lock for 20 ms), another process creates tokens in the same
// database and the admin reads summaries.
func TestUsageConcurrentWritersLoseNothingAndNeverLock(t *testing.T) {
	f := newUsageFixture(t)
	f.usage.cfg.FlushInterval = 5 * time.Millisecond
	var txs atomic.Int64
	flushing := make(chan struct{}) // a flush holds the write lock now
	f.usage.inFlush = func(int) {
		txs.Add(1)
		select {
		case flushing <- struct{}{}:
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop := f.run(t)
	other := openTestStore(t, f.path) // like `hearth token create` while the relay runs

	const writers, each = 20, 500
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if i%25 == 0 {
					time.Sleep(20 * time.Millisecond) // requests arrive over time, not all at once
				}
				f.usage.Record(UsageRecord{TokenID: fmt.Sprintf("tok_%d", w), TokenName: fmt.Sprintf("client%d", w),
					Channel: "home", RequestedModel: "qwen3:14b", ServedModel: "qwen3:14b", PromptTokens: 1, CompletionTokens: i,
					Status: 200, Stream: i%2 == 0})
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			select { // write while a flush holds the lock, so that this one has to wait for it
			case <-flushing:
			case <-time.After(100 * time.Millisecond):
			}
			if _, _, err := other.Create(context.Background(), TokenSpec{Name: fmt.Sprintf("cli%d", i)}); err != nil {
				errs <- fmt.Errorf("token create during the load: %w", err)
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			time.Sleep(15 * time.Millisecond)
			if _, err := f.usage.Summary(context.Background(), "token", time.Time{}); err != nil {
				errs <- fmt.Errorf("summary during the load: %w", err)
			}
		}
	})
	wg.Wait()
	stop()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.count(t); n != writers*each || f.usage.Dropped() != 0 {
		t.Fatalf("%d rows and %d dropped, want %d and 0", n, f.usage.Dropped(), writers*each)
	}
	var sum int64
	if err := f.store.db.QueryRow(`SELECT SUM(completion_tokens) FROM usage_records`).Scan(&sum); err != nil || sum != writers*each*(each-1)/2 {
		t.Errorf("completion tokens add up to %d (%v), want %d: a record was written twice or lost", sum, err, writers*each*(each-1)/2)
	}
	if logs := f.logs.String(); strings.Contains(logs, "locked") || strings.Contains(logs, "level=WARN") {
		t.Errorf("warnings during the load:\n%s", logs)
	}
	if txs.Load() >= writers*each/10 {
		t.Errorf("%d transactions for %d records: the writes are not batched", txs.Load(), writers*each)
	}
	t.Logf("%d records in %d transactions", writers*each, txs.Load())
}

func TestUsageFullBufferDropsCountsAndWarnsOnce(t *testing.T) {
	f := newUsageFixture(t, WithUsageBuffer(100))
	for range 150 {
		f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	}
	for range 30 {
		f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	}
	if d := f.usage.Dropped(); d != 80 {
		t.Errorf("dropped %d, want 80", d)
	}
	if n := strings.Count(f.logs.String(), "buffer full"); n != 1 {
		t.Errorf("%d warnings about dropped records, want 1 (rate-limited):\n%s", n, f.logs.String())
	}
	if !strings.Contains(f.logs.String(), "dropped=1 ") {
		t.Errorf("the warning says how many: %s", f.logs.String())
	}
	f.flush(t)
	if n := f.count(t); n != 100 {
		t.Errorf("%d rows, want the 100 that fitted", n)
	}
}

func TestUsageFailedFlushKeepsTheRecords(t *testing.T) {
	f := newUsageFixture(t)
	for i := range 5 {
		f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", PromptTokens: i, Status: 200})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.usage.flush(ctx); err == nil {
		t.Fatal("a flush with an ended context succeeded")
	}
	f.usage.Record(UsageRecord{TokenID: "tok_1", TokenName: "phone", Channel: "home", PromptTokens: 5, Status: 200})
	f.flush(t)
	got, _ := readRecords(t, f.store)
	if len(got) != 6 || f.usage.Dropped() != 0 {
		t.Fatalf("%d rows, %d dropped: want all 6 after the retry", len(got), f.usage.Dropped())
	}
	for i, r := range got {
		if r.PromptTokens != i {
			t.Errorf("row %d has prompt %d: the order changed", i, r.PromptTokens)
		}
	}
}

func TestUsageRetentionOncePerDay(t *testing.T) {
	f := newUsageFixture(t)
	f.usage.cfg.FlushInterval = 5 * time.Millisecond
	now := f.clock.Now()
	for _, age := range []time.Duration{401 * 24 * time.Hour, 399 * 24 * time.Hour, time.Hour} {
		f.usage.Record(UsageRecord{Time: now.Add(-age), TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	}
	f.flush(t)
	f.run(t)
	waitFor(t, "the record older than 400 days is deleted", func() bool { return f.count(t) == 2 })

	// A day later, the record that was 399 days old is past the retention too.
	f.clock.Advance(2 * 24 * time.Hour)
	waitFor(t, "the next day's deletion", func() bool { return f.count(t) == 1 })
}

func TestUsageSummary(t *testing.T) {
	f := newUsageFixture(t)
	day1 := time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC)
	day2 := day1.Add(time.Hour) // 2026-03-02 00:30
	for _, r := range []UsageRecord{
		{Time: day1, TokenName: "phone", Channel: "home", RequestedModel: "qwen3:14b", ServedModel: "qwen3:14b",
			PromptTokens: 100, CompletionTokens: 200, TTFT: 100 * time.Millisecond, Duration: time.Second, Status: 200, Stream: true},
		{Time: day1, TokenName: "phone", Channel: "deepseek", RequestedModel: "qwen3:14b", ServedModel: "deepseek-chat",
			PromptTokens: 1000, CompletionTokens: 3000, Estimated: true, TTFT: 300 * time.Millisecond, Duration: 3 * time.Second,
			Status: 200, FellBackFrom: "home", Stream: true},
		{Time: day2, TokenName: "laptop", Channel: "deepseek", RequestedModel: "deepseek-chat", ServedModel: "deepseek-chat",
			PromptTokens: 1000, CompletionTokens: 1000, TTFT: 500 * time.Millisecond, Duration: 2 * time.Second, Status: 200},
		{Time: day2, TokenName: "laptop", Channel: "deepseek", RequestedModel: "deepseek-chat", Duration: 50 * time.Millisecond, Status: 429},
		{Time: day1.Add(-8 * 24 * time.Hour), TokenName: "old", Channel: "home", RequestedModel: "llama3", PromptTokens: 5, Status: 200},
	} {
		r.TokenID = "tok_" + r.TokenName
		f.usage.Record(r)
	}
	f.flush(t)
	ds := (1000*0.27 + 3000*1.10) / 1e6
	dl := (1000*0.27 + 1000*1.10) / 1e6
	since := time.Date(2026, 2, 25, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		by   string
		want []UsageRow
	}{
		{"day", []UsageRow{
			{Key: "2026-03-01", Requests: 2, PromptTokens: 1100, CompletionTokens: 3200, EstimatedShare: 4000.0 / 4300, Cost: ds,
				AvgTTFT: 200 * time.Millisecond, AvgDuration: 2 * time.Second},
			{Key: "2026-03-02", Requests: 2, Errors: 1, PromptTokens: 1000, CompletionTokens: 1000, Cost: dl,
				AvgTTFT: 500 * time.Millisecond, AvgDuration: 1025 * time.Millisecond},
		}},
		{"token", []UsageRow{
			{Key: "laptop", Requests: 2, Errors: 1, PromptTokens: 1000, CompletionTokens: 1000, Cost: dl,
				AvgTTFT: 500 * time.Millisecond, AvgDuration: 1025 * time.Millisecond},
			{Key: "phone", Requests: 2, PromptTokens: 1100, CompletionTokens: 3200, EstimatedShare: 4000.0 / 4300, Cost: ds,
				AvgTTFT: 200 * time.Millisecond, AvgDuration: 2 * time.Second},
		}},
		{"channel", []UsageRow{
			{Key: "deepseek", Requests: 3, Errors: 1, PromptTokens: 2000, CompletionTokens: 4000, EstimatedShare: 4000.0 / 6000,
				Cost: ds + dl, AvgTTFT: 400 * time.Millisecond, AvgDuration: 1683333 * time.Microsecond},
			{Key: "home", Requests: 1, PromptTokens: 100, CompletionTokens: 200, AvgTTFT: 100 * time.Millisecond, AvgDuration: time.Second},
		}},
		{"model", []UsageRow{
			{Key: "deepseek-chat", Requests: 3, Errors: 1, PromptTokens: 2000, CompletionTokens: 4000, EstimatedShare: 4000.0 / 6000,
				Cost: ds + dl, AvgTTFT: 400 * time.Millisecond, AvgDuration: 1683333 * time.Microsecond},
			{Key: "qwen3:14b", Requests: 1, PromptTokens: 100, CompletionTokens: 200, AvgTTFT: 100 * time.Millisecond, AvgDuration: time.Second},
		}},
	} {
		got, err := f.usage.Summary(context.Background(), tc.by, since)
		if err != nil {
			t.Fatalf("by %s: %v", tc.by, err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("by %s: %d rows, want %d: %+v", tc.by, len(got), len(tc.want), got)
		}
		for i := range got {
			g, w := got[i], tc.want[i]
			if math.Abs(g.Cost-w.Cost) > 1e-12 || math.Abs(g.EstimatedShare-w.EstimatedShare) > 1e-9 {
				t.Errorf("by %s row %d: cost %v share %v, want %v %v", tc.by, i, g.Cost, g.EstimatedShare, w.Cost, w.EstimatedShare)
			}
			g.Cost, g.EstimatedShare, w.Cost, w.EstimatedShare = 0, 0, 0, 0
			if g != w {
				t.Errorf("by %s row %d:\n got %+v\nwant %+v", tc.by, i, g, w)
			}
		}
	}
	if all, err := f.usage.Summary(context.Background(), "token", time.Time{}); err != nil || len(all) != 3 {
		t.Errorf("since the beginning: %d rows (%v), want the old token's too", len(all), err)
	}
	if _, err := f.usage.Summary(context.Background(), "week", since); !errors.Is(err, ErrSummaryBy) ||
		err.Error() != `usage summary: unknown grouping "week": use day, token, channel or model` {
		t.Errorf("by week: %v", err)
	}
}

func TestUsageAdminHandler(t *testing.T) {
	f := newUsageFixture(t)
	f.usage.Record(UsageRecord{Time: f.clock.Now().Add(-time.Hour), TokenID: "tok_1", TokenName: "phone", Channel: "deepseek",
		RequestedModel: "deepseek-chat", ServedModel: "deepseek-chat", PromptTokens: 1000, CompletionTokens: 1000,
		TTFT: 1500 * time.Microsecond, Duration: 2 * time.Second, Status: 200})
	f.usage.Record(UsageRecord{Time: f.clock.Now().Add(-10 * 24 * time.Hour), TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
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
	u := Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000}
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

func TestUsageEstimateTokens(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"Hello, world!", 4}, // 13 characters
		{"The quick brown fox jumps over the lazy dog.", 11},
		{"你好世界", 4},
		{"こんにちは", 5},
		{"안녕하세요", 5},
		{"Привет, мир", 5}, // 9 Cyrillic letters at 2 per token, 2 ASCII characters
		{"ok 👍", 2},
		{"混合 text", 4},
	} {
		if got := EstimateTokens(tc.text); got != tc.want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
}

// The request path's share of the usage log, and the writer's cost per record off the path.
func BenchmarkUsage(b *testing.B) {
	open := func(b *testing.B, opts ...UsageOption) *UsageLog {
		st, err := OpenStore(filepath.Join(b.TempDir(), "relay.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		u, err := NewUsageLog(st, config.UsageConfig{}, testPrices, nil, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return u
	}
	tok := Token{ID: "tok_1", Name: "phone", TPM: 1 << 40, MonthlyTokens: 1 << 50, MonthlyCost: 1e12}
	rec := UsageRecord{Time: time.Now(), TokenID: "tok_1", TokenName: "phone", Channel: "deepseek", RequestedModel: "qwen3:14b",
		ServedModel: "deepseek-chat", PromptTokens: 100, CompletionTokens: 200, Status: 200, Stream: true}
	b.Run("reserve+settle", func(b *testing.B) {
		u := open(b)
		b.ReportAllocs()
		for b.Loop() {
			settle, err := u.Reserve(tok, "deepseek-chat", 100)
			if err != nil {
				b.Fatal(err)
			}
			settle(Usage{PromptTokens: 100, CompletionTokens: 200})
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
		u := open(b, WithUsageBuffer(b.N+1))
		for range b.N {
			u.Record(rec)
		}
		b.ResetTimer()
		if err := u.flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	})
}

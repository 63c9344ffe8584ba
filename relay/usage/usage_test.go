package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tokens/tokenstest"
)

var testPrices = []config.Price{
	{Model: "deepseek-chat", Prompt: 0.27, Completion: 1.10},
	{Model: "openai/gpt-4o*", Prompt: 2.5, Completion: 10},
	{Model: "gpt-4o*", Prompt: 5, Completion: 15}, // shadowed for openai/... by the line above
	{Model: "qwen3:*", Prompt: 0, Completion: 0},
	{Model: "llama3", Prompt: 1, Completion: 2},
}

type usageFixture struct {
	store *tokens.Store
	usage *Log
	clock *hearthtest.Clock
	path  string
	logs  *hearthtest.Logs
}

func newUsageFixture(t *testing.T, opts ...Option) *usageFixture {
	t.Helper()
	clk := hearthtest.NewClock()
	path := filepath.Join(t.TempDir(), "relay.db")
	st := tokenstest.Open(t, path, tokens.WithClock(clk.Now))
	logs := &hearthtest.Logs{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	u, err := New(st, config.UsageConfig{FlushInterval: time.Hour, Retention: 400 * 24 * time.Hour}, testPrices, log,
		append([]Option{WithClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &usageFixture{store: st, usage: u, clock: clk, path: path, logs: logs}
}

// run starts u.Run and returns a function that stops it and waits.
func (f *usageFixture) run(t *testing.T) (stop func()) {
	t.Helper()
	return hearthtest.Run(t, "usage log", f.usage.Run)
}

func (f *usageFixture) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.store.DB().QueryRow(`SELECT COUNT(*) FROM usage_records`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *usageFixture) flush(t *testing.T) {
	t.Helper()
	if err := f.usage.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// readRecords reads the rows back as records, oldest first.
func readRecords(t *testing.T, st *tokens.Store) ([]Record, []float64) {
	t.Helper()
	rows, err := st.DB().Query(`SELECT time, token_id, token_name, channel, key_id, requested_model, served_model, prompt_tokens,
		completion_tokens, estimated, ttft_us, duration_us, status, fell_back_from, stream, cost FROM usage_records ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Record
	var costs []float64
	for rows.Next() {
		var r Record
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
		rec  Record
		cost float64
	}{
		{Record{Time: t0, TokenID: "tok_1", TokenName: "phone", Channel: "home", RequestedModel: "qwen3:14b", ServedModel: "qwen3:14b",
			PromptTokens: 120, CompletionTokens: 300, TTFT: 180 * time.Millisecond, Duration: 2 * time.Second, Status: 200, Stream: true}, 0},
		{Record{Time: t0.Add(time.Second), TokenID: "tok_1", TokenName: "phone", Channel: "deepseek", KeyID: "deepseek#2",
			RequestedModel: "qwen3:14b", ServedModel: "deepseek-chat", PromptTokens: 1000, CompletionTokens: 2000, Estimated: true,
			TTFT: 700 * time.Millisecond, Duration: 3 * time.Second, Status: 200, FellBackFrom: "home", Stream: true},
			(1000*0.27 + 2000*1.10) / 1e6},
		{Record{Time: t0.Add(2 * time.Second), TokenID: "tok_2", TokenName: "laptop", Channel: "openai", KeyID: "openai#1",
			RequestedModel: "gpt-4o", ServedModel: "openai/gpt-4o-2024-08-06", PromptTokens: 50, CompletionTokens: 10,
			TTFT: 900 * time.Millisecond, Duration: 900 * time.Millisecond, Status: 200, FellBackFrom: "home,deepseek"},
			(50*2.5 + 10*10.0) / 1e6},
		{Record{Time: t0.Add(3 * time.Second), TokenID: "tok_2", TokenName: "laptop", Channel: "deepseek", KeyID: "deepseek#1",
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
	f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
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
		f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", PromptTokens: i, Status: 200})
	}
	if n := f.count(t); n != 0 {
		t.Fatalf("%d rows written before the batch was full or the interval passed", n)
	}
	f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	hearthtest.Eventually(t, "a full batch is written", 3*time.Second, func() bool { return f.count(t) == usageBatch })
	for range 10 {
		f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
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
	other := tokenstest.Open(t, f.path) // like `hearth token create` while the relay runs

	const writers, each = 20, 500
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if i%25 == 0 {
					time.Sleep(20 * time.Millisecond) // requests arrive over time, not all at once
				}
				f.usage.Record(Record{TokenID: fmt.Sprintf("tok_%d", w), TokenName: fmt.Sprintf("client%d", w),
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
			if _, _, err := other.Create(t.Context(), tokens.Spec{Name: fmt.Sprintf("cli%d", i)}); err != nil {
				errs <- fmt.Errorf("token create during the load: %w", err)
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			time.Sleep(15 * time.Millisecond)
			if _, err := f.usage.Summary(t.Context(), "token", time.Time{}); err != nil {
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
	if err := f.store.DB().QueryRow(`SELECT SUM(completion_tokens) FROM usage_records`).Scan(&sum); err != nil || sum != writers*each*(each-1)/2 {
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
	f := newUsageFixture(t, WithBuffer(100))
	for range 150 {
		f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	}
	for range 30 {
		f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
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
		f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", PromptTokens: i, Status: 200})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := f.usage.flush(ctx); err == nil {
		t.Fatal("a flush with an ended context succeeded")
	}
	f.usage.Record(Record{TokenID: "tok_1", TokenName: "phone", Channel: "home", PromptTokens: 5, Status: 200})
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
		f.usage.Record(Record{Time: now.Add(-age), TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200})
	}
	f.flush(t)
	f.run(t)
	hearthtest.Eventually(t, "the record older than 400 days is deleted", 3*time.Second, func() bool { return f.count(t) == 2 })

	// A day later, the record that was 399 days old is past the retention too.
	f.clock.Advance(2 * 24 * time.Hour)
	hearthtest.Eventually(t, "the next day's deletion", 3*time.Second, func() bool { return f.count(t) == 1 })
}

func TestUsageSummary(t *testing.T) {
	f := newUsageFixture(t)
	day1 := time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC)
	day2 := day1.Add(time.Hour) // 2026-03-02 00:30
	for _, r := range []Record{
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
		want []Row
	}{
		{"day", []Row{
			{Key: "2026-03-01", Requests: 2, PromptTokens: 1100, CompletionTokens: 3200, EstimatedShare: 4000.0 / 4300, Cost: ds,
				AvgTTFT: 200 * time.Millisecond, AvgDuration: 2 * time.Second},
			{Key: "2026-03-02", Requests: 2, Errors: 1, PromptTokens: 1000, CompletionTokens: 1000, Cost: dl,
				AvgTTFT: 500 * time.Millisecond, AvgDuration: 1025 * time.Millisecond},
		}},
		{"token", []Row{
			{Key: "laptop", Requests: 2, Errors: 1, PromptTokens: 1000, CompletionTokens: 1000, Cost: dl,
				AvgTTFT: 500 * time.Millisecond, AvgDuration: 1025 * time.Millisecond},
			{Key: "phone", Requests: 2, PromptTokens: 1100, CompletionTokens: 3200, EstimatedShare: 4000.0 / 4300, Cost: ds,
				AvgTTFT: 200 * time.Millisecond, AvgDuration: 2 * time.Second},
		}},
		{"channel", []Row{
			{Key: "deepseek", Requests: 3, Errors: 1, PromptTokens: 2000, CompletionTokens: 4000, EstimatedShare: 4000.0 / 6000,
				Cost: ds + dl, AvgTTFT: 400 * time.Millisecond, AvgDuration: 1683333 * time.Microsecond},
			{Key: "home", Requests: 1, PromptTokens: 100, CompletionTokens: 200, AvgTTFT: 100 * time.Millisecond, AvgDuration: time.Second},
		}},
		{"model", []Row{
			{Key: "deepseek-chat", Requests: 3, Errors: 1, PromptTokens: 2000, CompletionTokens: 4000, EstimatedShare: 4000.0 / 6000,
				Cost: ds + dl, AvgTTFT: 400 * time.Millisecond, AvgDuration: 1683333 * time.Microsecond},
			{Key: "qwen3:14b", Requests: 1, PromptTokens: 100, CompletionTokens: 200, AvgTTFT: 100 * time.Millisecond, AvgDuration: time.Second},
		}},
	} {
		got, err := f.usage.Summary(t.Context(), tc.by, since)
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
	if all, err := f.usage.Summary(t.Context(), "token", time.Time{}); err != nil || len(all) != 3 {
		t.Errorf("since the beginning: %d rows (%v), want the old token's too", len(all), err)
	}
	if _, err := f.usage.Summary(t.Context(), "week", since); !errors.Is(err, ErrSummaryBy) ||
		err.Error() != `usage summary: unknown grouping "week": use day, token, channel or model` {
		t.Errorf("by week: %v", err)
	}
}

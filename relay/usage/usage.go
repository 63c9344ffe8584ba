// Package usage is the relay's usage log and quotas: every request's tokens, cost, time to
// first token and status, written to the token store's database in batches off the request
// path; the summaries the admin API and `hearth usage` show; and the per-token quotas (monthly
// tokens and cost, tokens per minute) that Reserve checks from memory before a request goes
// upstream. It uses relay/tokens and relay/count, nothing else of the relay.
package usage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
)

// Record is one request through the relay, as the usage log keeps it.
type Record struct {
	// Time is when the request arrived; zero = when Record is called.
	Time      time.Time
	TokenID   string
	TokenName string
	// Channel answered the request (the last one tried when none did).
	Channel string
	// KeyID names which of the channel's keys was used ("deepseek#2"); "" for home.
	KeyID string
	// RequestedModel is what the client asked for; ServedModel what the channel ran.
	RequestedModel string
	ServedModel    string
	// PromptTokens and CompletionTokens as the upstream counted them, or estimated.
	PromptTokens     int
	CompletionTokens int
	Estimated        bool
	// TTFT is the time to the first byte of the answer; Duration the whole request.
	TTFT     time.Duration
	Duration time.Duration
	// Status is the HTTP status the client got.
	Status int
	// FellBackFrom are the channels tried before Channel, comma-separated.
	FellBackFrom string
	Stream       bool
}

// Defaults of the usage log.
const (
	// DefaultBuffer bounds the records waiting for a flush (about 300 bytes each);
	// beyond it records are dropped and counted.
	DefaultBuffer = 16384
	// usageBatch records waiting wake the writer before its interval ends.
	usageBatch = 256
	// dropWarnEvery rate-limits the warning about dropped records.
	dropWarnEvery = time.Minute
	// pruneEvery is how often records older than the retention are deleted.
	pruneEvery = 24 * time.Hour
)

// Log records requests in the relay's database and keeps the per-token counts that
// quotas are checked against. The request path only appends to a bounded buffer in memory;
// one goroutine (Run) writes the buffer in one transaction per flush, so the database has a
// single writer in this process and never answers "database is locked" to a request.
type Log struct {
	store  *tokens.Store
	db     *sql.DB
	cfg    config.UsageConfig
	prices atomic.Pointer[priceTable]
	log    *slog.Logger
	now    func() time.Time
	bound  int

	mu    sync.Mutex
	buf   []Record
	spare []Record // the previous batch's array, reused
	wake  chan struct{}

	dropped   atomic.Int64 // since the start
	warned    atomic.Int64 // dropped count at the last warning
	lastWarn  atomic.Int64 // unix nanoseconds of the last warning
	lastPrune time.Time    // Run's own

	quotas quotas

	// inFlush, when set (tests), runs inside each flush's transaction.
	inFlush func(rows int)
}

// Option changes a Log's defaults.
type Option func(*Log)

// WithUsageClock replaces time.Now (month boundaries, the TPM window, reservations).
func WithClock(now func() time.Time) Option { return func(u *Log) { u.now = now } }

// WithUsageBuffer sets how many records may wait for a flush (default DefaultBuffer).
func WithBuffer(n int) Option {
	return func(u *Log) {
		if n > 0 {
			u.bound = n
		}
	}
}

// NewUsageLog builds the usage log on the store's database, whose migrations made its table,
// and loads this month's totals per token. Zero cfg fields take the defaults of
// config.DefaultRelay. A nil logger discards.
func New(store *tokens.Store, cfg config.UsageConfig, prices []config.Price, logger *slog.Logger, opts ...Option) (*Log, error) {
	def := config.DefaultRelay().Usage
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = def.FlushInterval
	}
	if cfg.Retention <= 0 {
		cfg.Retention = def.Retention
	}
	u := &Log{store: store, db: store.DB(), cfg: cfg, log: logging.OrDiscard(logger), now: time.Now,
		bound: DefaultBuffer, wake: make(chan struct{}, 1), quotas: quotas{use: map[string]*tokenUse{}}}
	for _, o := range opts {
		o(u)
	}
	if err := u.SetPrices(prices); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := u.loadMonth(ctx); err != nil {
		return nil, fmt.Errorf("relay: usage: read this month's totals: %w", err)
	}
	return u, nil
}

// Record queues r for the next flush and counts its cost (at the served model's price)
// toward the token's monthly cost quota. It never blocks on the disk: when the buffer is
// full the record is dropped, counted (Dropped) and warned about at most once a minute.
func (u *Log) Record(r Record) {
	if r.Time.IsZero() {
		r.Time = u.now()
	}
	u.countCost(&r)
	u.mu.Lock()
	if len(u.buf) >= u.bound {
		u.mu.Unlock()
		u.drop(1)
		return
	}
	u.buf = append(u.buf, r)
	n := len(u.buf)
	u.mu.Unlock()
	if n == usageBatch {
		select {
		case u.wake <- struct{}{}:
		default:
		}
	}
}

// Dropped is how many records found the buffer full since the start.
func (u *Log) Dropped() int64 { return u.dropped.Load() }

func (u *Log) drop(k int64) {
	n := u.dropped.Add(k)
	now := time.Now().UnixNano()
	last := u.lastWarn.Load()
	if now-last < int64(dropWarnEvery) || !u.lastWarn.CompareAndSwap(last, now) {
		return
	}
	since := n - u.warned.Swap(n)
	u.log.Warn("usage log: buffer full, records dropped: the database is too slow or stuck",
		"dropped", since, "dropped_total", n, "buffer", u.bound)
}

// Run writes the buffer every flush interval, or sooner when 256 records wait, and deletes
// records older than the retention once a day. When ctx ends it writes what is buffered and
// returns nil; records that come later wait for Flush.
func (u *Log) Run(ctx context.Context) error {
	t := time.NewTicker(u.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := u.flush(fctx)
			cancel()
			if err != nil {
				u.log.Error("usage log: last flush failed; records lost", "err", err)
			}
			return nil
		case <-t.C:
		case <-u.wake:
		}
		if err := u.flush(ctx); err != nil && ctx.Err() == nil {
			u.log.Warn("usage log: flush failed; will retry", "err", err)
		}
		now := u.now()
		u.expireHolds(now)
		if now.Sub(u.lastPrune) >= pruneEvery {
			if n, err := u.prune(ctx, now); err != nil && ctx.Err() == nil {
				u.log.Warn("usage log: deleting old records failed", "err", err)
			} else if err == nil {
				u.lastPrune = now
				if n > 0 {
					u.log.Info("usage log: old records deleted", "records", n, "older_than", now.Add(-u.cfg.Retention).UTC().Format(time.DateOnly))
				}
			}
		}
	}
}

// Flush writes what is buffered now. Run flushes by itself; this is for when Run's context
// ended before the servers that Record did (a flush at a time is not required: each takes
// its own records).
func (u *Log) Flush(ctx context.Context) error { return u.flush(ctx) }

const insertUsage = `INSERT INTO usage_records (time, token_id, token_name, channel, key_id, requested_model, served_model,
	prompt_tokens, completion_tokens, estimated, ttft_us, duration_us, status, fell_back_from, stream, cost)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// flush writes what is buffered in one transaction. On failure the records go back to the
// buffer, as many as fit.
func (u *Log) flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.buf
	if len(batch) == 0 {
		u.mu.Unlock()
		return nil
	}
	u.buf, u.spare = u.spare[:0], nil
	u.mu.Unlock()
	err := u.store.InTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, insertUsage)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range batch {
			r := &batch[i]
			model := r.ServedModel
			if model == "" {
				model = r.RequestedModel
			}
			cost := u.Cost(model, count.Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens})
			if _, err := stmt.ExecContext(ctx, r.Time.UnixMilli(), r.TokenID, r.TokenName, r.Channel, r.KeyID,
				r.RequestedModel, r.ServedModel, r.PromptTokens, r.CompletionTokens, r.Estimated,
				r.TTFT.Microseconds(), r.Duration.Microseconds(), r.Status, r.FellBackFrom, r.Stream, cost); err != nil {
				return err
			}
		}
		if u.inFlush != nil {
			u.inFlush(len(batch))
		}
		return nil
	})
	u.mu.Lock()
	if err == nil {
		clear(batch)
		u.spare = batch[:0]
		u.mu.Unlock()
		return nil
	}
	err = fmt.Errorf("relay: usage: write %d records: %w", len(batch), err)
	room := max(u.bound-len(u.buf), 0)
	lost := max(len(batch)-room, 0)
	u.buf = append(batch[:len(batch)-lost], u.buf...)
	u.mu.Unlock()
	if lost > 0 {
		u.drop(int64(lost))
	}
	return err
}

// prune deletes records older than the retention, in slices so that the write lock is
// never held for long.
func (u *Log) prune(ctx context.Context, now time.Time) (int64, error) {
	cut := now.Add(-u.cfg.Retention).UnixMilli()
	var total int64
	for {
		var n int64
		err := u.store.InTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM usage_records WHERE id IN
				(SELECT id FROM usage_records WHERE time < ? LIMIT 5000)`, cut)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		if err != nil || n < 5000 {
			return total, err
		}
	}
}

// Row is one line of a usage summary.
type Row struct {
	// Key is the day (2006-01-02, UTC), token name, channel or model (the served one, else
	// the requested one) the row adds up.
	Key              string
	Requests         int64
	Errors           int64 // answered with a status of 400 or more
	PromptTokens     int64
	CompletionTokens int64
	// EstimatedShare is the fraction (0 to 1) of the tokens that were estimated, not counted
	// by the upstream.
	EstimatedShare float64
	Cost           float64       // in the prices' unit, priced when each record was written
	AvgTTFT        time.Duration // over the requests that got a first byte
	AvgDuration    time.Duration
}

// MarshalJSON writes durations as milliseconds.
func (r Row) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Key              string  `json:"key"`
		Requests         int64   `json:"requests"`
		Errors           int64   `json:"errors"`
		PromptTokens     int64   `json:"prompt_tokens"`
		CompletionTokens int64   `json:"completion_tokens"`
		EstimatedShare   float64 `json:"estimated_share"`
		Cost             float64 `json:"cost"`
		AvgTTFTMs        float64 `json:"avg_ttft_ms"`
		AvgDurationMs    float64 `json:"avg_duration_ms"`
	}{r.Key, r.Requests, r.Errors, r.PromptTokens, r.CompletionTokens, r.EstimatedShare, r.Cost,
		float64(r.AvgTTFT.Microseconds()) / 1000, float64(r.AvgDuration.Microseconds()) / 1000})
}

// ErrSummaryBy: Summary was asked to group by something it does not know.
var ErrSummaryBy = errors.New("usage summary: unknown grouping")

// summaryKeys are the SQL expressions Summary groups by.
var summaryKeys = map[string]string{
	"day":     `strftime('%Y-%m-%d', time / 1000, 'unixepoch')`,
	"token":   `token_name`,
	"channel": `channel`,
	"model":   `CASE WHEN served_model != '' THEN served_model ELSE requested_model END`,
}

// Summary adds up the records written since since, by day, token, channel or model: days in
// order, the others busiest first. Records still in the buffer (up to one flush interval)
// are not counted yet.
func (u *Log) Summary(ctx context.Context, by string, since time.Time) ([]Row, error) {
	return summarize(ctx, u.db, by, since)
}

func summarize(ctx context.Context, db *sql.DB, by string, since time.Time) ([]Row, error) {
	key, ok := summaryKeys[by]
	if !ok {
		return nil, fmt.Errorf("%w %q: use day, token, channel or model", ErrSummaryBy, by)
	}
	order := "k"
	if by != "day" {
		order = "COUNT(*) DESC, k"
	}
	rows, err := db.QueryContext(ctx, `SELECT `+key+` AS k, COUNT(*), SUM(status >= 400), SUM(prompt_tokens), SUM(completion_tokens),
		SUM(CASE WHEN estimated THEN prompt_tokens + completion_tokens ELSE 0 END), SUM(cost),
		AVG(CASE WHEN ttft_us > 0 THEN ttft_us END), AVG(duration_us)
		FROM usage_records WHERE time >= ? GROUP BY k ORDER BY `+order, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("relay: usage summary: %w", err)
	}
	defer rows.Close()
	out := []Row{}
	for rows.Next() {
		var r Row
		var estimated int64
		var ttft sql.NullFloat64
		var dur float64
		if err := rows.Scan(&r.Key, &r.Requests, &r.Errors, &r.PromptTokens, &r.CompletionTokens, &estimated, &r.Cost, &ttft, &dur); err != nil {
			return nil, fmt.Errorf("relay: usage summary: %w", err)
		}
		if total := r.PromptTokens + r.CompletionTokens; total > 0 {
			r.EstimatedShare = float64(estimated) / float64(total)
		}
		r.AvgTTFT = time.Duration(math.Round(ttft.Float64)) * time.Microsecond
		r.AvgDuration = time.Duration(math.Round(dur)) * time.Microsecond
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("relay: usage summary: %w", err)
	}
	return out, nil
}

// ReadUsage is Summary for a process that only reads the database (`hearth usage`).
func Read(ctx context.Context, store *tokens.Store, by string, since time.Time) ([]Row, error) {
	return summarize(ctx, store.DB(), by, since)
}

// DefaultSince is the period a summary covers when none is asked for.
const DefaultSince = "7d"

// ParseSince reads the start of a summary's period: a duration back from now ("7d", "12h",
// "2w"), a date ("2026-03-01", UTC) or a time (RFC 3339); "all" is the beginning; "" is
// DefaultSince.
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		s = DefaultSince
	case "all":
		return time.Unix(0, 0).UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := tokens.ParseLifetime(s)
	if err != nil || d == 0 {
		return time.Time{}, fmt.Errorf("since %q: give a period back from now (7d, 12h, 2w), a date (2026-03-01) or \"all\"", s)
	}
	return now.Add(-d), nil
}

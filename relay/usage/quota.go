package usage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/modelname"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
)

// Errors of Reserve, inside a *LimitError whose message a person can act on; the caller
// answers 429 with LimitError.APIError.
var (
	// ErrQuota: the token's monthly token or cost quota would be exceeded.
	ErrQuota = errors.New("monthly quota exceeded")
	// ErrTPM: the token's tokens per minute would be exceeded.
	ErrTPM = errors.New("tokens per minute exceeded")
)

// reservationTTL is how long a reservation holds its tokens when nobody settles it (a
// handler that panicked, a bug): long enough for any stream.
const reservationTTL = 10 * time.Minute

// LimitError is Reserve's refusal.
type LimitError struct {
	Kind    error // ErrQuota or ErrTPM
	Message string
	// RetryAfter is when the request would fit again; 0 when only the next month helps.
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Message }
func (e *LimitError) Unwrap() error { return e.Kind }

// APIError is the 429 to answer with, in the codes OpenAI uses for the same refusals.
func (e *LimitError) APIError() *apierror.Error {
	ae := &apierror.Error{Status: http.StatusTooManyRequests, Code: "rate_limit_exceeded", Message: e.Message}
	if errors.Is(e.Kind, ErrQuota) {
		ae.Code = "insufficient_quota"
	}
	if e.RetryAfter > 0 {
		ae.RetryAfter = apierror.RetrySeconds(e.RetryAfter)
	}
	return ae
}

// quotas are the per-token counts that Reserve checks, all in memory: this month's tokens
// (settled) and cost (recorded), loaded from the usage log at start; tokens settled in the
// last minute; and what requests under way have reserved.
type quotas struct {
	mu       sync.Mutex
	month    time.Time // first instant of the month the totals are for, UTC
	monthEnd time.Time // and of the next
	use      map[string]*tokenUse
	next     uint64
}

type tokenUse struct {
	monthTokens int64
	monthCost   float64
	window      [60]secondTokens // settled tokens by unix second, as a ring
	holds       map[uint64]hold
	heldTokens  int64
	heldCost    float64
}

type secondTokens struct {
	sec    int64
	tokens int64
}

type hold struct {
	tokens  int64
	cost    float64
	expires time.Time
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// roll starts a new month's totals when now is past the current one.
func (q *quotas) roll(now time.Time) {
	if now.Before(q.monthEnd) {
		return
	}
	q.month = monthStart(now)
	q.monthEnd = q.month.AddDate(0, 1, 0)
	for _, tu := range q.use {
		tu.monthTokens, tu.monthCost = 0, 0
	}
}

func (q *quotas) of(id string) *tokenUse {
	tu := q.use[id]
	if tu == nil {
		tu = &tokenUse{holds: map[uint64]hold{}}
		q.use[id] = tu
	}
	return tu
}

func (tu *tokenUse) expire(now time.Time) {
	for id, h := range tu.holds {
		if !now.Before(h.expires) {
			tu.release(id)
		}
	}
}

func (tu *tokenUse) release(id uint64) {
	if h, ok := tu.holds[id]; ok {
		delete(tu.holds, id)
		tu.heldTokens -= h.tokens
		tu.heldCost -= h.cost
	}
}

func (tu *tokenUse) addWindow(now time.Time, n int64) {
	sec := now.Unix()
	b := &tu.window[sec%60]
	if b.sec != sec {
		*b = secondTokens{sec: sec}
	}
	b.tokens += n
}

func (tu *tokenUse) inWindow(b secondTokens, now int64) bool {
	return b.tokens != 0 && b.sec > now-60 && b.sec <= now
}

// tpmWait says how long until est more tokens fit in tpm: 0 when they fit now. One request
// alone always fits, even a larger one, so that a big prompt is not refused forever.
func (tu *tokenUse) tpmWait(now time.Time, tpm, est int64) time.Duration {
	sec := now.Unix()
	busy := tu.heldTokens
	for _, b := range tu.window {
		if tu.inWindow(b, sec) {
			busy += b.tokens
		}
	}
	if busy <= 0 || busy+est <= tpm {
		return 0
	}
	// Refused: when do enough of the oldest seconds leave the window?
	secs := make([]secondTokens, 0, len(tu.window))
	for _, b := range tu.window {
		if tu.inWindow(b, sec) {
			secs = append(secs, b)
		}
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i].sec < secs[j].sec })
	for _, b := range secs {
		busy -= b.tokens
		if busy <= 0 || busy+est <= tpm {
			return time.Unix(b.sec+60, 0).Sub(now)
		}
	}
	return time.Minute // what requests under way hold: their settling frees it
}

// Reserve is checked before the upstream call, with the requested model and the prompt's
// estimated tokens (EstimateTokens). It refuses with a *LimitError (ErrQuota, ErrTPM) when
// the request would take the token over its tokens per minute or its monthly quota of tokens
// or cost, counting this month's use and the requests under way. Otherwise it holds the
// estimate until settle, which counts the real tokens instead (month total and TPM window);
// a reservation nobody settles stops holding after 10 minutes. Cost is counted by Record,
// the one that knows the model that served (a fallback from a free home model to a priced
// vendor costs the vendor's price). Everything is in memory. Call settle once (later calls
// do nothing), with a zero Usage when no upstream answered.
func (u *Log) Reserve(tok tokens.Token, model string, estimatedTokens int) (settle func(actual count.Usage), err error) {
	now := u.now()
	est := int64(max(estimatedTokens, 0))
	var estCost float64
	if tok.MonthlyCost > 0 {
		estCost = u.Cost(model, count.Usage{PromptTokens: int(est)})
	}
	q := &u.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(now)
	tu := q.of(tok.ID)
	tu.expire(now)
	if err := u.check(tok, tu, now, est, estCost); err != nil {
		return nil, err
	}
	q.next++
	id := q.next
	tu.holds[id] = hold{tokens: est, cost: estCost, expires: now.Add(reservationTTL)}
	tu.heldTokens += est
	tu.heldCost += estCost
	var once sync.Once
	return func(actual count.Usage) {
		once.Do(func() { u.settle(tok.ID, id, actual) })
	}, nil
}

func (u *Log) check(tok tokens.Token, tu *tokenUse, now time.Time, est int64, estCost float64) error {
	resets := func() string { return u.quotas.monthEnd.Format("2006-01-02") + " UTC" }
	if q := tok.MonthlyTokens; q > 0 {
		used := tu.monthTokens + tu.heldTokens
		if used >= q || used+est > q {
			need := ""
			if used < q {
				need = fmt.Sprintf(" and this request needs about %s", humanize.Comma(est))
			}
			return &LimitError{Kind: ErrQuota, Message: fmt.Sprintf("token %q has used %s of its %s tokens this month%s (resets %s); raise it with `hearth token set %s --quota-tokens N`",
				tok.Name, humanize.Comma(used), humanize.Comma(q), need, resets(), tok.Name)}
		}
	}
	if q := tok.MonthlyCost; q > 0 {
		used := tu.monthCost + tu.heldCost
		if used >= q || used+estCost > q {
			need := ""
			if used < q {
				need = fmt.Sprintf(" and this request would cost about %s", formatCost(estCost))
			}
			return &LimitError{Kind: ErrQuota, Message: fmt.Sprintf("token %q has used %s of its cost quota of %s this month%s (resets %s); raise it with `hearth token set %s --quota-cost N`",
				tok.Name, formatCost(used), formatCost(q), need, resets(), tok.Name)}
		}
	}
	if tok.TPM > 0 {
		if wait := tu.tpmWait(now, int64(tok.TPM), est); wait > 0 {
			return &LimitError{Kind: ErrTPM, RetryAfter: wait, Message: fmt.Sprintf("token %q is over its limit of %s tokens per minute (the token's tpm): retry in %d s",
				tok.Name, humanize.Comma(int64(tok.TPM)), apierror.RetrySeconds(wait))}
		}
	}
	return nil
}

func (u *Log) settle(tokenID string, hold uint64, actual count.Usage) {
	now := u.now()
	n := int64(max(actual.PromptTokens, 0) + max(actual.CompletionTokens, 0))
	q := &u.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(now)
	tu := q.of(tokenID)
	tu.release(hold)
	tu.monthTokens += n
	tu.addWindow(now, n)
}

// countCost adds a record's cost to its token's month, as the usage log will write it.
func (u *Log) countCost(r *Record) {
	model := r.ServedModel
	if model == "" {
		model = r.RequestedModel
	}
	cost := u.Cost(model, count.Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens})
	if cost == 0 {
		return
	}
	q := &u.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(u.now())
	if !r.Time.Before(q.month) && r.Time.Before(q.monthEnd) {
		q.of(r.TokenID).monthCost += cost
	}
}

// expireHolds drops the reservations nobody settled, for tokens Reserve no longer sees.
func (u *Log) expireHolds(now time.Time) {
	q := &u.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, tu := range q.use {
		tu.expire(now)
	}
}

// loadMonth reads this month's totals per token from the usage log.
func (u *Log) loadMonth(ctx context.Context) error {
	m := monthStart(u.now())
	rows, err := u.db.QueryContext(ctx, `SELECT token_id, SUM(prompt_tokens + completion_tokens), SUM(cost)
		FROM usage_records WHERE time >= ? GROUP BY token_id`, m.UnixMilli())
	if err != nil {
		return err
	}
	defer rows.Close()
	q := &u.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	q.month, q.monthEnd = m, m.AddDate(0, 1, 0)
	for rows.Next() {
		var id string
		var n int64
		var cost float64
		if err := rows.Scan(&id, &n, &cost); err != nil {
			return err
		}
		tu := q.of(id)
		tu.monthTokens, tu.monthCost = n, cost
	}
	return rows.Err()
}

// priceTable is the prices in order, with the price found for each model asked about.
type priceTable struct {
	list   []price
	cache  sync.Map // model → *price, nil for none
	cached atomic.Int32
}

// maxCachedModels bounds the cache: model names come from clients.
const maxCachedModels = 1024

// price is one config.Price with its glob lower-cased and '/' as NUL, so that '*' matches
// it (see Allows).
type price struct {
	glob               string
	prompt, completion float64
}

func compilePrices(in []config.Price) ([]price, error) {
	out := make([]price, 0, len(in))
	for i, p := range in {
		g := strings.ToLower(strings.TrimSpace(p.Model))
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return nil, fmt.Errorf("prices[%d] model %q: not a glob (use * and ? as in \"deepseek-*\")", i, p.Model)
		}
		out = append(out, price{glob: strings.ReplaceAll(g, "/", "\x00"), prompt: p.Prompt, completion: p.Completion})
	}
	return out, nil
}

// SetPrices replaces the prices (on a config reload); records already written keep their cost.
func (u *Log) SetPrices(prices []config.Price) error {
	ps, err := compilePrices(prices)
	if err != nil {
		return fmt.Errorf("relay: usage: %w", err)
	}
	u.prices.Store(&priceTable{list: ps})
	return nil
}

// Cost is what usage of model costs by the first price whose glob matches it (per million
// tokens), 0 when none does. Globs match like Allows: '*' also matches '/', and a model
// "llama3" is also "llama3:latest".
func (u *Log) Cost(model string, usage count.Usage) float64 {
	m := strings.ToLower(strings.TrimSpace(model))
	if m == "" {
		return 0
	}
	p := u.prices.Load().find(m)
	if p == nil {
		return 0
	}
	return (float64(max(usage.PromptTokens, 0))*p.prompt + float64(max(usage.CompletionTokens, 0))*p.completion) / 1e6
}

func (pt *priceTable) find(model string) *price {
	if v, ok := pt.cache.Load(model); ok {
		return v.(*price)
	}
	m := strings.ReplaceAll(model, "/", "\x00")
	names := [...]string{m, modelname.Normalize(m), strings.TrimSuffix(m, ":latest")}
	var found *price
search:
	for i := range pt.list {
		for _, n := range names {
			if ok, _ := path.Match(pt.list[i].glob, n); ok {
				found = &pt.list[i]
				break search
			}
		}
	}
	if pt.cached.Add(1) <= maxCachedModels {
		pt.cache.Store(model, found)
	}
	return found
}

// formatCost shows an amount in the prices' unit: two decimals, more for small amounts.
func formatCost(v float64) string {
	if v != 0 && math.Abs(v) < 0.01 {
		return fmt.Sprintf("%.4f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// Refusal is the answer to a Reserve refusal, on every metered route.
func Refusal(err error) *apierror.Error {
	var le *LimitError
	if errors.As(err, &le) {
		return le.APIError()
	}
	return &apierror.Error{Status: http.StatusTooManyRequests, Code: "quota_exceeded", Message: err.Error()}
}

package webapp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what the generations keep in memory.
type Limits struct {
	// MaxBytes is the most event bytes one generation keeps (default 8 MiB); an answer that
	// grows past it is stopped with an error event.
	MaxBytes int
	// TTL is how long a finished generation stays readable (default 10m).
	TTL time.Duration
	// PerToken is the most generations, running or kept, one token may have (default 16);
	// a new one takes the place of the oldest finished one, so it bounds the running ones.
	PerToken int
	// Total is the most generations the app keeps at once (default 512), the same way.
	Total int
	// TotalBytes is the most event bytes all generations keep together (default 256 MiB);
	// an answer that would pass it is stopped with an error event.
	TotalBytes int64
	// MaxBody is the largest request body, in bytes (default 32 MiB: attached images).
	MaxBody int64
	// HeaderWait is how long POST waits for the upstream's status before it answers with the
	// generation's id anyway (default 3s; a cold model load takes longer).
	HeaderWait time.Duration
}

// DefaultLimits are the limits a zero Limits means.
var DefaultLimits = Limits{MaxBytes: 8 << 20, TTL: 10 * time.Minute, PerToken: 16, Total: 512, TotalBytes: 256 << 20,
	MaxBody: 32 << 20, HeaderWait: 3 * time.Second}

func (l Limits) complete() Limits {
	d := DefaultLimits
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	if l.TTL > 0 {
		d.TTL = l.TTL
	}
	if l.PerToken > 0 {
		d.PerToken = l.PerToken
	}
	if l.Total > 0 {
		d.Total = l.Total
	}
	if l.TotalBytes > 0 {
		d.TotalBytes = l.TotalBytes
	}
	if l.MaxBody > 0 {
		d.MaxBody = l.MaxBody
	}
	if l.HeaderWait > 0 {
		d.HeaderWait = l.HeaderWait
	}
	return d
}

// event is one server-sent event a generation keeps; its id is its index + 1.
type event struct {
	name string // "" for an upstream block kept as it came (its own event: line, if any)
	data []byte // for a named event: the data; for an upstream block: its lines
}

// generation is one chat completion that runs on the server, whoever listens.
type generation struct {
	id    string
	owner [32]byte
	// ownerName is Options.Owner's answer for the request that started it ("" without an
	// Owner), for Options.Revoked.
	ownerName string
	cancel    context.CancelFunc
	gs        *generations

	mu       sync.Mutex
	events   []event
	size     int
	state    string // running, done, stopped, error
	stop     bool   // DELETE asked for the stop
	gone     bool   // forgotten by the app: nothing more is kept or counted
	revoked  bool   // forgotten because its owner was revoked: its streams end at once
	status   int    // the upstream's HTTP status, 0 until known
	channel  string
	model    string
	finished time.Time
	changed  chan struct{} // closed and replaced on every change
	ended    chan struct{} // closed when the upstream handler returned
}

type generations struct {
	lim   Limits
	bytes atomic.Int64 // event bytes kept by all generations
	mu    sync.Mutex
	m     map[string]*generation
}

func newGenerations(lim Limits) *generations {
	return &generations{lim: lim, m: map[string]*generation{}}
}

// owner is who r is, hashed (Options.Owner, else the Authorization header); ok is false when
// the role's Owner does not know r, which then gets nothing of the app's API.
func (a *App) owner(r *http.Request) (sum [32]byte, name string, ok bool) {
	if a.opts.Owner == nil {
		return sha256.Sum256([]byte(r.Header.Get("Authorization"))), "", true
	}
	o := a.opts.Owner(r)
	return sha256.Sum256([]byte("owner:" + o)), o, o != ""
}

// get returns the generation id when owner started it; nil otherwise, so another token
// cannot even tell it exists.
func (gs *generations) get(id string, owner [32]byte) *generation {
	gs.mu.Lock()
	g := gs.m[id]
	gs.mu.Unlock()
	if g == nil || subtle.ConstantTimeCompare(g.owner[:], owner[:]) != 1 {
		return nil
	}
	return g
}

// add registers g unless its owner or the app is at its limit. A finished generation is
// kept only for a reader that dropped off before its end, so at a limit the oldest finished
// one (of the owner, or of anyone for the app's limit) makes room; only running ones refuse
// a new one. Before, an owner's sixteenth answer in ten minutes was refused although all of
// them had been read to the end.
func (gs *generations) add(g *generation) error {
	gs.sweep(time.Now())
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if len(gs.m) >= gs.lim.Total && !gs.forgetOldestFinishedLocked(nil) {
		return fmt.Errorf("the server runs %d answers already: try again in a minute", len(gs.m))
	}
	n := 0
	for _, o := range gs.m {
		if o.owner == g.owner {
			n++
		}
	}
	if n >= gs.lim.PerToken && !gs.forgetOldestFinishedLocked(&g.owner) {
		return fmt.Errorf("this token has %d answers running (the most is %d): stop one or wait for one to finish",
			n, gs.lim.PerToken)
	}
	gs.m[g.id] = g
	return nil
}

// forgetOldestFinishedLocked forgets the generation that finished first, of owner (nil: of
// anyone); false when every one is still running. Callers hold gs.mu.
func (gs *generations) forgetOldestFinishedLocked(owner *[32]byte) bool {
	var oldest *generation
	var at time.Time
	for _, g := range gs.m {
		if owner != nil && g.owner != *owner {
			continue
		}
		g.mu.Lock()
		finished := g.finished
		g.mu.Unlock()
		if !finished.IsZero() && (oldest == nil || finished.Before(at)) {
			oldest, at = g, finished
		}
	}
	if oldest == nil {
		return false
	}
	gs.forgetLocked(oldest.id)
	return true
}

func (gs *generations) remove(id string) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	gs.forgetLocked(id)
}

func (gs *generations) forgetLocked(id string) {
	if g := gs.m[id]; g != nil {
		g.mu.Lock()
		gs.bytes.Add(-int64(g.size))
		g.size, g.gone = 0, true
		g.mu.Unlock()
		delete(gs.m, id)
	}
}

// sweep forgets generations that finished more than TTL ago.
func (gs *generations) sweep(now time.Time) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	for id, g := range gs.m {
		g.mu.Lock()
		old := !g.finished.IsZero() && now.Sub(g.finished) > gs.lim.TTL
		g.mu.Unlock()
		if old {
			gs.forgetLocked(id)
		}
	}
}

// dropRevoked stops and forgets the generations whose owner revoked says may no longer use
// the app, and ends their open streams.
func (gs *generations) dropRevoked(revoked func(owner string) bool) {
	gs.mu.Lock()
	var drop []*generation
	for _, g := range gs.m {
		if g.ownerName != "" && revoked(g.ownerName) {
			drop = append(drop, g)
		}
	}
	for _, g := range drop {
		gs.forgetLocked(g.id)
	}
	gs.mu.Unlock()
	for _, g := range drop {
		g.cancel()
		g.mu.Lock()
		g.revoked = true
		g.events = nil
		g.changedLocked()
		g.mu.Unlock()
	}
}

// appendEvent keeps ev unless the generation, or all of them together, would pass their byte
// limit; false means stop. The end event is always kept.
func (g *generation) appendEvent(ev event, limit int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gone {
		if ev.name == "end" {
			g.finished = time.Now()
			g.changedLocked()
		}
		return ev.name == "end"
	}
	if ev.name != "end" && (g.size+len(ev.data) > limit || g.gs.bytes.Load()+int64(len(ev.data)) > g.gs.lim.TotalBytes) {
		return false
	}
	g.size += len(ev.data)
	g.gs.bytes.Add(int64(len(ev.data)))
	g.events = append(g.events, ev)
	if ev.name == "end" {
		// In the same step as the event: a reader that saw the end finds it finished (and
		// a sweep after it finds its finish time).
		g.finished = time.Now()
	}
	g.changedLocked()
	return true
}

// changedLocked wakes those waiting for g's next change (snapshot's channel). Callers hold g.mu.
func (g *generation) changedLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// snapshot returns the events after seq, whether the generation has ended, and a channel
// closed at its next change.
func (g *generation) snapshot(after int) ([]event, bool, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.revoked {
		return nil, true, g.changed
	}
	var evs []event
	if after < len(g.events) {
		evs = g.events[max(after, 0):]
	}
	return evs, !g.finished.IsZero(), g.changed
}

func (g *generation) view() map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	return map[string]any{"id": g.id, "state": g.state, "status": g.status, "channel": g.channel, "model": g.model, "events": len(g.events)}
}

// startGeneration is POST /app/v1/generations: the body is a /v1/chat/completions body.
func (a *App) startGeneration(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.Limits.MaxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the request body is over %d bytes: attach smaller images", a.opts.Limits.MaxBody))
		return
	}
	var probe struct {
		Model    string          `json:"model"`
		Messages json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || probe.Model == "" || len(probe.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", `the body must be a chat completion request: {"model": "...", "messages": [...], "stream": true}`)
		return
	}
	owner, ownerName, ok := a.owner(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_api_key", "sign in with a token first")
		return
	}
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	ctx, cancel := a.generationContext(r)
	g := &generation{id: hex.EncodeToString(idb[:]), owner: owner, ownerName: ownerName, cancel: cancel, gs: a.gens, state: "running",
		changed: make(chan struct{}), ended: make(chan struct{})}
	if err := a.gens.add(g); err != nil {
		cancel()
		writeError(w, http.StatusTooManyRequests, "too_many_generations", err.Error())
		return
	}
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		cancel()
		a.gens.remove(g.id)
		writeError(w, http.StatusInternalServerError, "internal", "cannot build the upstream request")
		return
	}
	for _, k := range []string{"Authorization", "Accept-Language", "User-Agent", "X-Hearth-Session", "X-Forwarded-For"} {
		if v := r.Header.Get(k); v != "" {
			up.Header.Set(k, v)
		}
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Accept", "text/event-stream")
	up.RemoteAddr, up.Host, up.TLS = r.RemoteAddr, r.Host, r.TLS
	a.wg.Go(func() { a.run(g, up) })

	wait := time.NewTimer(a.opts.Limits.HeaderWait)
	defer wait.Stop()
	for {
		g.mu.Lock()
		status, changed := g.status, g.changed
		g.mu.Unlock()
		if status >= 300 {
			// A refusal (token, quota, unknown model) is the answer to the POST itself.
			select {
			case <-g.ended:
			case <-wait.C:
			}
			a.gens.remove(g.id)
			a.refuse(w, g)
			return
		}
		if status != 0 {
			break
		}
		select {
		case <-changed:
			continue
		case <-wait.C:
		case <-r.Context().Done():
		}
		break
	}
	v := g.view()
	if v["channel"] != "" {
		w.Header().Set("X-Hearth-Channel", v["channel"].(string))
		w.Header().Set("X-Hearth-Model", v["model"].(string))
	}
	writeJSON(w, http.StatusCreated, v)
}

// generationContext is the context a generation's upstream call runs under: the app's own
// (Run's end cancels it), with what Options.Carry takes from the request, never its end.
func (a *App) generationContext(r *http.Request) (context.Context, context.CancelFunc) {
	base := context.Background()
	if a.opts.Carry != nil {
		base = a.opts.Carry(base, r)
	}
	ctx, cancel := context.WithCancel(base)
	unhook := context.AfterFunc(a.ctx, cancel)
	return ctx, func() { unhook(); cancel() }
}

// refuse answers the POST with the upstream's status and error body.
func (a *App) refuse(w http.ResponseWriter, g *generation) {
	g.mu.Lock()
	status := g.status
	var body []byte
	for _, ev := range g.events {
		if ev.name == "error" {
			body = ev.data
		}
	}
	g.mu.Unlock()
	if !json.Valid(body) {
		writeError(w, status, "upstream_error", strings.TrimSpace(string(body)))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// run calls the role's /v1/chat/completions for g and records what it answers.
func (a *App) run(g *generation, up *http.Request) {
	cw := &captureWriter{g: g, h: http.Header{}, limit: a.opts.Limits.MaxBytes}
	defer close(g.ended)
	a.opts.API.ServeHTTP(cw, up)
	cw.finish(up.Context().Err())
	g.cancel()
}

// generation serves /app/v1/generations/{id}[/events].
func (a *App) generation(w http.ResponseWriter, r *http.Request, rest string) {
	id, sub, _ := strings.Cut(rest, "/")
	owner, _, ok := a.owner(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_api_key", "sign in with a token first")
		return
	}
	g := a.gens.get(id, owner)
	if g == nil || (sub != "" && sub != "events") {
		writeError(w, http.StatusNotFound, "not_found", "no such generation here: it expired, or another token started it")
		return
	}
	switch {
	case sub == "events" && r.Method == http.MethodGet:
		a.events(w, r, g)
	case sub == "" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, g.view())
	case sub == "" && r.Method == http.MethodDelete:
		g.mu.Lock()
		g.stop = true
		g.mu.Unlock()
		g.cancel()
		select {
		case <-g.ended:
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
		writeJSON(w, http.StatusOK, g.view())
	case sub == "":
		methodNotAllowed(w, "GET, DELETE")
	default:
		methodNotAllowed(w, http.MethodGet)
	}
}

// events streams g's events after Last-Event-ID (or ?after=N) and then as they come, until
// the generation ends or the client leaves.
func (a *App) events(w http.ResponseWriter, r *http.Request, g *generation) {
	after := 0
	for _, s := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid_request", "Last-Event-ID and ?after= take the number of the last event received")
			return
		}
		after = n
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf bytes.Buffer
	buf.WriteString("retry: 1000\n\n")
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		evs, done, changed := g.snapshot(after)
		for _, ev := range evs {
			after++
			fmt.Fprintf(&buf, "id: %d\n", after)
			if ev.name != "" {
				fmt.Fprintf(&buf, "event: %s\n", ev.name)
				for line := range bytes.SplitSeq(ev.data, []byte("\n")) {
					buf.WriteString("data: ")
					buf.Write(line)
					buf.WriteByte('\n')
				}
			} else {
				buf.Write(ev.data)
			}
			buf.WriteByte('\n')
		}
		if buf.Len() > 0 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			_ = rc.Flush()
			buf.Reset()
		}
		if done && len(evs) == 0 {
			return
		}
		if done {
			continue
		}
		select {
		case <-changed:
		case <-ping.C:
			buf.WriteString(": ping\n\n")
		case <-r.Context().Done():
			return
		}
	}
}

var errTooLong = errors.New("webapp: the answer is over the generation's byte limit")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the OpenAI dialect the app's calls use.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"message": msg, "type": http.StatusText(status), "code": code}})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+allow)
}

func itoa(n int) string { return strconv.Itoa(n) }

package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/streamtail"
	"github.com/hearthlab/hearth/relay/auth"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tunnel"
	"github.com/hearthlab/hearth/relay/usage"
)

// home sends the public /v1 and /api routes that only home serves (the chat routes go
// through the channel Chain) through the tunnel to the home cluster.
type home struct {
	name   string
	tunnel *tunnel.Server
	auth   *auth.Auth
	// usage meters the routes that generate or embed (completions, embeddings) against the
	// token's quotas and records them, as the Chain does chats. nil meters nothing.
	usage *usage.Log
	log   *slog.Logger
}

func (h *home) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	d := apierror.DialectOf(r.URL.Path)
	if changesStore(r.URL.Path) && !h.mayChangeStore(w, r) {
		return
	}
	var body []byte
	var req homeRequest
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		var err error
		body, err = io.ReadAll(r.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeTooLarge(w, r, tooLarge.Limit)
				return
			}
			apierror.Write(w, d, &apierror.Error{Status: http.StatusBadRequest, Code: "bad_body",
				Message: fmt.Sprintf("could not read the request body: %v", err)})
			return
		}
		req = readHomeRequest(body)
		for _, model := range req.models {
			if !h.auth.CheckModel(w, r, model) {
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	if kind := meteredRoute(r.URL.Path); kind != unmetered && h.usage != nil {
		h.serveMetered(w, r, kind, body, req, start)
		return
	}
	if h.offline(w, d) {
		return
	}
	h.tunnel.Forward(w, r, tunnel.HomeHost(h.name))
}

// offline answers 503 and returns true when no agent holds home's tunnel.
func (h *home) offline(w http.ResponseWriter, d apierror.Dialect) bool {
	if h.tunnel.Channel(h.name) {
		return false
	}
	apierror.Write(w, d, &apierror.Error{Status: http.StatusServiceUnavailable, Code: "home_offline", RetryAfter: 10,
		Message: fmt.Sprintf("home is offline: no agent holds the tunnel %q to this relay right now; check `hearth status` at home and the agent's tunnel settings", h.name)})
	return true
}

// changesStore says whether p is a route that changes the home cluster's model store. Such
// a route names models in fields a per-model check cannot cover (the source of a copy, the
// FROM of a create, the layers of a blob upload), and the agent trusts the tunnel, so the
// relay must decide who may use it. The path is cleaned first: refusing a spelling the agent
// would not route costs nothing, forwarding one it does would.
func changesStore(p string) bool {
	p = cleanRoute(p)
	switch p {
	case "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs":
		return true
	}
	return strings.HasPrefix(p, "/api/blobs/")
}

// cleanRoute is p as the routes above are matched: cleaned, lower case.
func cleanRoute(p string) string { return strings.ToLower(path.Clean("/" + p)) }

// allModels: the token may use every model, so nothing it could pull, copy or create
// widens what it may use.
func allModels(tok tokens.Token) bool {
	return len(tok.Models) == 0 || slices.Contains(tok.Models, "*")
}

// mayChangeStore answers 403 and returns false unless the request's token may use all
// models: a token limited to some could otherwise copy a model it may not use to a name it
// may, or replace one it may use with any other.
func (h *home) mayChangeStore(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := auth.TokenFrom(r.Context())
	if ok && allModels(tok) {
		return true
	}
	route := strings.TrimPrefix(cleanRoute(r.URL.Path), "/api/")
	if strings.HasPrefix(route, "blobs") {
		route = "blobs"
	}
	h.log.Debug("home: model store change refused", "auth_name", tok.Name, "auth_id", tok.ID, "route", route)
	apierror.Write(w, apierror.DialectOf(r.URL.Path), &apierror.Error{Status: http.StatusForbidden, Code: "model_store_not_allowed",
		Message: fmt.Sprintf("token %q may only use models %s, so it may not change the model store at home (%s): "+
			"pull, create, copy and delete models with a token for all models (`hearth token create --name NAME` without --models), or at home",
			tok.Name, strings.Join(tok.Models, ", "), route)})
	return false
}

// homeRequest is what the relay reads from a request body bound for home.
type homeRequest struct {
	// models are every field that names a model: "model" (or Ollama's older "name"), a
	// copy's "source" and "destination", a create's "from".
	models []string
	// model is the one to generate or embed with: "model", else "name"; "" when neither.
	model  string
	stream bool
}

// readHomeRequest reads the model fields and "stream" of a JSON body. The agent decodes the
// body with encoding/json too, so it sees the same values (keys matched regardless of case,
// the last of duplicates). Nothing when the body is not JSON, which the agent then answers
// in detail.
func readHomeRequest(body []byte) homeRequest {
	var meta struct {
		Model       string `json:"model"`
		Name        string `json:"name"`
		Source      string `json:"source"`
		Destination string `json:"destination"`
		From        string `json:"from"`
		Stream      bool   `json:"stream"`
	}
	// A field of the wrong type leaves the others decoded: check those anyway.
	var typeErr *json.UnmarshalTypeError
	if err := json.Unmarshal(body, &meta); err != nil && !errors.As(err, &typeErr) {
		return homeRequest{}
	}
	var req homeRequest
	for _, m := range []string{meta.Model, meta.Name, meta.Source, meta.Destination, meta.From} {
		if m = strings.TrimSpace(m); m != "" && !slices.Contains(req.models, m) {
			req.models = append(req.models, m)
		}
	}
	req.model = strings.TrimSpace(meta.Model)
	if req.model == "" {
		req.model = strings.TrimSpace(meta.Name)
	}
	req.stream = meta.Stream
	return req
}

func writeTooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	apierror.Write(w, apierror.DialectOf(r.URL.Path), &apierror.Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
		Message: fmt.Sprintf("request body is larger than %d bytes (limits.max_body on the relay): send less", limit)})
}

// homeChannel is the channel that usage records of home's own routes name.
const homeChannel = "home"

// homeRoute is what a route that goes only home does with tokens.
type homeRoute int

const (
	unmetered homeRoute = iota // reads or manages: no quota
	generates                  // /v1/completions: prompt and completion tokens
	embeds                     // embeddings: prompt tokens only
)

// meteredRoute says whether p generates or embeds at home, and so counts toward the token's
// quotas and usage like a chat. The path is cleaned first, as in changesStore: metering a
// spelling the agent would not route costs nothing, missing one it does would be free use.
func meteredRoute(p string) homeRoute {
	switch cleanRoute(p) {
	case "/v1/completions":
		return generates
	case "/v1/embeddings", "/api/embed", "/api/embeddings":
		return embeds
	}
	return unmetered
}

// serveMetered forwards a request that generates or embeds as the Chain serves a chat:
// reserve the body's estimated tokens against the token's quota and tokens per minute (or
// refuse with the chat routes' 429), then settle with the tokens home's answer reports (or
// an estimate when it reports none) and record the request.
func (h *home) serveMetered(w http.ResponseWriter, r *http.Request, kind homeRoute, body []byte, req homeRequest, start time.Time) {
	d := apierror.DialectOf(r.URL.Path)
	tok, _ := auth.TokenFrom(r.Context())
	est := count.Estimate(string(body))
	settle, err := h.usage.Reserve(tok, req.model, est)
	if err != nil {
		apierror.Write(w, d, usage.Refusal(err))
		return
	}
	rec := usage.Record{Time: start, TokenID: tok.ID, TokenName: tok.Name, Channel: homeChannel,
		RequestedModel: req.model, ServedModel: req.model, Stream: kind == generates && req.stream}
	var used count.Usage
	if h.offline(w, d) {
		rec.Status = http.StatusServiceUnavailable
	} else {
		m := &homeMeter{ResponseWriter: w, collectText: kind == generates}
		sent := time.Now()
		h.tunnel.Forward(m, r, tunnel.HomeHost(h.name))
		rec.Status = m.status
		switch {
		case rec.Status == 0 && r.Context().Err() != nil:
			rec.Status = 499 // the client went away before home answered
		case rec.Status == 0:
			rec.Status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		if !m.first.IsZero() {
			rec.TTFT = m.first.Sub(sent)
		}
		used = m.usage(est)
	}
	rec.Duration = time.Since(start)
	settle(used)
	rec.PromptTokens, rec.CompletionTokens, rec.Estimated = used.PromptTokens, used.CompletionTokens, used.Estimated
	h.usage.Record(rec)
}

// maxMeteredLine bounds what homeMeter keeps of one line of a completion's answer (a whole
// body when it does not stream); the text beyond it goes unestimated.
const maxMeteredLine = 8 << 20

// homeMeter watches home's answer on its way to the client, without changing or holding
// it: the status, when the first byte came, the end of the answer (where Ollama and OpenAI
// put the token counts) and, for completions, the generated text to estimate from when no
// counts come.
type homeMeter struct {
	http.ResponseWriter
	status      int
	first       time.Time
	tail        []byte
	collectText bool
	line        []byte // the line being received, for collectText
	text        strings.Builder
}

func (m *homeMeter) WriteHeader(code int) {
	if m.status == 0 && code >= 200 { // 1xx are not the answer
		m.status, m.first = code, time.Now()
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *homeMeter) Write(p []byte) (int, error) {
	if m.status == 0 {
		m.status, m.first = http.StatusOK, time.Now()
	}
	m.tail = streamtail.Keep(m.tail, p)
	if m.collectText {
		m.collect(p)
	}
	return m.ResponseWriter.Write(p)
}

// Flush and Unwrap let the reverse proxy flush each chunk of a stream as it comes.
func (m *homeMeter) Flush() { _ = http.NewResponseController(m.ResponseWriter).Flush() }

func (m *homeMeter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

func (m *homeMeter) collect(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(m.line)+len(p) <= maxMeteredLine {
				m.line = append(m.line, p...)
			}
			return
		}
		if len(m.line)+i <= maxMeteredLine {
			m.line = append(m.line, p[:i]...)
		}
		m.addText(m.line)
		m.line, p = m.line[:0], p[i+1:]
	}
}

// addText adds the text of one line of a completion's answer: an SSE event ("data: {...}")
// or the whole JSON body.
func (m *homeMeter) addText(line []byte) {
	line = bytes.TrimSpace(line)
	line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("data:")))
	if len(line) == 0 || line[0] != '{' {
		return
	}
	var answer struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	if json.Unmarshal(line, &answer) != nil {
		return
	}
	for _, c := range answer.Choices {
		m.text.WriteString(c.Text)
	}
}

// usage is what the answer used: nothing when it was refused or failed, the counts at its
// end when there are any, else estimated from the request (promptEstimate) and the text.
func (m *homeMeter) usage(promptEstimate int) count.Usage {
	if m.status < 200 || m.status >= 300 {
		return count.Usage{}
	}
	if u, ok := answerCounts(m.tail); ok {
		return u
	}
	if m.collectText && len(m.line) > 0 {
		m.addText(m.line) // a body without a final newline
		m.line = m.line[:0]
	}
	return count.Usage{PromptTokens: promptEstimate, CompletionTokens: count.Estimate(m.text.String()), Estimated: true}
}

// answerCounts reads the token counts from the end of an answer: Ollama's prompt_eval_count
// and eval_count (/api/embed has no eval_count), or OpenAI's usage (embeddings have no
// completion_tokens). The last of each counts: with include_usage, Ollama puts a zero usage
// in every chunk of a stream before the real one. Keys inside the generated text are
// escaped (\"eval_count\":), so they do not match.
func answerCounts(tail []byte) (count.Usage, bool) {
	for _, keys := range [...][2]string{{`"prompt_eval_count":`, `"eval_count":`}, {`"prompt_tokens":`, `"completion_tokens":`}} {
		p, pok := lastCount(tail, keys[0])
		c, cok := lastCount(tail, keys[1])
		if pok || cok {
			return count.Usage{PromptTokens: p, CompletionTokens: c}, p+c > 0
		}
	}
	return count.Usage{}, false
}

// lastCount is streamtail.LastInt for a token count: no more than an int32 holds.
func lastCount(b []byte, key string) (int, bool) {
	n, ok := streamtail.LastInt(b, key)
	if !ok || n > math.MaxInt32 {
		return 0, false
	}
	return int(n), true
}

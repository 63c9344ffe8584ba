package router

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxAttempts bounds how many nodes one request is tried on before the first byte.
const maxAttempts = 3

// ForwardedHeader marks a request one agent sends another: the receiver serves it from its
// own Ollama and never routes it again, so requests cannot loop.
const ForwardedHeader = "X-Hearth-Forwarded"

// modelRoute serves a request that names a model: pick the node that has it, forward.
func (s *Server) modelRoute(route string) http.HandlerFunc {
	// Looked up once, on the route's first request (as before, the series appears then).
	inFlight := sync.OnceValue(func() prometheus.Gauge { return s.metrics.inFlight.WithLabelValues(route) })
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		d := DialectOf(r.URL.Path)
		g := inFlight()
		g.Inc()
		defer g.Dec()

		body, apiErr := s.readBody(r)
		var req PickRequest
		if apiErr == nil {
			req, apiErr = parseRequest(body)
		}
		if apiErr != nil {
			s.reject(w, d, route, "", apiErr)
			return
		}
		if sess := r.Header.Get("X-Hearth-Session"); sess != "" {
			req.Session = sess
		}
		req.Origin = r.Header.Get(ForwardedHeader)
		if s.serveVirtual(w, r, d, route, req.Model, body) {
			return
		}
		picker := s.pickerFor(r)
		t, err := picker.Pick(r.Context(), req)
		if err != nil {
			s.reject(w, d, route, "", pickError(err, req.Model))
			return
		}
		repick := func(exclude []string) (*Target, error) {
			req.Exclude = exclude
			return picker.Pick(r.Context(), req)
		}
		s.proxy(w, r, d, route, req.Model, t, body, r.URL.RawQuery, start, repick)
	}
}

// pickerFor serves a request forwarded by another agent from this node only.
func (s *Server) pickerFor(r *http.Request) Picker {
	if s.cfg.Local != nil && r.Header.Get(ForwardedHeader) != "" {
		return s.cfg.Local
	}
	return s.picker
}

// storeRoute serves pull, create, copy and delete: they change one node's model store, the
// node named by ?node= or the default one, whose inventory is re-read afterwards.
func (s *Server) storeRoute(route string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		d := DialectOf(r.URL.Path)
		body, apiErr := s.readBody(r)
		if apiErr == nil && !json.Valid(body) {
			apiErr = jsonError(json.Unmarshal(body, new(any)))
		}
		if apiErr != nil {
			s.reject(w, d, route, "", apiErr)
			return
		}
		model := ""
		if route == "delete" {
			model = deletedModel(body)
		}
		t, query, err := s.pickNode(r, model, route != "delete")
		if err != nil {
			s.reject(w, d, route, "", pickError(err, ""))
			return
		}
		status := s.proxy(w, r, d, route, "", t, body, query, start, nil)
		if status == http.StatusOK {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
			s.picker.Refresh(ctx)
			cancel()
		}
	}
}

// pickNode chooses the node for a store operation from ?node=, which it removes from the
// query the node sees; model is the model a delete removes, writes whether the operation
// writes to the store.
func (s *Server) pickNode(r *http.Request, model string, writes bool) (*Target, string, error) {
	q := r.URL.Query()
	node := q.Get("node")
	q.Del("node")
	t, err := s.pickerFor(r).PickNode(r.Context(), NodeRequest{Node: node, Model: model, Writes: writes})
	return t, q.Encode(), err
}

// deletedModel is the model of an /api/delete body ("name" in older clients).
func deletedModel(body []byte) string {
	var req struct{ Model, Name string }
	_ = json.Unmarshal(body, &req)
	return cmp.Or(req.Model, req.Name)
}

// blob forwards a model-layer upload (or its existence check) without buffering it: layers
// are gigabytes.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t, query, err := s.pickNode(r, "", r.Method != http.MethodHead)
	if err != nil {
		s.reject(w, Ollama, "blobs", "", pickError(err, ""))
		return
	}
	resp, err := s.fwd.send(r.Context(), r, t, r.Body, r.ContentLength, query)
	if err != nil {
		t.Done(Outcome{Err: err})
		if e := sendError(r.Context(), t.Node, err); e != nil {
			s.reject(w, Ollama, "blobs", "", e)
		}
		return
	}
	out := s.fwd.relay(w, resp, t.Node)
	t.Done(Outcome{Err: out.cut})
	s.observe("blobs", "", t.Node, out, start)
}

// proxy forwards body to t and returns the status the client got (0 if it went away). A
// failure before the first byte that another node may not share (no connection, 502, 503) is
// retried on the next candidate from repick; after the first byte, never.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, d Dialect, route, model string, t *Target, body []byte, query string, start time.Time, repick func(exclude []string) (*Target, error)) int {
	var tried []string
	waited := t.Waited
	for attempt := 1; ; attempt++ {
		sent := time.Now()
		resp, err := s.fwd.send(r.Context(), r, t, bytes.NewReader(body), int64(len(body)), query)
		if r.Context().Err() != nil {
			if resp != nil {
				resp.Body.Close()
			}
			t.Done(Outcome{Err: r.Context().Err()})
			s.metrics.requests.WithLabelValues(route, model, "499").Inc()
			return 0
		}
		if failed := retryable(resp, err); failed != nil && repick != nil && attempt < maxAttempts {
			t.Done(Outcome{Err: failed})
			tried = append(tried, t.Node)
			if next, perr := repick(tried); perr == nil {
				s.log.Info("retrying on another node", "model", model, "failed_node", t.Node, "next_node", next.Node, "err", failed)
				if resp != nil {
					resp.Body.Close()
				}
				s.metrics.retries.WithLabelValues(t.Node, model).Inc()
				waited += next.Waited
				t = next
				continue
			}
			t = NewTarget(t.Node, t.URL, nil) // released above; answer with what it said
		}
		if err != nil {
			t.Done(Outcome{Err: err})
			e := sendError(r.Context(), t.Node, err)
			if model != "" && e.Status == http.StatusServiceUnavailable {
				// No node could take it: to callers (and the relay's fallback) the model is
				// unavailable, whatever the cause on the node.
				e.Code = "model_unavailable"
				e.Message = fmt.Sprintf("model %q is unavailable right now: %s", model, e.Message)
			}
			s.log.Warn("backend call failed", "node", t.Node, "route", route, "model", model, "err", err)
			s.reject(w, d, route, model, e)
			return e.Status
		}
		if waited > 0 {
			w.Header().Set("X-Hearth-Queue-Ms", strconv.FormatInt(waited.Milliseconds(), 10))
		}
		out := s.fwd.relay(w, resp, t.Node)
		firstByte := time.Duration(0)
		if !out.firstByte.IsZero() {
			firstByte = out.firstByte.Sub(sent)
		}
		t.Done(Outcome{Err: out.cut, FirstByte: firstByte})
		s.observe(route, model, t.Node, out, start)
		return out.status
	}
}

// retryable returns why a node's answer may be better sought on another node: it could not
// be reached, or it said 502/503 (down or overloaded) before any byte went to the client.
func retryable(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable {
		return fmt.Errorf("%w: it answered %s", errNodeUnavailable, resp.Status)
	}
	return nil
}

func (s *Server) observe(route, model, node string, out outcome, start time.Time) {
	end := time.Now()
	m := s.metrics.seriesFor(route, model, node)
	if out.status == http.StatusOK {
		m.ok().Inc()
	} else {
		s.metrics.requests.WithLabelValues(route, model, strconv.Itoa(out.status)).Inc()
	}
	m.duration().Observe(end.Sub(start).Seconds())
	if out.firstByte.IsZero() || out.status != http.StatusOK || model == "" {
		return
	}
	m.ttft().Observe(out.firstByte.Sub(start).Seconds())
	tokens, evalTime, ok := usage(out.tail)
	if !ok || tokens == 0 {
		return
	}
	m.tokens().Add(float64(tokens))
	if evalTime <= 0 {
		evalTime = end.Sub(out.firstByte)
	}
	if evalTime > 0 {
		m.tokensRate().Observe(float64(tokens) / evalTime.Seconds())
	}
}

func (s *Server) reject(w http.ResponseWriter, d Dialect, route, model string, e *APIError) {
	s.metrics.requests.WithLabelValues(route, model, strconv.Itoa(e.Status)).Inc()
	WriteError(w, d, e)
}

// readBody reads a JSON request body within node.max_body, in one allocation when the
// length is announced.
func (s *Server) readBody(r *http.Request) ([]byte, *APIError) {
	if r.ContentLength > s.cfg.MaxBody {
		return nil, s.tooLarge()
	}
	size := r.ContentLength
	if size < 0 {
		size = 512
	}
	// One byte more than announced, so that the read that meets the end has room and needs
	// no second buffer.
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > s.cfg.MaxBody {
			return nil, s.tooLarge()
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, &APIError{Status: http.StatusBadRequest, Code: "bad_body", Message: fmt.Sprintf("could not read the request body: %v", err)}
		}
	}
}

func (s *Server) tooLarge() *APIError {
	return &APIError{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
		Message: fmt.Sprintf("request body is larger than %d bytes (node.max_body): send less, or raise node.max_body in the agent config", s.cfg.MaxBody)}
}

func jsonError(err error) *APIError {
	e := &APIError{Status: http.StatusBadRequest, Code: "invalid_json"}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn) && syn.Offset == 0:
		e.Message = `request body is empty: send a JSON object such as {"model":"NAME", ...}`
	case errors.As(err, &syn) && strings.HasPrefix(syn.Error(), "unexpected end"):
		e.Message = fmt.Sprintf("request body is cut short after %d bytes: send a complete JSON object", syn.Offset)
	case errors.As(err, &syn):
		e.Message = fmt.Sprintf("request body is not valid JSON: %v (at byte %d)", syn, syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		e.Message = fmt.Sprintf("request body must be a JSON object, not %s", typ.Value)
	case errors.As(err, &typ) && strings.HasPrefix(typ.Field, "messages"):
		e.Message = fmt.Sprintf(`request body: "messages" must be a list of {"role","content"} objects, not %s`, typ.Value)
	case errors.As(err, &typ):
		e.Message = fmt.Sprintf("request body: %q must be a %s, not %s", typ.Field, typ.Type, typ.Value)
	default:
		e.Message = fmt.Sprintf("request body is not valid JSON: %v", err)
	}
	return e
}

// pickError chooses the answer for a Picker error.
func pickError(err error, model string) *APIError {
	var chosen *APIError
	if errors.As(err, &chosen) { // a picker that chose its answer (a node being woken)
		return chosen
	}
	switch {
	case errors.Is(err, ErrUnknownModel):
		return &APIError{Status: http.StatusNotFound, Code: "model_not_found",
			Message: fmt.Sprintf("model %q not found: %v. Pull it with `ollama pull %s`", model, trimSentinel(err, ErrUnknownModel), strings.TrimSuffix(model, ":latest"))}
	case errors.Is(err, ErrNoCandidate):
		return &APIError{Status: http.StatusServiceUnavailable, Code: "model_unavailable", RetryAfter: 10,
			Message: fmt.Sprintf("model %q is unavailable right now: %v", model, trimSentinel(err, ErrNoCandidate))}
	case errors.Is(err, ErrBusy):
		return &APIError{Status: http.StatusServiceUnavailable, Code: "overloaded", RetryAfter: 5,
			Message: fmt.Sprintf("every node that serves %q is busy: %v; try again shortly", model, trimSentinel(err, ErrBusy))}
	case errors.Is(err, ErrNoNode):
		return &APIError{Status: http.StatusNotFound, Code: "node_not_found", Message: fmt.Sprintf("unknown node %v", trimSentinel(err, ErrNoNode))}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &APIError{Status: http.StatusServiceUnavailable, Code: "timeout", RetryAfter: 5, Message: "gave up waiting for a node: try again"}
	default:
		return &APIError{Status: http.StatusInternalServerError, Code: "internal", Message: "hearth could not choose a node: " + err.Error()}
	}
}

// trimSentinel drops the sentinel's own words from a wrapped message ("model not found: x"
// becomes "x"), since the answer already says them.
func trimSentinel(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}

package ollamasim

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a fake Ollama. Create it with New; serve it with Start or mount it as an
// http.Handler (httptest.NewServer(sim) works, without FaultRefuse's listener behaviour).
type Server struct {
	cfg Config
	log *slog.Logger

	// done is closed by Close; everything that blocks also selects on it.
	done      chan struct{}
	closeOnce sync.Once

	fault   atomic.Pointer[Fault]
	faultMu sync.Mutex // serialises SetFault
	net     netState
	life    lifecycle

	// tokens holds "tok0 tok1 …" so that a response's text is a substring, and tokenEnd[i]
	// is where token i ends in it.
	tokens   string
	tokenEnd []int

	ids atomic.Uint64 // OpenAI response ids

	// bodies and lines recycle request bodies (copied when recorded) and the buffers
	// chunks are built in, keeping the streaming path free of per-request garbage.
	bodies, lines sync.Pool

	recMu   sync.Mutex
	records []Recorded // ring buffer of at most cfg.RecordLimit entries
	recNext int

	// mu guards the model store, the slots, the loaded models and the stats. It is never
	// held while writing to a client.
	mu       sync.Mutex
	store    map[string]*storedModel
	order    []string // store keys in the order they were added
	blobs    map[string]struct{}
	slots    slotState
	loaded   map[string]*loadedModel
	idleWait int           // requests waiting for a model to become idle (MaxLoaded)
	idle     chan struct{} // made when someone waits, closed when a model becomes idle
	// blocked counts requests waiting for a model to unload; while any does, the requests
	// behind them wait for unblocked (closed when blocked drops to 0).
	blocked   int
	unblocked chan struct{}
	stats     Stats
}

// Recorded is one request the sim received.
type Recorded struct {
	Method string
	Path   string
	Query  string // the raw query, without '?'
	Header http.Header
	Body   []byte // the raw body, byte for byte
	Time   time.Time
}

// Stats counts what the sim did since New.
type Stats struct {
	// Requests is how many generation and embedding requests got a slot and a loaded model,
	// load-only ones (empty prompt) included.
	Requests int
	// ColdLoads is how many loads of a not-loaded model started.
	ColdLoads int
	// MaxRunning is the highest number of requests that held a slot at once.
	MaxRunning int
	// Running is the requests holding a slot now (loading their model or generating);
	// Queued is those waiting for one.
	Running, Queued int
	// PerModel counts Requests per normalised model name ("tiny:latest").
	PerModel map[string]int
	// Rejected is how many requests were answered 503 because the queue was full.
	Rejected int
	// Unloads counts models unloaded (keep-alive expiry, keep_alive 0, eviction).
	Unloads int
	// Evictions counts unloads forced by MaxLoaded.
	Evictions int
}

// New returns a Server with cfg's defaults filled in. It does not listen until Start.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		done:   make(chan struct{}),
		store:  make(map[string]*storedModel),
		blobs:  make(map[string]struct{}),
		loaded: make(map[string]*loadedModel),
		slots:  slotState{free: cfg.Parallel},
		stats:  Stats{PerModel: make(map[string]int)},
	}
	s.bodies.New = func() any { return new(bytes.Buffer) }
	s.lines.New = func() any { b := make([]byte, 0, 512); return &b }
	var b strings.Builder
	for i := range cfg.Tokens {
		b.WriteString("tok")
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(' ')
		s.tokenEnd = append(s.tokenEnd, b.Len())
	}
	s.tokens = b.String()
	for _, m := range cfg.Models {
		s.AddModel(m)
	}
	s.fault.Store(&Fault{})
	return s
}

// AddModel puts m in the store, replacing a model of the same name.
func (s *Server) AddModel(m Model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addModelLocked(m.withDefaults())
}

// RemoveModel deletes a model from the store. Like Ollama's delete, a loaded copy stays in
// /api/ps until it unloads.
func (s *Server) RemoveModel(name string) {
	n, _ := parseName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeModelLocked(n.key)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.PerModel = maps.Clone(s.stats.PerModel)
	st.Running = s.slots.running
	st.Queued = len(s.slots.queue)
	return st
}

// Requests returns the recorded requests, oldest first.
func (s *Server) Requests() []Recorded {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	out := make([]Recorded, 0, len(s.records))
	if len(s.records) == s.cfg.RecordLimit {
		out = append(out, s.records[s.recNext:]...)
		return append(out, s.records[:s.recNext]...)
	}
	return append(out, s.records...)
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.records, s.recNext = nil, 0
}

func (s *Server) record(r *http.Request, body []byte) {
	if s.cfg.RecordLimit < 0 {
		return
	}
	rec := Recorded{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Header: r.Header.Clone(),
		Body:   bytes.Clone(body),
		Time:   time.Now(),
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if len(s.records) < s.cfg.RecordLimit {
		s.records = append(s.records, rec)
		return
	}
	s.records[s.recNext] = rec
	s.recNext = (s.recNext + 1) % s.cfg.RecordLimit
}

// lifecycle counts handlers in flight so that Close can wait for them.
type lifecycle struct {
	mu       sync.Mutex
	closed   bool
	inflight int
	drained  chan struct{}
}

func (l *lifecycle) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.inflight++
	return true
}

func (l *lifecycle) leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if l.inflight == 0 && l.drained != nil {
		close(l.drained)
		l.drained = nil
	}
}

// closeAndDrain stops new handlers and returns a channel closed when the last one returns.
func (l *lifecycle) closeAndDrain() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	ch := make(chan struct{})
	if l.inflight == 0 {
		close(ch)
	} else {
		l.drained = ch
	}
	return ch
}

// Close stops listening, closes every connection, stops the keep-alive and load timers and
// waits for the handlers still running. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		// Connections close first, so that the handlers done unblocks below find them
		// gone: clients see a dead backend, not a polite error.
		drained := s.life.closeAndDrain()
		s.net.close()
		close(s.done)
		s.stopTimers()
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			// A handler is stuck writing to a connection Close does not own (ServeHTTP
			// mounted elsewhere); its owner's Close will end it.
			s.log.Warn("ollamasim: handlers still running 10s after Close")
		}
	})
}

var (
	errClosed   = errors.New("ollamasim: server closed")
	errMaxQueue = errors.New("server busy, please try again.  maximum pending requests exceeded")
	errCut      = errors.New("ollamasim: connection cut by fault")
)

// ServeHTTP answers one request like Ollama would.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.life.enter() {
		writeBody(w, http.StatusServiceUnavailable, ctJSONGin, ollamaError(errClosed.Error()))
		return
	}
	defer s.life.leave()

	buf := s.bodies.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			s.bodies.Put(buf)
		}
	}()
	if r.Body != nil {
		if _, err := buf.ReadFrom(r.Body); err != nil {
			return // the client went away mid-body
		}
	}
	s.record(r, buf.Bytes())

	x := exchange{s: s, w: w, r: r, ctx: r.Context(), body: buf.Bytes(), cut: -1}
	x.openai = strings.HasPrefix(r.URL.Path, "/v1/")
	if f := s.fault.Load(); f.Kind != FaultNone && f.matches(r.URL.Path) {
		if s.injectFault(&x, f) {
			return
		}
	}
	s.route(&x)
}

// route dispatches like Ollama's gin router, including its 404 and 405 answers.
func (s *Server) route(x *exchange) {
	path, method := x.r.URL.Path, x.r.Method
	var h func(*exchange)
	var allowed string
	switch path {
	case "/":
		h, allowed = s.handleRoot, "GET, HEAD"
	case "/api/version":
		h, allowed = s.handleVersion, "GET, HEAD"
	case "/api/tags":
		h, allowed = s.handleTags, "GET, HEAD"
	case "/api/ps":
		h, allowed = s.handlePs, "GET"
	case "/api/show":
		h, allowed = s.handleShow, "POST"
	case "/api/chat":
		h, allowed = s.handleChat, "POST"
	case "/api/generate":
		h, allowed = s.handleGenerate, "POST"
	case "/api/embed":
		h, allowed = s.handleEmbed, "POST"
	case "/api/embeddings":
		h, allowed = s.handleEmbeddings, "POST"
	case "/api/pull":
		h, allowed = s.handlePull, "POST"
	case "/api/create":
		h, allowed = s.handleCreate, "POST"
	case "/api/copy":
		h, allowed = s.handleCopy, "POST"
	case "/api/delete":
		h, allowed = s.handleDelete, "DELETE"
	case "/v1/chat/completions":
		h, allowed = s.handleOpenAIChat, "POST"
	case "/v1/completions":
		h, allowed = s.handleOpenAICompletion, "POST"
	case "/v1/embeddings":
		h, allowed = s.handleOpenAIEmbeddings, "POST"
	case "/v1/models":
		h, allowed = s.handleOpenAIModels, "GET"
	default:
		if rest, ok := strings.CutPrefix(path, "/v1/models/"); ok && rest != "" && !strings.Contains(rest, "/") {
			h, allowed = s.handleOpenAIModel, "GET"
		} else if rest, ok := strings.CutPrefix(path, "/api/blobs/"); ok && rest != "" && !strings.Contains(rest, "/") {
			h, allowed = s.handleBlob, "HEAD, POST"
		}
	}
	switch {
	case h == nil:
		writeBody(x.w, http.StatusNotFound, "text/plain", []byte("404 page not found"))
	case !methodAllowed(allowed, method):
		x.w.Header().Set("Allow", allowed)
		writeBody(x.w, http.StatusMethodNotAllowed, "text/plain", []byte("405 method not allowed"))
	default:
		h(x)
	}
}

func methodAllowed(allowed, method string) bool {
	for m := range strings.SplitSeq(allowed, ", ") {
		if m == method {
			return true
		}
	}
	return false
}

// exchange is one request being answered. Every write goes through it so that
// FaultCutAfter can drop the connection at the right moment on any endpoint.
type exchange struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	ctx    context.Context
	body   []byte
	openai bool // errors in OpenAI's shape
	cut    int  // FaultCutAfter: chunks still allowed before the cut, -1 for no fault
	chunks int
	wrote  bool
	buf    []byte
}

// fail answers an error from the Ollama handler: {"error":msg}, or on /v1 the OpenAI shape
// the middleware rewrites it to (type "api_error" whatever the status).
func (x *exchange) fail(status int, msg string) {
	if x.openai {
		x.respond(status, ctJSON, openaiError(msg, "api_error", true))
		return
	}
	x.respond(status, ctJSONGin, ollamaError(msg))
}

// failRequest answers an error found by the OpenAI middleware before Ollama's handler ran.
func (x *exchange) failRequest(msg string) {
	x.respond(http.StatusBadRequest, ctJSONGin, openaiError(msg, "invalid_request_error", false))
}

// respond writes a whole answer, or under FaultCutAfter drops the connection instead:
// a non-streaming answer has no chunks to let through.
func (x *exchange) respond(status int, contentType string, body []byte) {
	if x.cut >= 0 {
		x.drop()
		return
	}
	writeBody(x.w, status, contentType, body)
}

// startStream sets the content type of a stream; the header goes out with the first chunk.
func (x *exchange) startStream(contentType string) {
	x.w.Header().Set("Content-Type", contentType)
}

// chunk writes and flushes one stream chunk. A final chunk (the done line, [DONE]) is never
// let through under FaultCutAfter: the cut comes before it.
func (x *exchange) chunk(b []byte, final bool) error {
	if x.cut >= 0 && (final || x.chunks >= x.cut) {
		if !x.wrote {
			x.w.WriteHeader(http.StatusOK)
			x.wrote = true
		}
		x.drop()
		return errCut
	}
	x.wrote = true
	if _, err := x.w.Write(b); err != nil {
		return err
	}
	x.chunks++
	return x.flush()
}

func (x *exchange) flush() error {
	if f, ok := x.w.(http.Flusher); ok {
		f.Flush()
		return nil
	}
	return http.NewResponseController(x.w).Flush()
}

// drop closes the TCP connection without finishing the answer: what the client sees when
// Ollama dies mid-response. The close is a FIN, not a reset, so the client still reads the
// chunks sent before it and then an unexpected EOF.
func (x *exchange) drop() {
	if x.wrote {
		_ = x.flush()
	}
	conn, _, err := http.NewResponseController(x.w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2, a recorder): net/http's own way to abort a response.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

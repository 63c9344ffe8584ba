package ollamasim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"
)

// FaultKind is a failure the sim injects.
type FaultKind int

const (
	// FaultNone answers normally.
	FaultNone FaultKind = iota
	// FaultRefuse makes the backend unreachable: the listener closes, so new connections are
	// refused, and every open connection (idle keep-alive or busy) is closed. Clearing the
	// fault listens again on the same port. With Paths, the listener stays up and matching
	// requests get their connection closed without an answer.
	FaultRefuse
	// FaultStatus500 answers 500 with Ollama's error body (OpenAI's shape on /v1).
	FaultStatus500
	// FaultHang reads the request and never answers, until the client gives up or Close.
	FaultHang
	// FaultCutAfter lets Chunks stream chunks through (NDJSON lines, SSE events) and then
	// closes the connection: no final chunk, no terminating chunk of the HTTP body, so the
	// client reads exactly Chunks chunks and then an unexpected EOF. A non-streaming answer
	// is cut before anything is written.
	FaultCutAfter
)

// FaultMessage500 is the error FaultStatus500 answers with: what Ollama says when its runner
// crashes.
const FaultMessage500 = "llama runner process has terminated: exit status 2"

// Fault is the failure SetFault injects.
type Fault struct {
	Kind FaultKind
	// Chunks is how many chunks FaultCutAfter lets through.
	Chunks int
	// Paths limits the fault to these URL paths ("/api/chat"); empty means every path.
	Paths []string
}

func (f *Fault) matches(path string) bool {
	return len(f.Paths) == 0 || slices.Contains(f.Paths, path)
}

// SetFault injects f into requests that arrive from now on; Fault{} clears it. Clearing
// FaultRefuse listens again on the same port; the error says when that failed.
func (s *Server) SetFault(f Fault) error {
	// One change at a time, so that the fault and the listener agree.
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f.Paths = slices.Clone(f.Paths)
	s.fault.Store(&f)
	if f.Kind == FaultRefuse && len(f.Paths) == 0 {
		s.net.refuse()
		return nil
	}
	if err := s.net.resume(); err != nil {
		s.log.Error("ollamasim: the backend cannot come back", "err", err)
		return err
	}
	return nil
}

// injectFault applies f to one request; it reports whether the request has been dealt with.
func (s *Server) injectFault(x *exchange, f *Fault) bool {
	switch f.Kind {
	case FaultRefuse:
		// The listener may still be up (ServeHTTP mounted elsewhere, or Paths): close this
		// connection, which is what a client of a dead backend sees on a reused connection.
		x.drop()
		return true
	case FaultStatus500:
		x.fail(http.StatusInternalServerError, FaultMessage500)
		return true
	case FaultHang:
		select {
		case <-x.ctx.Done():
		case <-s.done:
			x.drop() // never answer, not even an empty 200
		}
		return true
	case FaultCutAfter:
		x.cut = max(f.Chunks, 0)
	}
	return false
}

// netState is the sim's own listener and the connections it accepted.
type netState struct {
	mu        sync.Mutex
	srv       *http.Server
	ln        net.Listener
	addr      string
	listening bool
	closed    bool
	conns     map[net.Conn]struct{}
	serving   sync.WaitGroup
}

// Start listens on 127.0.0.1 on a port the kernel picks and serves the sim there.
func (s *Server) Start() error {
	n := &s.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil || n.closed {
		return errors.New("ollamasim: Start called twice or after Close")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("ollamasim: listen: %w", err)
	}
	n.addr = ln.Addr().String()
	n.conns = make(map[net.Conn]struct{})
	n.srv = &http.Server{
		Handler:           s,
		ConnState:         n.track,
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	n.serveLocked(ln)
	if f := s.fault.Load(); f.Kind == FaultRefuse && len(f.Paths) == 0 {
		n.refuseLocked()
	}
	return nil
}

// URL is the sim's base URL, "http://127.0.0.1:PORT", once started.
func (s *Server) URL() string {
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	if s.net.addr == "" {
		return ""
	}
	return "http://" + s.net.addr
}

func (n *netState) serveLocked(ln net.Listener) {
	n.ln, n.listening = ln, true
	n.serving.Add(1)
	go func() {
		defer n.serving.Done()
		// Serve returns when the listener closes: on FaultRefuse or Close, both expected.
		_ = n.srv.Serve(ln)
	}()
}

// track follows the connections so that FaultRefuse can close the idle keep-alive ones,
// which http.Server would otherwise keep.
func (n *netState) track(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		n.mu.Lock()
		n.conns[c] = struct{}{}
		n.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
	}
}

func (n *netState) refuse() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refuseLocked()
}

func (n *netState) refuseLocked() {
	if !n.listening {
		return
	}
	n.listening = false
	_ = n.ln.Close()
	for c := range n.conns {
		_ = c.Close()
	}
}

// resume listens again on the port the sim had, so clients see the backend come back on
// the same URL. Another process may have taken the port meanwhile; that is reported, not
// papered over with a different port.
func (n *netState) resume() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listening || n.srv == nil || n.closed {
		return nil
	}
	var err error
	for range 20 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", n.addr); err == nil {
			n.serveLocked(ln)
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("ollamasim: listen again on %s after FaultRefuse: %w", n.addr, err)
}

func (n *netState) close() {
	n.mu.Lock()
	n.closed, n.listening = true, false
	srv := n.srv
	n.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close() // closes the listener and every connection
	n.serving.Wait()
}

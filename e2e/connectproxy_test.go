//go:build e2e

package e2e

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// connectProxy is an HTTP proxy that knows one name: a CONNECT to name ("relay.test:PORT") is
// dialled to addr on 127.0.0.1, and everything else is refused. A client given it as HTTPS_PROXY
// reaches the relay by its public name, checks the certificate against that name, and reaches
// nothing else — with no DNS and no /etc/hosts.
type connectProxy struct {
	name, addr string
	ln         net.Listener
	srv        *http.Server
	wg         sync.WaitGroup // the server and every tunnel's copies

	mu       sync.Mutex
	open     map[net.Conn]struct{}
	n        int      // CONNECTs to name
	refusals []string // what else was asked for
}

// startConnectProxy serves on 127.0.0.1 until t ends, then closes every tunnel it opened.
func startConnectProxy(t *testing.T, name, addr string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{name: name, addr: addr, ln: ln, open: map[net.Conn]struct{}{}}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("connect proxy: %v", err)
		}
	}()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's address, for HTTPS_PROXY.
func (p *connectProxy) URL() string { return "http://" + p.ln.Addr().String() }

// connects counts the tunnels opened to name so far.
func (p *connectProxy) connects() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// refused lists what else clients asked for.
func (p *connectProxy) refused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refusals...)
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect || r.Host != p.name {
		p.mu.Lock()
		p.refusals = append(p.refusals, r.Method+" "+r.Host)
		p.mu.Unlock()
		http.Error(w, "e2e: no network but "+p.name, http.StatusForbidden)
		return
	}
	up, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		http.Error(w, "e2e proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	down, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		http.Error(w, "e2e proxy: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		down.Close()
		return
	}
	p.mu.Lock()
	p.n++
	p.open[up], p.open[down] = struct{}{}, struct{}{}
	p.mu.Unlock()
	p.wg.Add(2)
	// Either side ending ends the tunnel: both connections close, so the other copy returns.
	end := func() {
		up.Close()
		down.Close()
		p.mu.Lock()
		delete(p.open, up)
		delete(p.open, down)
		p.mu.Unlock()
	}
	go func() { defer p.wg.Done(); _, _ = io.Copy(up, rw); end() }() // rw first: what the client sent early
	go func() { defer p.wg.Done(); _, _ = io.Copy(down, up); end() }()
}

func (p *connectProxy) close() {
	_ = p.srv.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/sdnotify"
	"github.com/hearthlab/hearth/relay"
)

// notifySocket is systemd's end of $NOTIFY_SOCKET for a unit with WATCHDOG_USEC usec: n
// notifies it, read returns the next message, and mark puts one of the test's own into the
// same stream, after everything n sent before. Messages are taken off the socket as they
// come (a unixgram socket holds only a few), and wait for read.
func notifySocket(t *testing.T, usec string) (n *sdnotify.Notifier, read func() string, mark func(string)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4096)
	var wg sync.WaitGroup
	wg.Go(func() {
		for buf := make([]byte, 256); ; {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:k])
		}
	})
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	vars := map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": usec}
	n = sdnotify.New(func(k string) string { return vars[k] }, os.Getpid())
	read = func() string {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no message on the notify socket within 5s")
			return ""
		}
	}
	mark = func(m string) {
		t.Helper()
		if err := n.Notify(m); err != nil {
			t.Fatal(err)
		}
	}
	return n, read, mark
}

// TestRunNotified: READY=1 before the role runs, WATCHDOG=1 while it runs, STOPPING=1 after,
// and the role's error comes back.
func TestRunNotified(t *testing.T) {
	n, read, _ := notifySocket(t, "20000")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	stop := errors.New("role stopped")
	done := make(chan error, 1)
	release := make(chan struct{})
	go func() {
		done <- runNotified(t.Context(), slog.New(slog.DiscardHandler), n, func(context.Context) error { <-release; return stop }, healthzAlive(srv.Listener.Addr()))
	}()
	if got := read(); got != "READY=1" {
		t.Fatalf("first message %q", got)
	}
	if got := read(); got != "WATCHDOG=1" {
		t.Fatalf("second message %q", got)
	}
	close(release)
	if err := <-done; !errors.Is(err, stop) {
		t.Errorf("runNotified returned %v", err)
	}
	for got := read(); got != "STOPPING=1"; got = read() {
		if got != "WATCHDOG=1" {
			t.Fatalf("message %q, want STOPPING=1", got)
		}
	}
}

func TestHealthzAlive(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	alive := healthzAlive(srv.Listener.Addr())
	if err := alive(t.Context()); err != nil {
		t.Errorf("healthy: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := alive(t.Context()); err == nil || err.Error() != "GET "+srv.URL+"/healthz: 503 Service Unavailable" {
		t.Errorf("unhealthy: %v", err)
	}
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	srv.Close()
	if err := healthzAlive(&net.TCPAddr{IP: net.IPv4zero, Port: port})(t.Context()); err == nil || !strings.Contains(err.Error(), "127.0.0.1:") {
		t.Errorf("an API on 0.0.0.0 is asked on loopback: %v", err)
	}
}

// receive waits for one value on ch, failing the test after 10 s.
func receive(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
}

// TestRelayWatchdogStarvesWhileWedged: the relay's watchdog is fed while its HTTPS answers
// /healthz for its domain, not once while its handler hangs, and again once it answers.
func TestRelayWatchdogStarvesWhileWedged(t *testing.T) {
	n, read, mark := notifySocket(t, "200000") // a probe every 100 ms, each given 100 ms
	certFile, keyFile := writeCert(t, t.TempDir(), "relay.test")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wedged chan struct{} // non-nil: the handler hangs until it is closed
	hung := make(chan struct{}, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "relay.test" || r.TLS.ServerName != "relay.test" || r.URL.Path != "/healthz" {
			http.Error(w, "not the relay's domain", http.StatusMisdirectedRequest)
			return
		}
		mu.Lock()
		held := wedged
		mu.Unlock()
		if held != nil {
			select {
			case hung <- struct{}{}:
			default:
			}
			select {
			case <-held:
			case <-r.Context().Done():
				// Hung to the end: no answer at all. (Returning would send a 200, which
				// the probe's transport may still take as it gives up.)
				panic(http.ErrAbortHandler)
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	var logs hearthtest.Logs
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- runNotified(t.Context(), logs.Logger(), n, func(context.Context) error { <-release; return nil }, relayAlive(srv.Listener.Addr(), "relay.test"))
	}()
	stopRole := sync.OnceFunc(func() { close(release) })
	t.Cleanup(func() { stopRole(); <-done }) // a test that failed early still stops it
	if got := read(); got != "READY=1" {
		t.Fatalf("first message %q", got)
	}
	if got := read(); got != "WATCHDOG=1" {
		t.Fatalf("second message %q: an answering relay feeds the watchdog", got)
	}

	held := make(chan struct{})
	mu.Lock()
	wedged = held
	mu.Unlock()
	// A probe hangs: the watchdog loop is inside it, so every ping it sent is in the socket.
	receive(t, hung, "probe hanging in the wedged handler")
	mark("MARK=wedged")
	receive(t, hung, "second probe") // the first gave up, and said so before the next began
	receive(t, hung, "third probe")
	mark("MARK=answering")
	mu.Lock()
	wedged = nil
	mu.Unlock()
	close(held)

	for got := read(); got != "MARK=wedged"; got = read() {
		if got != "WATCHDOG=1" {
			t.Fatalf("message %q before the wedge", got)
		}
	}
	if got := read(); got != "MARK=answering" {
		t.Fatalf("%q while the handler hung: the watchdog was fed by a wedged relay\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "systemd's watchdog not fed") {
		t.Errorf("the probes that failed were not logged:\n%s", logs.String())
	}
	if got := read(); got != "WATCHDOG=1" {
		t.Fatalf("%q once the relay answers again, want WATCHDOG=1", got)
	}
	stopRole()
	for got := read(); got != "STOPPING=1"; got = read() {
		if got != "WATCHDOG=1" {
			t.Fatalf("message %q, want STOPPING=1", got)
		}
	}
}

// TestRelayAlive against real relays: one with a brought certificate answers /healthz for its
// domain (and 421 for another); one on ACME without a certificate yet can only answer the
// handshake with an alert, which counts as alive; a stopped one is not.
func TestRelayAlive(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "relay.test")
	base := config.DefaultRelay()
	base.Domains = []string{"relay.test"}
	base.Listen = config.RelayListen{HTTPS: "127.0.0.1:0"}
	base.Tunnel = config.RelayTunnel{Bind: "127.0.0.1:0", Token: "tunnel-token-0123456789abcdef", Home: "home"}
	base.AdminKey = "admin-key-0123456789abcdef"
	byo, acme := base, base
	byo.TLS, byo.DB = config.TLSFiles{Cert: certFile, Key: keyFile}, filepath.Join(dir, "byo.db")
	acme.ACME = config.ACME{CA: "https://127.0.0.1:1/directory", Storage: filepath.Join(dir, "certs"), Challenges: []string{"tls-alpn-01"}}
	acme.DB = filepath.Join(dir, "acme.db")

	for _, tc := range []struct {
		name string
		cfg  config.Relay
	}{{"brought certificate", byo}, {"ACME, no certificate yet", acme}} {
		t.Run(tc.name, func(t *testing.T) {
			rl, err := relay.New(tc.cfg, "", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			stop := hearthtest.Run(t, "relay", rl.Run)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			alive := relayAlive(rl.HTTPSAddr(), "relay.test")
			if err := alive(ctx); err != nil {
				t.Errorf("a running relay: %v", err)
			}
			if tc.cfg.TLS.Cert != "" {
				if err := relayAlive(rl.HTTPSAddr(), "other.test")(ctx); err == nil || err.Error() != "GET https://other.test/healthz: 421 Misdirected Request" {
					t.Errorf("asked as a domain it does not serve: %v", err)
				}
			}
			stop()
			if err := alive(ctx); err == nil || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("a stopped relay: %v", err)
			}
		})
	}
}

package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/sdnotify"
)

// TestRunNotified: READY=1 before the role runs, WATCHDOG=1 while it runs, STOPPING=1 after,
// and the role's error comes back.
func TestRunNotified(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	vars := map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}
	n := sdnotify.New(func(k string) string { return vars[k] }, os.Getpid())
	read := func() string {
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:k])
	}
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

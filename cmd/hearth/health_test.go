package main

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealth(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	out, err := run("health", "--url", srv.URL+"/healthz")
	if err != nil || out != "healthy: "+srv.URL+"/healthz answered 200 OK\n" {
		t.Errorf("healthy: %q %v", out, err)
	}
	// --connect reaches the server under another name (as the relay's domain on 127.0.0.1:443).
	host := strings.TrimPrefix(srv.URL, "http://")
	if out, err := run("health", "--url", "http://ai.example.com/healthz", "--connect", host); err != nil || !strings.HasPrefix(out, "healthy:") {
		t.Errorf("--connect: %q %v", out, err)
	}
	status = http.StatusServiceUnavailable
	if _, err := run("health", "--url", srv.URL+"/healthz"); err == nil || !strings.Contains(err.Error(), "unhealthy: "+srv.URL+"/healthz answered 503 Service Unavailable: ok") {
		t.Errorf("503: %v", err)
	}
	srv.Close()
	if _, err := run("health", "--url", srv.URL+"/healthz"); err == nil || !strings.HasPrefix(err.Error(), "unhealthy: ") {
		t.Errorf("down: %v", err)
	}
	if _, err := run("health", "--connect", "nowhere"); err == nil || !strings.Contains(err.Error(), `--connect "nowhere": give host:port`) {
		t.Errorf("bad --connect: %v", err)
	}
}

func TestHealthTLSWithBroughtCA(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "relay.test")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	if _, err := run("health", "--url", "https://relay.test/healthz", "--connect", addr); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without --ca: %v", err)
	}
	if out, err := run("health", "--url", "https://relay.test/healthz", "--connect", addr, "--ca", certFile); err != nil || !strings.HasPrefix(out, "healthy:") {
		t.Errorf("with --ca: %q %v", out, err)
	}
}

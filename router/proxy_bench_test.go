package router

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// BenchmarkProxyChat is the handler's own cost for one sized answer, with its allocations:
// the client side is a recorder, the backend a loopback server (whose cost is included).
func BenchmarkProxyChat(b *testing.B) {
	answer := []byte(`{"model":"tiny","message":{"role":"assistant","content":"hi"},"done":true,"eval_count":8,"eval_duration":1000}`)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	b.Cleanup(backend.Close)
	m, err := NewMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	fwd := NewForwarder(ForwarderConfig{}, m, nil)
	b.Cleanup(fwd.Close)
	cfg := ServerConfig{MaxBody: 1 << 20, Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	s := NewServer(cfg, NewSingle(healthyNode(b, backend.URL, "tiny:latest")), fwd, m, nil)
	body := []byte(`{"model":"tiny","stream":false,"messages":[{"role":"user","content":"hello"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/chat", bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1234"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

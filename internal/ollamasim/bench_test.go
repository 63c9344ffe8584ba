package ollamasim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkDirect is the sim over loopback HTTP, as a proxy benchmark's "direct" baseline.
func BenchmarkDirect(b *testing.B) {
	msgs := `"messages":[{"role":"user","content":"hello"}]`
	cases := []struct {
		name, path, body string
	}{
		{"api-chat-stream", "/api/chat", `{"model":"tiny",` + msgs + `}`},
		{"api-chat", "/api/chat", `{"model":"tiny","stream":false,` + msgs + `}`},
		{"v1-chat-stream", "/v1/chat/completions", `{"model":"tiny","stream":true,` + msgs + `}`},
		{"api-embed", "/api/embed", `{"model":"tiny","input":"hello"}`},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			s := New(Config{Models: []Model{{Name: "tiny"}}, Parallel: 8})
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			b.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr}
			url := s.URL() + bc.path
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Post(url, "application/json", strings.NewReader(bc.body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkServeHTTP is the sim's own cost per request, without a network.
func BenchmarkServeHTTP(b *testing.B) {
	body := `{"model":"tiny","messages":[{"role":"user","content":"hello"}]}`
	for _, rec := range []int{-1, 0} {
		name := map[int]string{-1: "record-off", 0: "record-on"}[rec]
		b.Run(name, func(b *testing.B) {
			s := New(Config{Models: []Model{{Name: "tiny"}}, RecordLimit: rec})
			b.Cleanup(s.Close)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/chat", strings.NewReader(body)))
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

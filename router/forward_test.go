package router

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestBackendRequestOnTheWire: the request a backend gets is byte for byte the one built by
// formatting the URL and parsing it again with http.NewRequest, minus the headers it must not
// see.
func TestBackendRequestOnTheWire(t *testing.T) {
	tests := []struct{ target, method, path, query string }{
		{"http://127.0.0.1:11434", http.MethodPost, "/api/chat", ""},
		{"http://gpu-box:11434/", http.MethodPost, "/v1/chat/completions", ""},
		{"http://gpu-box/ollama/", http.MethodDelete, "/api/delete", "insecure=true"},
		{"http://[::1]:11434", http.MethodHead, "/api/blobs/sha256:abc", ""},
		{"http://gpu-box:", http.MethodPost, "/api/blobs/sha256:a b%c", "x=%2F&y=1"},
		{"http://[fe80::1]:", http.MethodPost, "/api/pull", ""},
	}
	for _, tt := range tests {
		t.Run(tt.target+tt.path, func(t *testing.T) {
			u, err := url.Parse(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			target := NewTarget("node-a", u, nil)
			target.Header = http.Header{ForwardedHeader: {"router-b"}}
			in := httptest.NewRequest(tt.method, "http://agent"+(&url.URL{Path: tt.path}).EscapedPath(), nil)
			in.Header = http.Header{
				"Content-Type": {"application/json"}, "User-Agent": {"ollama/0.17"}, "X-Multi": {"a", "b"},
				"Authorization": {"Bearer secret"}, "Cookie": {"c=1"}, "Connection": {"keep-alive"}, "Te": {"trailers"},
			}
			body := []byte(`{"model":"tiny"}`)

			got, err := backendRequest(t.Context(), in, target, bytes.NewReader(body), int64(len(body)), tt.query)
			if err != nil {
				t.Fatal(err)
			}
			ref := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimRight(u.Path, "/") + in.URL.Path, RawQuery: tt.query}
			want, err := http.NewRequest(tt.method, ref.String(), bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"Content-Type", "User-Agent", "X-Multi"} {
				want.Header[k] = in.Header[k]
			}
			want.Header[ForwardedHeader] = target.Header[ForwardedHeader]
			gotWire, err := httputil.DumpRequestOut(got, true)
			if err != nil {
				t.Fatal(err)
			}
			wantWire, err := httputil.DumpRequestOut(want, true)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotWire, wantWire) {
				t.Errorf("on the wire:\n%s\nwant:\n%s", gotWire, wantWire)
			}
			if got.Host != want.Host || got.URL.String() != want.URL.String() {
				t.Errorf("host %q url %q, want %q %q", got.Host, got.URL, want.Host, want.URL)
			}
		})
	}
}

// TestBackendConnectionsReused: at concurrency 32 the forwarder keeps its backend
// connections (http.Transport's default keeps 2 per host, which would close most of them).
// One or two may still close on a loaded machine, when a response's end and the next request
// cross in the pool; dozens would mean the pool is too small.
func TestBackendConnectionsReused(t *testing.T) {
	var mu sync.Mutex
	states := map[http.ConnState]int{}
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"done":true}`)
	}))
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		states[s]++
		mu.Unlock()
	}
	backend.Start()
	t.Cleanup(backend.Close)
	ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(client.CloseIdleConnections)
	const workers, each = 32, 20
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				resp, err := client.Post(ts.url+"/api/chat", "application/json", strings.NewReader(`{"model":"tiny"}`))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if states[http.StateClosed] > 2 || states[http.StateNew] > 2*workers {
		t.Errorf("backend connections: %d opened, %d closed for %d requests from %d workers", states[http.StateNew], states[http.StateClosed], workers*each, workers)
	}
}

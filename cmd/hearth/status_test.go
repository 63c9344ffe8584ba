package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/router"
)

var update = flag.Bool("update", false, "rewrite golden files")

var sampleView = router.ClusterView{Self: "nas", Queued: 2, Tunnel: &router.TunnelView{Relay: "relay.example.com:7000",
	LastError: "the relay refused the login: token mismatch (check tunnel.token)"}, Nodes: []router.NodeView{
	{Name: "gpu-pc", Role: "serve", API: "http://192.168.1.10:11500", Backend: true, StorageOK: true, Slots: 4, InFlight: 3, Mine: 1,
		Warm: []string{"qwen3:14b"}, Models: []string{"qwen3:14b", "nomic-embed-text:latest"}},
	{Name: "gpu2", Role: "serve", Backend: false, StorageOK: true, Slots: 2, Problem: "its Ollama is not answering", Models: []string{"tiny:latest"}},
	{Name: "nas", Role: "router", Self: true},
}, Asleep: []string{"gpu-box"}}

func TestStatusGolden(t *testing.T) {
	var got bytes.Buffer
	renderCluster(&got, sampleView)
	golden := "testdata/status.golden"
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("status output:\n%s\nwant:\n%s", got.String(), want)
	}
}

func TestStatusFetchesFromAgent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hearth/v1/cluster" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer k-0123456789abcdef" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"the API key is not valid here"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(sampleView)
	}))
	t.Cleanup(srv.Close)

	out, err := run("status", "--agent", srv.URL, "--key", "k-0123456789abcdef")
	if err != nil || !strings.Contains(out, "gpu-pc") || !strings.Contains(out, "nas *") || !strings.Contains(out, "gpu2: its Ollama is not answering") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	_, err = run("status", "--agent", srv.URL, "--key", "wrong")
	if err == nil || err.Error() != "the agent at "+srv.URL+" answered 401 Unauthorized: the API key is not valid here" {
		t.Fatalf("wrong key: %v", err)
	}
	_, err = run("status", "--agent", "http://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the agent at http://127.0.0.1:1") {
		t.Fatalf("no agent: %v", err)
	}
}

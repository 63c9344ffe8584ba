package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/relay/tokens"
)

// TestHomeModelStore: the agent trusts whatever comes through the tunnel, so the relay alone
// keeps a token limited to some models from changing home's model store (a copy or a create
// would turn a model it may not use into one it may), while a token for all models still
// manages the store and the limited token still chats with the models it is allowed.
func TestHomeModelStore(t *testing.T) {
	w := startWorld(t, "http-01")
	ctx := t.Context()
	limited, _, err := w.relay.Store().Create(ctx, tokens.Spec{Name: "kid", Models: []string{"tiny:*", "mine:*"}})
	if err != nil {
		t.Fatal(err)
	}
	full := "Bearer " + w.token // tokens.Spec without Models: all models
	kid := "Bearer " + limited

	tags := func(t *testing.T) string {
		t.Helper()
		resp, body := w.do(t, http.MethodGet, "/api/tags", "", full)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/api/tags: %d %s", resp.StatusCode, body)
		}
		return body
	}

	// A token for all models copies through the tunnel, as before: home now has "secret",
	// a model the limited token may not use.
	resp, body := w.do(t, http.MethodPost, "/api/copy", `{"source":"tiny","destination":"secret"}`, full)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Hearth-Node") != "home-node" {
		t.Fatalf("copy with a token for all models: %d node %q %s", resp.StatusCode, resp.Header.Get("X-Hearth-Node"), body)
	}
	if got := tags(t); !strings.Contains(got, `"name":"secret:latest"`) {
		t.Fatalf("after the copy home lists %s, want secret:latest", got)
	}

	const storeRefused = `{"error":"token \"kid\" may only use models tiny:*, mine:*, so it may not change the model store at home (%s): ` +
		"pull, create, copy and delete models with a token for all models (`hearth token create --name NAME` without --models), or at home\"}\n"
	for _, tt := range []struct {
		name, method, path, body, route string
	}{
		{"copy a forbidden model to an allowed name", http.MethodPost, "/api/copy", `{"source":"secret","destination":"mine:x"}`, "copy"},
		{"copy without a model field", http.MethodPost, "/api/copy", `{"source":"tiny","destination":"mine:y"}`, "copy"},
		{"create an allowed name from a forbidden model", http.MethodPost, "/api/create", `{"model":"mine:x","from":"secret"}`, "create"},
		{"pull an allowed model", http.MethodPost, "/api/pull", `{"model":"tiny"}`, "pull"},
		{"push", http.MethodPost, "/api/push", `{"model":"tiny"}`, "push"},
		{"delete an allowed model", http.MethodDelete, "/api/delete", `{"model":"tiny"}`, "delete"},
		{"upload a blob", http.MethodPost, "/api/blobs/sha256:" + strings.Repeat("0", 64), "GGUF", "blobs"},
		{"copy spelled with a trailing slash", http.MethodPost, "/api/copy/", `{"source":"secret","destination":"mine:z"}`, "copy"},
	} {
		t.Run("limited token: "+tt.name, func(t *testing.T) {
			resp, body := w.do(t, tt.method, tt.path, tt.body, kid)
			if want := strings.Replace(storeRefused, "%s", tt.route, 1); resp.StatusCode != http.StatusForbidden || body != want {
				t.Errorf("%s %s: %d %s\nwant 403 %s", tt.method, tt.path, resp.StatusCode, body, want)
			}
		})
	}
	if resp, _ := w.do(t, http.MethodHead, "/api/blobs/sha256:"+strings.Repeat("0", 64), "", kid); resp.StatusCode != http.StatusForbidden {
		t.Errorf("HEAD /api/blobs with the limited token: %d, want 403", resp.StatusCode)
	}
	got := tags(t)
	for _, name := range []string{`"name":"mine:x"`, `"name":"mine:y"`, `"name":"mine:z"`} {
		if strings.Contains(got, name) {
			t.Errorf("a refused request changed home's store: %s in %s", name, got)
		}
	}
	if !strings.Contains(got, `"name":"tiny:latest"`) {
		t.Errorf("the refused delete removed tiny: %s", got)
	}

	// Every field that names a model is checked, on any route that goes home.
	resp, body = w.do(t, http.MethodPost, "/api/show", `{"model":"tiny","from":"secret"}`, kid)
	if want := `{"error":"token \"kid\" may not use model \"secret\": it allows tiny:*, mine:*"}` + "\n"; resp.StatusCode != http.StatusForbidden || body != want {
		t.Errorf("show naming a forbidden model in another field: %d %s, want 403 %s", resp.StatusCode, body, want)
	}

	// The limited token keeps its read-only routes and its chats.
	for _, tt := range []struct{ method, path, body, want string }{
		{http.MethodGet, "/api/tags", "", `"name":"tiny:latest"`},
		{http.MethodGet, "/api/version", "", `"version"`},
		{http.MethodPost, "/api/show", `{"model":"tiny"}`, `"details"`},
	} {
		if resp, body := w.do(t, tt.method, tt.path, tt.body, kid); resp.StatusCode != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s with the limited token: %d %s", tt.method, tt.path, resp.StatusCode, body)
		}
	}
	resp, body = w.do(t, http.MethodPost, "/api/chat", `{"model":"tiny","stream":false,"messages":[{"role":"user","content":"hi"}]}`, kid)
	var chat struct {
		Model   string `json:"model"`
		Done    bool   `json:"done"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &chat) != nil || !chat.Done || chat.Message.Content == "" {
		t.Errorf("chat on an allowed model with the limited token: %d %s", resp.StatusCode, body)
	}
}

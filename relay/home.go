package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/hearthlab/hearth/router"
)

// ErrHomeOffline: no agent holds the home channel's tunnel now.
var ErrHomeOffline = errors.New("home is offline")

// home sends the public /v1 and /api routes that only home serves (the chat routes go
// through the channel Chain) through the tunnel to the home cluster.
type home struct {
	name   string
	tunnel *Tunnel
	auth   *Auth
	log    *slog.Logger
}

func (h *home) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := router.DialectOf(r.URL.Path)
	if changesStore(r.URL.Path) && !h.mayChangeStore(w, r) {
		return
	}
	var body []byte
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		var err error
		body, err = io.ReadAll(r.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeTooLarge(w, r, tooLarge.Limit)
				return
			}
			router.WriteError(w, d, &router.APIError{Status: http.StatusBadRequest, Code: "bad_body",
				Message: fmt.Sprintf("could not read the request body: %v", err)})
			return
		}
		for _, model := range requestedModels(body) {
			if !h.auth.CheckModel(w, r, model) {
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	if !h.tunnel.Channel(h.name) {
		router.WriteError(w, d, &router.APIError{Status: http.StatusServiceUnavailable, Code: "home_offline", RetryAfter: 10,
			Message: fmt.Sprintf("home is offline: no agent holds the tunnel %q to this relay right now; check `hearth status` at home and the agent's tunnel settings", h.name)})
		return
	}
	h.tunnel.Forward(w, r, HomeHost(h.name))
}

// changesStore says whether p is a route that changes the home cluster's model store. Such
// a route names models in fields a per-model check cannot cover (the source of a copy, the
// FROM of a create, the layers of a blob upload), and the agent trusts the tunnel, so the
// relay must decide who may use it. The path is cleaned first: refusing a spelling the agent
// would not route costs nothing, forwarding one it does would.
func changesStore(p string) bool {
	p = strings.ToLower(path.Clean("/" + p))
	switch p {
	case "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs":
		return true
	}
	return strings.HasPrefix(p, "/api/blobs/")
}

// allModels: the token may use every model, so nothing it could pull, copy or create
// widens what it may use.
func allModels(tok Token) bool {
	return len(tok.Models) == 0 || slices.Contains(tok.Models, "*")
}

// mayChangeStore answers 403 and returns false unless the request's token may use all
// models: a token limited to some could otherwise copy a model it may not use to a name it
// may, or replace one it may use with any other.
func (h *home) mayChangeStore(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := TokenFrom(r.Context())
	if ok && allModels(tok) {
		return true
	}
	route := strings.TrimPrefix(strings.ToLower(path.Clean("/"+r.URL.Path)), "/api/")
	if strings.HasPrefix(route, "blobs") {
		route = "blobs"
	}
	h.log.Debug("home: model store change refused", "auth_name", tok.Name, "auth_id", tok.ID, "route", route)
	router.WriteError(w, router.DialectOf(r.URL.Path), &router.APIError{Status: http.StatusForbidden, Code: "model_store_not_allowed",
		Message: fmt.Sprintf("token %q may only use models %s, so it may not change the model store at home (%s): "+
			"pull, create, copy and delete models with a token for all models (`hearth token create --name NAME` without --models), or at home",
			tok.Name, strings.Join(tok.Models, ", "), route)})
	return false
}

// requestedModels reads every field of a JSON body that names a model: "model" (or Ollama's
// older "name"), a copy's "source" and "destination", a create's "from". The agent decodes
// the body with encoding/json too, so it sees the same values (keys matched regardless of
// case, the last of duplicates). None when the body is not JSON, which the agent then
// answers in detail.
func requestedModels(body []byte) []string {
	var meta struct {
		Model       string `json:"model"`
		Name        string `json:"name"`
		Source      string `json:"source"`
		Destination string `json:"destination"`
		From        string `json:"from"`
	}
	// A field of the wrong type leaves the string fields decoded: check those anyway.
	var typeErr *json.UnmarshalTypeError
	if err := json.Unmarshal(body, &meta); err != nil && !errors.As(err, &typeErr) {
		return nil
	}
	var models []string
	for _, m := range []string{meta.Model, meta.Name, meta.Source, meta.Destination, meta.From} {
		if m = strings.TrimSpace(m); m != "" && !slices.Contains(models, m) {
			models = append(models, m)
		}
	}
	return models
}

func writeTooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	router.WriteError(w, router.DialectOf(r.URL.Path), &router.APIError{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
		Message: fmt.Sprintf("request body is larger than %d bytes (limits.max_body on the relay): send less", limit)})
}

package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
	var body []byte
	var model string
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
		model = requestedModel(body)
		if model != "" && !h.auth.CheckModel(w, r, model) {
			return
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

// requestedModel reads "model" (or Ollama's older "name") from a JSON body; "" when there is
// none or the body is not JSON, which the agent then answers in detail.
func requestedModel(body []byte) string {
	var meta struct {
		Model string `json:"model"`
		Name  string `json:"name"`
	}
	if json.Unmarshal(body, &meta) != nil {
		return ""
	}
	if meta.Model == "" {
		meta.Model = meta.Name
	}
	return strings.TrimSpace(meta.Model)
}

func writeTooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	router.WriteError(w, router.DialectOf(r.URL.Path), &router.APIError{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
		Message: fmt.Sprintf("request body is larger than %d bytes (limits.max_body on the relay): send less", limit)})
}

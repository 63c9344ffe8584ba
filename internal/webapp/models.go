package webapp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
)

// appModel is one /v1/models entry with the group the picker files it under.
type appModel struct {
	ID      string `json:"id"`
	OwnedBy string `json:"owned_by"`
	// Group is "home", "rag" (a rag:<collection> virtual model) or "vendor".
	Group string `json:"group"`
}

// models is GET /app/v1/models: the role's /v1/models (with its authentication), grouped.
func (a *App) models(w http.ResponseWriter, r *http.Request) {
	up, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "/v1/models", nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "cannot build the models request")
		return
	}
	if v := r.Header.Get("Authorization"); v != "" {
		up.Header.Set("Authorization", v)
	}
	up.RemoteAddr, up.Host, up.TLS = r.RemoteAddr, r.Host, r.TLS
	rec := httptest.NewRecorder()
	a.opts.API.ServeHTTP(rec, up)
	if rec.Code != http.StatusOK {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	var list struct {
		Data []appModel `json:"data"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		writeError(w, http.StatusBadGateway, "bad_models", "the model list is not JSON")
		return
	}
	for i, m := range list.Data {
		list.Data[i].Group = a.group(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": a.opts.Role, "home": a.opts.HomeChannels, "data": list.Data})
}

func (a *App) group(m appModel) string {
	switch {
	case strings.HasPrefix(m.ID, "rag:"):
		return "rag"
	case a.opts.Role != "relay" || slices.Contains(a.opts.HomeChannels, m.OwnedBy):
		return "home"
	default:
		return "vendor"
	}
}

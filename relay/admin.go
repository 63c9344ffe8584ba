package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/relay/tokens"
)

// listTokens is GET /admin/v1/tokens: every token, never a secret.
func (rl *Relay) listTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := rl.store.List(r.Context())
	if err != nil {
		adminError(w, http.StatusInternalServerError, "listing tokens: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": toks})
}

// createToken is POST /admin/v1/tokens {"name","models","expires","ollama_key"}; the answer
// carries the secret, the only time it is shown.
func (rl *Relay) createToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name          string   `json:"name"`
		Models        []string `json:"models"`
		Expires       string   `json:"expires"` // "90d", "12h", "" = never
		OllamaKey     string   `json:"ollama_key"`
		RPM           int      `json:"rpm"`
		TPM           int      `json:"tpm"`
		MonthlyTokens int64    `json:"monthly_tokens"`
		MonthlyCost   float64  `json:"monthly_cost"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		adminError(w, http.StatusBadRequest, `send {"name": "...", "models": ["glob", ...], "expires": "90d", "ollama_key": "ssh-ed25519 ...", "rpm": 0, "tpm": 0, "monthly_tokens": 0, "monthly_cost": 0}: `+err.Error())
		return
	}
	expires, err := tokens.ParseLifetime(req.Expires)
	if err != nil {
		adminError(w, http.StatusBadRequest, "expires "+err.Error())
		return
	}
	spec := tokens.Spec{Name: req.Name, Models: req.Models, Expires: expires, OllamaKey: req.OllamaKey,
		RPM: req.RPM, TPM: req.TPM, MonthlyTokens: req.MonthlyTokens, MonthlyCost: req.MonthlyCost}
	// Validation first, on its own: Create's own validation errors are plain, like its
	// database errors, and only the former are the client's to fix.
	if err := rl.store.Validate(spec); err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	secret, tok, err := rl.store.Create(r.Context(), spec)
	switch {
	case errors.Is(err, tokens.ErrNameTaken):
		adminError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		rl.log.Error("admin API: creating a token failed", "auth_name", spec.Name, "err", err)
		adminError(w, http.StatusInternalServerError, fmt.Sprintf("creating token %q failed in the relay's token database; the relay's log says why: try again", spec.Name))
		return
	}
	rl.log.Info("token created through the admin API", "auth_name", tok.Name, "auth_id", tok.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "secret": secret})
}

// revokeToken is DELETE /admin/v1/tokens/{name}.
func (rl *Relay) revokeToken(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if err := rl.store.Revoke(r.Context(), name); err != nil {
		switch {
		case errors.Is(err, tokens.ErrNotFound):
			adminError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, tokens.ErrRevoked): // "token NAME was already revoked on DATE"
			adminError(w, http.StatusConflict, err.Error()+": nothing to do")
		default:
			rl.log.Error("admin API: revoking a token failed", "auth_name", name, "err", err)
			adminError(w, http.StatusInternalServerError, fmt.Sprintf("revoking token %s failed in the relay's token database; the relay's log says why: try again", name))
		}
		return
	}
	rl.log.Info("token revoked through the admin API", "auth_name", name)
	w.WriteHeader(http.StatusNoContent)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	apierror.Write(w, apierror.OpenAI, &apierror.Error{Status: status, Code: http.StatusText(status), Message: msg})
}

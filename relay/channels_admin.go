package relay

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/config"
)

// channelRoutes are the admin API's channel routes.
func (rl *Relay) channelRoutes(r chi.Router) {
	r.Get("/channels", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"channels": rl.chain.Channels()})
	})
	r.Post("/channels/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := rl.Reload(); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"channels": rl.chain.Channels()})
	})
	r.Post("/channels/{name}/test", func(w http.ResponseWriter, r *http.Request) {
		d, err := rl.chain.Test(r.Context(), chi.URLParam(r, "name"))
		res := map[string]any{"channel": chi.URLParam(r, "name"), "ms": d.Milliseconds(), "ok": err == nil}
		if err != nil {
			res["error"] = err.Error()
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// Reload re-reads the config file the relay started from and swaps in its channels and
// routes, without dropping requests in flight. Other settings need a restart.
func (rl *Relay) Reload() error {
	if rl.path == "" {
		return errNoConfigPath
	}
	cfg, err := config.LoadRelay(rl.path)
	if err != nil {
		rl.log.Error("reload refused: the config has problems; the running channels stay", "err", err)
		return err
	}
	if err := rl.usage.SetPrices(cfg.Prices); err != nil {
		return err
	}
	rl.chain.Reload(cfg)
	return nil
}

var errNoConfigPath = configPathError("this relay was started without a config file: nothing to reload")

type configPathError string

func (e configPathError) Error() string { return string(e) }

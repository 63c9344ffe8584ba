package agent

import (
	"net/http"

	"github.com/hearthlab/hearth/router"
)

// appLoop is the web app's way into the agent's own API server, which is built after the
// app (the server serves the app, the app calls the server): the app's generations and model
// list go through the server's trusted-network and key check and its router like any client.
type appLoop struct{ srv *router.Server }

func (l *appLoop) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.srv.ServeHTTP(w, r) }

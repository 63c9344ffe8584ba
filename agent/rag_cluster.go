package agent

import (
	"net/http"

	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/router"
)

// clusterVirtual serves rag:<collection>: from this node's store.
type clusterVirtual struct {
	local *rag.Virtual
}

func (v *clusterVirtual) Models() []router.ModelInfo { return v.local.Models() }
func (v *clusterVirtual) Claims(model string) bool   { return v.local.Claims(model) }
func (v *clusterVirtual) Serves(model string) bool   { return v.local.Serves(model) }
func (v *clusterVirtual) Serve(w http.ResponseWriter, r *http.Request, route string, body []byte) {
	v.local.Serve(w, r, route, body)
}

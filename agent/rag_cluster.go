package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/router"
	"github.com/hearthlab/hearth/router/cluster"
)

// peerCollectionsTTL is how long a peer's list of collections is trusted before it is asked
// again; peerAskTimeout bounds one ask.
const (
	peerCollectionsTTL = 10 * time.Second
	peerAskTimeout     = 2 * time.Second
)

// clusterVirtual serves rag:<collection> from this node's store, or forwards the request to
// the peer that holds the collection. Peers are asked for their collections over the API
// (GET /rag/v1/collections with the cluster credential) and the answer is cached: the model
// inventory that gossip carries is Ollama's, which the planner loads models from, so
// collections do not travel in it.
type clusterVirtual struct {
	local *rag.Virtual
	// peers lists the other agents (nil without a cluster).
	peers  func() []cluster.Peer
	header http.Header // cluster hop marker and credential
	client *http.Client

	mu      sync.Mutex
	asked   time.Time
	holders map[string]string // collection -> peer API URL
	names   []string
}

func (v *clusterVirtual) Claims(model string) bool { return v.local.Claims(model) }

func (v *clusterVirtual) Models() []router.ModelInfo {
	out := v.local.Models()
	for _, name := range v.remote(context.Background()) {
		if !v.local.Serves(rag.ModelPrefix + name) {
			out = append(out, rag.ModelEntry(name, time.Time{}))
		}
	}
	return out
}

func (v *clusterVirtual) Serves(model string) bool {
	if v.local.Serves(model) {
		return true
	}
	_, ok := v.holder(rag.CollectionOf(model))
	return ok
}

func (v *clusterVirtual) Serve(w http.ResponseWriter, r *http.Request, route string, body []byte) {
	var req struct {
		Model string `json:"model"`
		Name  string `json:"name"`
	}
	_ = json.Unmarshal(body, &req)
	model := req.Model
	if model == "" {
		model = req.Name
	}
	if v.local.Serves(model) {
		v.local.Serve(w, r, route, body)
		return
	}
	api, ok := v.holder(rag.CollectionOf(model))
	if !ok || r.Header.Get(router.ForwardedHeader) != "" {
		router.WriteError(w, router.DialectOf(r.URL.Path), &router.APIError{Status: http.StatusNotFound, Code: "model_not_found",
			Message: fmt.Sprintf("model %q not found: no node holds that collection", model)})
		return
	}
	v.forward(w, r, api, body)
}

// forward sends the request to the peer's API and copies its answer back, flushing each chunk.
func (v *clusterVirtual) forward(w http.ResponseWriter, r *http.Request, api string, body []byte) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, strings.TrimRight(api, "/")+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		router.WriteError(w, router.DialectOf(r.URL.Path), &router.APIError{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()})
		return
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range v.header {
		req.Header[k] = vs
	}
	resp, err := v.client.Do(req)
	if err != nil {
		router.WriteError(w, router.DialectOf(r.URL.Path), &router.APIError{Status: http.StatusBadGateway, Code: "node_unreachable",
			Message: fmt.Sprintf("the node holding this collection (%s) did not answer: %v", api, err)})
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Type", "Cache-Control", "Retry-After"} {
		if val := resp.Header.Get(k); val != "" {
			w.Header().Set(k, val)
		}
	}
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 16<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

func (v *clusterVirtual) holder(collection string) (string, bool) {
	v.remote(context.Background())
	v.mu.Lock()
	defer v.mu.Unlock()
	api, ok := v.holders[collection]
	return api, ok
}

// remote returns the peers' collections, asking them again when the answer is stale.
func (v *clusterVirtual) remote(ctx context.Context) []string {
	if v.peers == nil {
		return nil
	}
	v.mu.Lock()
	if time.Since(v.asked) < peerCollectionsTTL {
		names := v.names
		v.mu.Unlock()
		return names
	}
	v.asked = time.Now()
	v.mu.Unlock()

	type answer struct {
		api   string
		names []string
	}
	var wg sync.WaitGroup
	var amu sync.Mutex
	var answers []answer
	ctx, cancel := context.WithTimeout(ctx, peerAskTimeout)
	defer cancel()
	for _, p := range v.peers() {
		if p.Self || p.Meta.API == "" {
			continue
		}
		wg.Go(func() {
			names, err := v.ask(ctx, p.Meta.API)
			if err == nil {
				amu.Lock()
				answers = append(answers, answer{p.Meta.API, names})
				amu.Unlock()
			}
		})
	}
	wg.Wait()
	holders := map[string]string{}
	var names []string
	slices.SortFunc(answers, func(a, b answer) int { return strings.Compare(a.api, b.api) })
	for _, a := range answers {
		for _, n := range a.names {
			if _, ok := holders[n]; !ok {
				holders[n] = a.api
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	v.mu.Lock()
	v.holders, v.names = holders, names
	v.mu.Unlock()
	return names
}

func (v *clusterVirtual) ask(ctx context.Context, api string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(api, "/")+"/rag/v1/collections", nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range v.header {
		req.Header[k] = vs
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", api, resp.Status)
	}
	var out struct {
		Collections []struct {
			Name string `json:"name"`
		} `json:"collections"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&out); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(out.Collections))
	for _, c := range out.Collections {
		names = append(names, c.Name)
	}
	return names, nil
}

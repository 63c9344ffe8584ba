package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/storage"
	"github.com/hearthlab/hearth/router"
)

// NodePath is where the agent serves its node operations (behind node.api_keys), for
// `hearth models doctor|prewarm` and `hearth wake`.
const NodePath = "/hearth/v1/node"

const (
	// doctorTimeout bounds a storage report: it stats every parent of the store and reads.
	doctorTimeout = 60 * time.Second
	// defaultReadMB is how much of the largest blob the doctor reads to time the store.
	defaultReadMB = 256
	maxReadMB     = 4096
)

// nodeAPI is the handler of NodePath.
func (n *nodeParts) nodeAPI() http.Handler {
	r := chi.NewRouter()
	r.Get("/storage", n.storageReport)
	r.Post("/prewarm", n.prewarm)
	r.Post("/load", n.load)
	r.Post("/wake", n.wakeByHand)
	return r
}

func writeNodeError(w http.ResponseWriter, status int, code, msg string) {
	router.WriteError(w, router.Ollama, &router.APIError{Status: status, Code: code, Message: msg})
}

func (n *nodeParts) noStore(w http.ResponseWriter) bool {
	if n.store != nil {
		return false
	}
	writeNodeError(w, http.StatusNotFound, "no_store", fmt.Sprintf("node %s has no model store: set storage.models_dir in its agent.yaml", n.cfg.Node.Name))
	return true
}

// ollamaUser is who Ollama runs as: this process for a managed one, else the "ollama"
// user of the standard install, else this process.
func (n *nodeParts) ollamaUser() storage.User {
	self := storage.User{Name: "(the agent's user)", UID: uint32(os.Getuid())}
	gids, _ := os.Getgroups()
	self.GIDs = append(self.GIDs, uint32(os.Getgid()))
	for _, g := range gids {
		self.GIDs = append(self.GIDs, uint32(g))
	}
	if n.backend == nil { // a router-only node: only the agent reads the store
		self.Name, self.ReadOnly = "(the agent's user; no Ollama on this node)", true
		return self
	}
	if n.cfg.Ollama.Manage {
		return self
	}
	u, err := user.Lookup("ollama")
	if err != nil {
		return self
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	out := storage.User{Name: "ollama", UID: uint32(uid)}
	groups, _ := u.GroupIds()
	for _, g := range append([]string{u.Gid}, groups...) {
		if v, err := strconv.ParseUint(g, 10, 32); err == nil {
			out.GIDs = append(out.GIDs, uint32(v))
		}
	}
	return out
}

// storageReport is GET /storage?read_mb=N.
func (n *nodeParts) storageReport(w http.ResponseWriter, r *http.Request) {
	if n.noStore(w) {
		return
	}
	readMB := defaultReadMB
	if s := r.URL.Query().Get("read_mb"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > maxReadMB {
			writeNodeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("read_mb %q: give 0 to %d", s, maxReadMB))
			return
		}
		readMB = v
	}
	h, models, u := n.store.probe.Health(), n.store.probe.Models(), n.ollamaUser()
	// A stale NFS handle hangs the stats for ever: the report is given up at the deadline,
	// and while one hangs no other starts (one stuck goroutine at most).
	if !n.diagnosing.CompareAndSwap(false, true) {
		writeNodeError(w, http.StatusServiceUnavailable, "storage_busy",
			fmt.Sprintf("an earlier storage report on %s has not finished: the store %s may hang (a stale NFS handle or an unreachable server?); try again later", n.cfg.Node.Name, h.Dir))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), doctorTimeout)
	defer cancel()
	diagnose := n.diagnose
	if diagnose == nil {
		diagnose = storage.Diagnose
	}
	done := make(chan storage.Report, 1)
	go func() {
		defer n.diagnosing.Store(false)
		done <- diagnose(ctx, n.cfg.Node.Name, h, models, u, int64(readMB)<<20)
	}()
	select {
	case rep := <-done:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(rep)
	case <-ctx.Done():
		writeNodeError(w, http.StatusGatewayTimeout, "storage_timeout",
			fmt.Sprintf("the store %s did not answer within %s: a stale NFS handle or an unreachable server?", h.Dir, doctorTimeout))
	}
}

// PrewarmProgress is one line of POST /prewarm's NDJSON answer.
type PrewarmProgress struct {
	Status         string  `json:"status"` // "reading", "success", or "error"
	Model          string  `json:"model"`
	Completed      int64   `json:"completed"`
	Total          int64   `json:"total"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	Error          string  `json:"error,omitempty"`
}

// prewarm is POST /prewarm {"model": M}: read M's blobs into this machine's page cache.
func (n *nodeParts) prewarm(w http.ResponseWriter, r *http.Request) {
	if n.noStore(w) {
		return
	}
	var req struct {
		Model string `json:"model"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Model == "" {
		writeNodeError(w, http.StatusBadRequest, "bad_request", `send {"model": "NAME"}`)
		return
	}
	if h := n.store.probe.Health(); !h.Ready() {
		writeNodeError(w, http.StatusServiceUnavailable, "storage_unavailable",
			fmt.Sprintf("node %s's model store is not usable, so nothing is read from it: %s", n.cfg.Node.Name, h.Error))
		return
	}
	want := router.NormalizeModel(req.Model)
	var model *storage.Model
	for _, m := range n.store.probe.Models() {
		if router.NormalizeModel(m.Name) == want {
			model = &m
			break
		}
	}
	if model == nil {
		writeNodeError(w, http.StatusNotFound, "model_not_found", fmt.Sprintf("model %q is not on node %s's store (%s)", req.Model, n.cfg.Node.Name, n.cfg.Storage.ModelsDir))
		return
	}
	if n.backend != nil { // reading many GB is work on this machine: not a time to sleep
		defer n.backend.Begin("")()
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	start, lastSent := time.Now(), time.Time{}
	emit := func(p PrewarmProgress) {
		if el := time.Since(start).Seconds(); el > 0 {
			p.BytesPerSecond = float64(p.Completed) / el
		}
		_ = enc.Encode(p)
		if flusher != nil {
			flusher.Flush()
		}
	}
	sum, err := storage.Prewarm(r.Context(), n.cfg.Storage.ModelsDir, *model, func(done, total int64) {
		if time.Since(lastSent) >= 250*time.Millisecond {
			lastSent = time.Now()
			emit(PrewarmProgress{Status: "reading", Model: model.Name, Completed: done, Total: total})
		}
	})
	if err != nil {
		emit(PrewarmProgress{Status: "error", Model: model.Name, Completed: sum.Bytes, Total: model.Size, Error: err.Error()})
		return
	}
	emit(PrewarmProgress{Status: "success", Model: model.Name, Completed: sum.Bytes, Total: model.Size})
	n.log.Info("prewarmed a model into the page cache", "model", model.Name, "bytes", sum.Bytes, "took", sum.Elapsed.Round(time.Millisecond).String())
}

// wakeByHand is POST /wake {"node": N}.
func (n *nodeParts) wakeByHand(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Node string `json:"node"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Node == "" {
		writeNodeError(w, http.StatusBadRequest, "bad_request", `send {"node": "NAME"}`)
		return
	}
	if n.waker == nil {
		writeNodeError(w, http.StatusNotFound, "no_wake_rules", fmt.Sprintf("node %s has no wake: rules (and a cluster): add one for %s to its agent.yaml", n.cfg.Node.Name, req.Node))
		return
	}
	if err := n.waker.Wake(r.Context(), req.Node); err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, router.ErrNoNode) {
			status = http.StatusNotFound
		}
		writeNodeError(w, status, "wake_failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{"node": req.Node, "sent": true, "by": n.cfg.Node.Name})
}

// loadTimeout bounds loading a model into this node's Ollama (a cold load from NFS).
const loadTimeout = 10 * time.Minute

// load is POST /load {"model": M, "keep_alive": "30m"}: this node's own Ollama loads M (a
// generate with no prompt), whatever the router would pick.
func (n *nodeParts) load(w http.ResponseWriter, r *http.Request) {
	if n.backend == nil {
		writeNodeError(w, http.StatusNotFound, "no_ollama", fmt.Sprintf("node %s has no Ollama (ollama.url is empty)", n.cfg.Node.Name))
		return
	}
	var req struct {
		Model     string `json:"model"`
		KeepAlive string `json:"keep_alive,omitempty"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Model == "" {
		writeNodeError(w, http.StatusBadRequest, "bad_request", `send {"model": "NAME", "keep_alive": "30m"}`)
		return
	}
	defer n.backend.Begin("")() // a cold load is work in flight: the sleep guard sees it
	body, _ := json.Marshal(map[string]any{"model": req.Model, "keep_alive": req.KeepAlive, "stream": false})
	ctx, cancel := context.WithTimeout(r.Context(), loadTimeout)
	defer cancel()
	u := n.backend.State().URL.JoinPath("/api/generate")
	greq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		writeNodeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	greq.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultTransport.RoundTrip(greq)
	if err != nil {
		writeNodeError(w, http.StatusBadGateway, "backend_unavailable", fmt.Sprintf("node %s's Ollama: %v", n.cfg.Node.Name, err))
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(answer, &e)
		writeNodeError(w, http.StatusBadGateway, "load_failed", fmt.Sprintf("node %s's Ollama could not load %s: %s %s", n.cfg.Node.Name, req.Model, resp.Status, e.Error))
		return
	}
	took := time.Since(start)
	n.log.Info("loaded a model ahead of need", "model", req.Model, "took", took.Round(time.Millisecond).String())
	_ = n.backend.Refresh(ctx)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{"node": n.cfg.Node.Name, "model": req.Model, "loaded": true, "seconds": took.Seconds()})
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/storage"
	"github.com/hearthlab/hearth/router"
)

// nodeParts is what the agent runs for its machine besides the API: the model store's
// probe and a managed Ollama.
type nodeParts struct {
	cfg     config.Agent
	log     *slog.Logger
	backend *Backend    // nil on a router-only node
	store   *nodeStore  // nil without storage.models_dir
	ollama  *OllamaProc // nil unless ollama.manage
	waker   *waker      // nil without wake: rules and a cluster
	sleep   *sleepGuard // nil on a router-only node, or with idle.inhibit off and no idle.after

	diagnosing atomic.Bool // a storage report runs (it may hang on a stale NFS handle)
	// diagnose builds the storage report; nil = storage.Diagnose (tests make it hang).
	diagnose func(ctx context.Context, node string, h storage.Health, models []storage.Model, u storage.User, readLimit int64) storage.Report
}

// wrapPicker adds waking sleeping nodes (wake:) to the cluster's picker.
func (n *nodeParts) wrapPicker(p router.Picker, c *clusterParts, reg prometheus.Registerer) (router.Picker, error) {
	if c == nil && n.store != nil {
		p = singleStoreView{Picker: p, store: n.store, backend: n.backend}
	}
	if len(n.cfg.Wake) == 0 {
		return p, nil
	}
	if c == nil {
		n.log.Warn("wake: rules are set but the cluster is off (cluster.bind): no node to wake for")
		return p, nil
	}
	w, err := newWaker(p, n.cfg.Wake, c.membership.Peers, n.cfg.Node.DataDir, reg, n.log.With("component", "wake"))
	if err != nil {
		return nil, err
	}
	c.membership.OnChange(w.observe)
	n.waker = w
	return w, nil
}

func newNodeParts(cfg config.Agent, backend *Backend, o options, logger *slog.Logger) (*nodeParts, error) {
	n := &nodeParts{cfg: cfg, log: logger, backend: backend, store: newNodeStore(cfg.Storage, o, logger.With("component", "storage"))}
	if backend != nil && (cfg.Idle.Inhibit || cfg.Idle.After > 0) {
		argv := o.inhibit
		if argv == nil {
			argv = defaultInhibit
		}
		if !cfg.Idle.Inhibit {
			argv = nil
		}
		n.sleep = newSleepGuard(argv, cfg.Idle.After, cfg.Idle.Command, backend.InFlight, logger.With("component", "sleep"))
		backend.OnLoad(n.sleep.changed)
	}
	if cfg.Ollama.Manage {
		var err error
		n.ollama, err = newOllamaProc(cfg, logger.With("component", "ollama"))
		if err != nil {
			return nil, err
		}
	}
	return n, nil
}

// run checks the store and runs the managed Ollama until ctx ends; with
// storage.require_mount, Ollama starts only once the store is mounted and answers. It returns
// an error when the agent cannot do its job: the store did not become ready within
// storage.mount_timeout, or Ollama cannot be started.
func (n *nodeParts) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n.sleep != nil {
		wg.Go(func() { _ = n.sleep.Run(ctx) })
	}
	if n.store != nil {
		wg.Go(func() { _ = n.store.probe.Run(ctx) })
		if n.cfg.Storage.RequireMount {
			if err := n.store.waitReady(ctx, n.log); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("agent: %w", err)
			}
			if n.ollama != nil {
				n.ollama.beforeRestart = func(ctx context.Context) { n.store.waitRemount(ctx, n.log) }
			}
		}
	}
	if n.ollama != nil {
		return n.ollama.Run(ctx)
	}
	<-ctx.Done()
	return nil
}

// singleStoreView is what the store adds to an agent without a cluster: its health and
// models in the cluster view, no cold loads while it hangs, and a model only the store holds
// (Ollama stopped) unavailable rather than unknown.
type singleStoreView struct {
	router.Picker
	store   *nodeStore
	backend *Backend // nil on a router-only node
}

func (s singleStoreView) Pick(ctx context.Context, req router.PickRequest) (*router.Target, error) {
	if s.backend != nil && !s.store.ok() && !s.backend.State().Inventory.Warm(req.Model) {
		return nil, fmt.Errorf("%w: this node's model storage is not answering (%s)", router.ErrNoCandidate, s.store.probe.Health().Error)
	}
	t, err := s.Picker.Pick(ctx, req)
	if errors.Is(err, router.ErrUnknownModel) && (router.Inventory{Stored: s.store.stored()}).OnStore(req.Model) {
		return nil, fmt.Errorf("%w: %s is on this node's model store, but its Ollama does not serve it now", router.ErrNoCandidate, req.Model)
	}
	return t, err
}

func (s singleStoreView) ClusterView() router.ClusterView {
	cv, ok := s.Picker.(router.ClusterViewer)
	if !ok {
		return router.ClusterView{}
	}
	v := cv.ClusterView()
	for i := range v.Nodes {
		nv := &v.Nodes[i]
		if !nv.Self {
			continue
		}
		nv.API = "" // the single view's URL is Ollama's; callers use the agent they asked
		nv.StorageOK, nv.Storage = s.store.ok(), s.store.view()
		for _, m := range s.store.stored() {
			nv.Stored = append(nv.Stored, router.ModelSize{Name: m.Name, Size: m.Size})
		}
	}
	return v
}

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hearthlab/hearth/internal/config"
)

// nodeParts is what the agent runs for its machine besides the API: the model store's
// probe and a managed Ollama.
type nodeParts struct {
	cfg    config.Agent
	log    *slog.Logger
	store  *nodeStore  // nil without storage.models_dir
	ollama *OllamaProc // nil unless ollama.manage
}

func newNodeParts(cfg config.Agent, o options, logger *slog.Logger) (*nodeParts, error) {
	n := &nodeParts{cfg: cfg, log: logger, store: newNodeStore(cfg.Storage, o, logger.With("component", "storage"))}
	if cfg.Ollama.Manage {
		var err error
		n.ollama, err = newOllamaProc(cfg, logger.With("component", "ollama"))
		if err != nil {
			return nil, err
		}
	}
	return n, nil
}

// run checks the store and, once it is ready, runs the managed Ollama, until ctx ends. It
// returns an error when the agent cannot do its job: the store did not become ready within
// storage.mount_timeout, or Ollama cannot be started.
func (n *nodeParts) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n.store != nil {
		wg.Go(func() { _ = n.store.probe.Run(ctx) })
		if n.cfg.Storage.RequireMount || n.ollama != nil {
			if err := n.store.waitReady(ctx, n.log); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("agent: %w", err)
			}
		}
	}
	if n.ollama != nil {
		return n.ollama.Run(ctx)
	}
	<-ctx.Done()
	return nil
}

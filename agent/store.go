package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/storage"
	"github.com/hearthlab/hearth/router"
	"github.com/hearthlab/hearth/router/cluster"
)

// Option changes how New builds the agent; tests use them to fake the machine around it.
type Option func(*options)

type options struct {
	mountInfo string             // mountinfo file; "" = /proc/self/mountinfo
	stat      func(string) error // the store's health check; nil = storage's default
	inhibit   []string           // the sleep inhibitor's command; nil = systemd-inhibit
}

// WithMountInfo reads mounts from path instead of /proc/self/mountinfo.
func WithMountInfo(path string) Option { return func(o *options) { o.mountInfo = path } }

// WithStoreStat replaces the store's health check (a test makes it hang).
func WithStoreStat(stat func(dir string) error) Option { return func(o *options) { o.stat = stat } }

// WithInhibitCommand replaces `systemd-inhibit --what=sleep ...` as the sleep inhibitor.
func WithInhibitCommand(argv ...string) Option { return func(o *options) { o.inhibit = argv } }

// nodeStore is this node's model store: its probe and what it advertises.
type nodeStore struct {
	cfg   config.Storage
	probe *storage.Probe
}

func newNodeStore(cfg config.Storage, o options, logger *slog.Logger) *nodeStore {
	if cfg.ModelsDir == "" {
		return nil
	}
	return &nodeStore{cfg: cfg, probe: storage.NewProbe(storage.ProbeConfig{
		Dir: cfg.ModelsDir, RequireMount: cfg.RequireMount, FSTypes: cfg.FSTypes,
		Interval: cfg.HealthInterval, Timeout: cfg.HealthTimeout, MountInfo: o.mountInfo, Stat: o.stat,
	}, logger)}
}

// ok is whether this node may cold-load models from its store; true without one.
func (s *nodeStore) ok() bool { return s == nil || s.probe.Health().Ready() }

// view is the store's health as gossiped; nil without one.
func (s *nodeStore) view() *router.StorageView {
	if s == nil {
		return nil
	}
	h := s.probe.Health()
	return &router.StorageView{Dir: h.Dir, Required: h.Required, Mounted: h.Mounted, FSType: h.FSType,
		Healthy: h.Healthy, Error: h.Error, CheckedAt: h.CheckedAt}
}

// stored is what the store holds: empty until the store was first ready (mounted, when
// required), then the last scan, kept while the store hangs (the models still exist).
func (s *nodeStore) stored() []router.ModelInfo {
	if s == nil {
		return nil
	}
	models := s.probe.Models()
	out := make([]router.ModelInfo, 0, len(models))
	for _, m := range models {
		out = append(out, router.ModelInfo{Name: m.Name, Size: m.Size, Modified: m.Modified, Raw: m.TagsEntry()})
	}
	return out
}

// waitReady blocks until the store may be used, saying what it waits for; past
// storage.mount_timeout it gives up with an error that says what is missing.
func (s *nodeStore) waitReady(ctx context.Context, log *slog.Logger) error {
	if s.probe.Health().Ready() {
		return nil
	}
	what := "the model store to answer"
	if s.cfg.RequireMount {
		what = fmt.Sprintf("a network filesystem (%s) mounted at the model store", strings.Join(s.cfg.FSTypes, ", "))
	}
	log.Info("waiting for "+what+" before starting Ollama and advertising the store's models",
		"dir", s.cfg.ModelsDir, "mount_timeout", s.cfg.MountTimeout.String())
	return s.probe.WaitReady(ctx, s.cfg.MountTimeout)
}

// waitRemount blocks while the store's required mount is missing, as when the share went
// away after start-up: an Ollama restarted then would run on the local directory under the
// mount point (an empty store, and pulls onto the local disk). A store that is mounted but
// slow does not hold a restart.
func (s *nodeStore) waitRemount(ctx context.Context, log *slog.Logger) {
	unmounted := func() (bool, string) {
		h := s.probe.Health()
		return h.Required && !h.Mounted, h.Error
	}
	if missing, why := unmounted(); missing {
		log.Warn("the model store is not mounted: the managed Ollama is restarted once it is", "dir", s.cfg.ModelsDir, "problem", why)
	} else {
		return
	}
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if missing, _ := unmounted(); !missing {
			log.Info("the model store is mounted again; restarting the managed Ollama", "dir", s.cfg.ModelsDir)
			return
		}
	}
}

// pruneWatch reports, loudly and once per set of nodes, a cluster with more than one
// storage.prune_owner: their Ollamas may delete each other's downloads in progress.
type pruneWatch struct {
	log  *slog.Logger
	mu   sync.Mutex
	last string
}

func (w *pruneWatch) check(peers []cluster.Peer) {
	owners := cluster.PruneOwners(peers)
	slices.Sort(owners)
	key := strings.Join(owners, ",")
	w.mu.Lock()
	news := key != w.last
	w.last = key
	w.mu.Unlock()
	if news && len(owners) > 1 {
		w.log.Error("MORE THAN ONE NODE HAS storage.prune_owner: true: their Ollamas may delete blobs the other is still downloading; set it on one node only",
			"prune_owners", owners)
	}
}

func collectOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Health is the store's state as the agent gossips it and GET /hearth/v1/cluster shows it.
type Health struct {
	// Dir is storage.models_dir.
	Dir string `json:"dir"`
	// Required is storage.require_mount: the store must be a mounted network filesystem.
	Required bool `json:"required"`
	// Mounted: Dir is on a mount of one of storage.fs_types.
	Mounted bool `json:"mounted"`
	// FSType is the type of the mount that holds Dir ("nfs4", or "ext4" before the mount).
	FSType string `json:"fs_type"`
	// Healthy: the last stat answered in time (and Dir is mounted, when Required).
	Healthy bool `json:"healthy"`
	// Error says in words what is wrong ("" when healthy).
	Error string `json:"error"`
	// CheckedAt is when the last check ended.
	CheckedAt time.Time `json:"checked_at"`
}

// Ready is whether the store may be used: healthy, and mounted when a mount is required.
func (h Health) Ready() bool { return h.Healthy && (h.Mounted || !h.Required) }

// ProbeConfig is what the probe checks and how often.
type ProbeConfig struct {
	// Dir is the store (storage.models_dir).
	Dir string
	// RequireMount: Dir must be on a mount of one of FSTypes to be healthy.
	RequireMount bool
	// FSTypes are the filesystem types that count as mounted. Default DefaultFSTypes.
	FSTypes []string
	// Interval between checks. Default 10s.
	Interval time.Duration
	// Timeout bounds one stat of Dir; past it the store is unhealthy. Default 5s.
	Timeout time.Duration
	// MountInfo is the mountinfo file. Default MountInfoPath.
	MountInfo string
	// Stat checks that Dir answers. Default: open Dir and read one entry, which asks the NFS
	// server (a plain stat may be answered from the attribute cache). Tests make it hang.
	Stat func(dir string) error
	// Scan reads the models on the store. Default ReadModels.
	Scan func(dir string) ([]Model, error)
}

// Probe watches a store: its mount, whether it answers, and its models. A stat stuck on a
// stale NFS handle cannot be cancelled: the probe marks the store unhealthy at the deadline,
// starts no second stat while the first hangs, and recovers when one answers again.
type Probe struct {
	cfg ProbeConfig
	log *slog.Logger

	pending  atomic.Bool // a stat has not returned yet
	scanning atomic.Bool // a scan of the models has not returned yet
	scanRes  chan scanResult
	changed  chan struct{}
	mountedC chan struct{} // closed the first time the store is mounted and answers
	onceM    sync.Once

	mu       sync.Mutex
	health   Health
	models   []Model
	scanned  bool
	onChange []func()
}

// NewProbe returns a probe of cfg.Dir; it checks once Run runs. A nil logger discards.
func NewProbe(cfg ProbeConfig, logger *slog.Logger) *Probe {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.FSTypes) == 0 {
		cfg.FSTypes = DefaultFSTypes
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Stat == nil {
		cfg.Stat = readOne
	}
	if cfg.Scan == nil {
		cfg.Scan = ReadModels
	}
	return &Probe{cfg: cfg, log: logger, changed: make(chan struct{}, 1), mountedC: make(chan struct{}), scanRes: make(chan scanResult, 1),
		health: Health{Dir: cfg.Dir, Required: cfg.RequireMount, Error: "not checked yet"}}
}

// readOne asks the filesystem for one directory entry of dir.
func readOne(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// OnChange registers fn, called after the health or the models changed. Set it before Run.
func (p *Probe) OnChange(fn func()) {
	p.mu.Lock()
	p.onChange = append(p.onChange, fn)
	p.mu.Unlock()
}

// Health is the last check's result.
func (p *Probe) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// Models is what the store held at the last scan; nil until the store was first ready.
func (p *Probe) Models() []Model {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.models
}

// Run checks the store every Interval until ctx ends.
func (p *Probe) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// WaitReady blocks until the store is ready (mounted, when required, and answering), ctx
// ends, or timeout passes (0: no limit). Run must be running. Every minute it logs what it
// still waits for.
func (p *Probe) WaitReady(ctx context.Context, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	tell := time.NewTicker(time.Minute)
	defer tell.Stop()
	for {
		select {
		case <-p.mountedC:
			return nil
		case <-ctx.Done():
			h := p.Health()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("storage: %s is still not ready after %s (storage.mount_timeout): %s", p.cfg.Dir, timeout, p.waitingFor(h))
			}
			return ctx.Err()
		case <-tell.C:
			p.log.Warn("still waiting for the model store", "dir", p.cfg.Dir, "waited", time.Since(start).Round(time.Second).String(), "for", p.waitingFor(p.Health()))
		}
	}
}

func (p *Probe) waitingFor(h Health) string {
	if p.cfg.RequireMount && !h.Mounted {
		return fmt.Sprintf("a mount of type %v at %s (it is on %q now; check the NFS mount or its systemd .mount unit)", p.cfg.FSTypes, p.cfg.Dir, h.FSType)
	}
	return h.Error
}

// Check runs one check now: mountinfo, then a stat bounded by Timeout, then a scan of the
// models when the store is ready.
func (p *Probe) Check(ctx context.Context) {
	h := Health{Dir: p.cfg.Dir, Required: p.cfg.RequireMount}
	ms, err := CheckMount(p.cfg.MountInfo, p.cfg.Dir, p.cfg.FSTypes)
	if err == nil && !ms.Mounted && ms.Mount.FSType == "autofs" && !slices.Contains(p.cfg.FSTypes, "autofs") {
		// An automount (x-systemd.automount) mounts the share on first access: access it,
		// bounded like any stat, then read the mounts again.
		if _, serr := p.bounded(ctx, "automount", func() ([]Model, error) { return nil, p.cfg.Stat(p.cfg.Dir) }); serr != nil {
			p.log.Debug("the automount did not answer", "dir", p.cfg.Dir, "err", serr)
		}
		ms, err = CheckMount(p.cfg.MountInfo, p.cfg.Dir, p.cfg.FSTypes)
	}
	if err != nil {
		h.Error = err.Error()
	} else {
		h.Mounted, h.FSType = ms.Mounted, ms.Mount.FSType
	}
	var models []Model
	scanned := false
	switch {
	case h.Error != "":
	case p.cfg.RequireMount && !h.Mounted:
		h.Error = fmt.Sprintf("%s is not on a mounted network filesystem (it is on %s %q at %s; want one of %v)",
			p.cfg.Dir, h.FSType, ms.Mount.Source, ms.Mount.MountPoint, p.cfg.FSTypes)
	default:
		if _, err := p.bounded(ctx, "stat", func() ([]Model, error) { return nil, p.cfg.Stat(p.cfg.Dir) }); err != nil {
			h.Error = err.Error()
			break
		}
		h.Healthy = true
		var err error
		var ended bool
		models, err, ended = p.scan(ctx)
		scanned = ended && (models != nil || err == nil)
		if err != nil {
			p.log.Warn("some models on the store cannot be read", "dir", p.cfg.Dir, "err", err)
		}
	}
	h.CheckedAt = time.Now()
	p.store(h, models, scanned)
}

type scanResult struct {
	models []Model
	err    error
}

// scan reads the store's models, waiting up to Timeout. A store of many models on a slow
// NAS (a disk spinning up) may take longer: that scan goes on, one at a time, and a later
// check takes its result. ended is false while no result is in. The store's health is the
// stat's alone: a slow scan does not make it unhealthy.
func (p *Probe) scan(ctx context.Context) (models []Model, err error, ended bool) {
	select {
	case r := <-p.scanRes: // a scan an earlier check did not wait for
		return r.models, r.err, true
	default:
	}
	if !p.scanning.CompareAndSwap(false, true) {
		return nil, nil, false
	}
	go func() {
		models, err := p.cfg.Scan(p.cfg.Dir)
		r := scanResult{models, err}
		for range 2 { // never blocks: a result nobody took yet is replaced by this newer one
			select {
			case p.scanRes <- r:
				p.scanning.Store(false)
				return
			default:
				select {
				case <-p.scanRes:
				default:
				}
			}
		}
		p.scanning.Store(false)
	}()
	t := time.NewTimer(p.cfg.Timeout)
	defer t.Stop()
	select {
	case r := <-p.scanRes:
		return r.models, r.err, true
	case <-t.C:
		p.log.Info("reading the store's models takes longer than storage.health_timeout; a later check takes the result", "dir", p.cfg.Dir, "timeout", p.cfg.Timeout.String())
	case <-ctx.Done():
	}
	return nil, nil, false
}

// bounded runs fn with the probe's deadline. While an earlier fn still hangs, it fails at
// once: one stuck goroutine per store at most.
func (p *Probe) bounded(ctx context.Context, what string, fn func() ([]Model, error)) ([]Model, error) {
	if !p.pending.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%s of %s has not answered since an earlier check (a stale NFS handle or an unreachable server?)", what, p.cfg.Dir)
	}
	type result struct {
		models []Model
		err    error
	}
	done := make(chan result, 1)
	go func() {
		models, err := fn()
		p.pending.Store(false)
		done <- result{models, err}
	}()
	t := time.NewTimer(p.cfg.Timeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return r.models, fmt.Errorf("%s %s: %w", what, p.cfg.Dir, r.err)
		}
		return r.models, nil
	case <-t.C:
		return nil, fmt.Errorf("%s of %s did not answer within %s (storage.health_timeout): a stale NFS handle or an unreachable server?", what, p.cfg.Dir, p.cfg.Timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *Probe) store(h Health, models []Model, scanned bool) {
	p.mu.Lock()
	old := p.health
	changed := old.Healthy != h.Healthy || old.Mounted != h.Mounted || old.Error != h.Error || old.FSType != h.FSType
	if scanned && (!p.scanned || !sameModels(p.models, models)) {
		p.models, p.scanned, changed = models, true, true
	}
	p.health = h
	fns := slices.Clone(p.onChange)
	p.mu.Unlock()
	if h.Ready() {
		p.onceM.Do(func() { close(p.mountedC) })
	}
	if !changed {
		return
	}
	switch {
	case h.Ready() && !old.Ready():
		p.log.Info("model store ready", "dir", h.Dir, "fs_type", h.FSType, "mounted", h.Mounted, "models", len(models))
	case !h.Ready():
		p.log.Warn("model store not usable: no cold loads on this node until it recovers", "dir", h.Dir, "problem", h.Error)
	}
	for _, fn := range fns {
		fn()
	}
}

func sameModels(a, b []Model) bool {
	return slices.EqualFunc(a, b, func(x, y Model) bool { return x.Name == y.Name && x.Digest == y.Digest && x.Size == y.Size })
}

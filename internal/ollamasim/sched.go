package ollamasim

import (
	"context"
	"slices"
	"time"
)

// slotState is the sim's scheduler: Parallel slots and a strict FIFO of waiters.
type slotState struct {
	free    int
	running int
	queue   []*slotWaiter
}

type slotWaiter struct {
	ready   chan struct{} // closed when the slot is handed over
	granted bool
}

// acquireSlot waits for a free slot in arrival order. It fails at once with errMaxQueue
// when MaxQueue requests already wait, as Ollama's scheduler does.
func (s *Server) acquireSlot(ctx context.Context) error {
	if s.closing() {
		return errClosed
	}
	s.mu.Lock()
	if s.slots.free > 0 && len(s.slots.queue) == 0 {
		s.slots.free--
		s.startRunningLocked()
		s.mu.Unlock()
		return nil
	}
	if len(s.slots.queue) >= s.cfg.MaxQueue {
		s.stats.Rejected++
		s.mu.Unlock()
		return errMaxQueue
	}
	wt := &slotWaiter{ready: make(chan struct{})}
	s.slots.queue = append(s.slots.queue, wt)
	s.mu.Unlock()

	var err error
	select {
	case <-wt.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.done:
		err = errClosed
	}
	s.mu.Lock()
	if wt.granted {
		// The slot arrived just as the client left: pass it on.
		s.mu.Unlock()
		s.releaseSlot()
		return err
	}
	s.slots.queue = slices.DeleteFunc(s.slots.queue, func(w *slotWaiter) bool { return w == wt })
	s.mu.Unlock()
	return err
}

// releaseSlot hands the slot to the oldest waiter, or frees it.
func (s *Server) releaseSlot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slots.running--
	if len(s.slots.queue) == 0 {
		s.slots.free++
		return
	}
	wt := s.slots.queue[0]
	s.slots.queue[0] = nil
	s.slots.queue = s.slots.queue[1:]
	wt.granted = true
	s.startRunningLocked()
	close(wt.ready)
}

func (s *Server) startRunningLocked() {
	s.slots.running++
	s.stats.MaxRunning = max(s.stats.MaxRunning, s.slots.running)
}

// loadedModel is a model in memory (or being loaded), with the requests using it.
type loadedModel struct {
	model     Model
	key       string
	digest    string
	refs      int           // requests using it, including those waiting for the load
	loaded    bool          // false while the cold load runs
	ready     chan struct{} // closed when the load finishes
	loadTimer *time.Timer
	keepAlive time.Duration // the last request's keep_alive, as Ollama's sessionDuration
	lastUsed  time.Time
	expiresAt time.Time
	expiry    *time.Timer
}

// useModel loads m unless it is loaded, and pins it for one request until releaseModel.
// Requests for a model being loaded wait for that one load instead of starting another.
//
// Like Ollama's scheduler, which takes pending requests one at a time, a request that waits
// for a loaded model to go idle so that it can be unloaded holds up every request behind it,
// even those for a loaded model: nothing overtakes a pending load.
func (s *Server) useModel(ctx context.Context, m Model, key string, ka keepAlive) (*loadedModel, error) {
	s.mu.Lock()
	evicting := false   // this request waits for a model to unload, holding up the others
	unblock := func() { // with s.mu held: the load starts, or the request gives up
		if evicting {
			evicting = false
			s.unblockLocked()
		}
	}
	for {
		if s.blocked > 0 && !evicting {
			gate := s.unblocked
			s.mu.Unlock()
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.done:
				return nil, errClosed
			}
			s.mu.Lock()
			continue
		}
		if lm := s.loaded[key]; lm != nil {
			unblock()
			lm.refs++
			lm.stopExpiry()
			if ka.set {
				lm.keepAlive = ka.d
			}
			if lm.loaded {
				s.mu.Unlock()
				return lm, nil
			}
			s.mu.Unlock()
			return s.waitLoad(ctx, lm)
		}
		if s.cfg.MaxLoaded == 0 || len(s.loaded) < s.cfg.MaxLoaded {
			break
		}
		if victim := s.lruIdleLocked(); victim != nil {
			s.stats.Evictions++
			s.unloadLocked(victim)
			continue
		}
		// Every loaded model is busy: wait until one is idle, like Ollama's scheduler.
		if !evicting {
			evicting = true
			if s.blocked++; s.blocked == 1 {
				s.unblocked = make(chan struct{})
			}
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle := s.idle
		s.idleWait++
		s.mu.Unlock()
		var err error
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.done:
			err = errClosed
		}
		s.mu.Lock()
		s.idleWait--
		if err != nil {
			unblock()
			s.mu.Unlock()
			return nil, err
		}
	}
	unblock()
	if s.closing() {
		// Close has stopped the timers; a new load timer would outlive it.
		s.mu.Unlock()
		return nil, errClosed
	}
	lm := &loadedModel{
		model:     m,
		key:       key,
		digest:    digestOf(m),
		refs:      1,
		keepAlive: s.cfg.KeepAlive,
		ready:     make(chan struct{}),
	}
	if ka.set {
		lm.keepAlive = ka.d
	}
	s.loaded[key] = lm
	s.stats.ColdLoads++
	if m.LoadDelay <= 0 {
		s.finishLoadLocked(lm)
		s.mu.Unlock()
		return lm, nil
	}
	// The load belongs to the server, not to the request that started it: if that client
	// leaves, the others waiting still get the model.
	lm.loadTimer = time.AfterFunc(m.LoadDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.finishLoadLocked(lm)
	})
	s.mu.Unlock()
	return s.waitLoad(ctx, lm)
}

func (s *Server) waitLoad(ctx context.Context, lm *loadedModel) (*loadedModel, error) {
	select {
	case <-lm.ready:
		return lm, nil
	case <-ctx.Done():
		s.releaseModel(lm)
		return nil, ctx.Err()
	case <-s.done:
		s.releaseModel(lm)
		return nil, errClosed
	}
}

func (s *Server) finishLoadLocked(lm *loadedModel) {
	lm.loaded = true
	lm.lastUsed = time.Now()
	close(lm.ready)
	if lm.refs == 0 {
		s.scheduleExpiryLocked(lm)
		s.notifyIdleLocked()
	}
}

// unblockLocked ends one request's hold on the requests behind it.
func (s *Server) unblockLocked() {
	if s.blocked--; s.blocked == 0 {
		close(s.unblocked)
	}
}

// releaseModel unpins lm; the last request out starts the keep-alive countdown.
func (s *Server) releaseModel(lm *loadedModel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lm.refs--
	lm.lastUsed = time.Now()
	if lm.refs > 0 || !lm.loaded {
		return
	}
	s.scheduleExpiryLocked(lm)
	s.notifyIdleLocked()
}

func (s *Server) scheduleExpiryLocked(lm *loadedModel) {
	if s.loaded[lm.key] != lm {
		return
	}
	if s.closing() {
		return // Close has stopped the timers; do not start new ones
	}
	now := time.Now()
	switch d := lm.keepAlive; {
	case d <= 0:
		s.unloadLocked(lm)
	case d == forever:
		lm.expiresAt = now.Add(d) // Ollama shows a date some 292 years ahead
	default:
		lm.expiresAt = now.Add(d)
		// One timer per loaded model, re-armed after each use: no allocation per request.
		if lm.expiry == nil {
			lm.expiry = time.AfterFunc(d, func() { s.expire(lm) })
		} else {
			lm.expiry.Reset(d)
		}
	}
}

// expire runs when lm's keep-alive timer fires. The timer may be stale (the model was used
// and re-armed meanwhile), so it unloads only an idle model whose time has come.
func (s *Server) expire(lm *loadedModel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded[lm.key] == lm && lm.refs == 0 && lm.loaded && !lm.expiresAt.IsZero() && !time.Now().Before(lm.expiresAt) {
		s.unloadLocked(lm)
	}
}

// unloadNow is keep_alive 0 with nothing to generate: unload now, or once the requests
// using the model are done.
func (s *Server) unloadNow(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lm := s.loaded[key]
	if lm == nil {
		return
	}
	lm.keepAlive = 0
	if lm.refs == 0 && lm.loaded {
		s.unloadLocked(lm)
	}
}

func (lm *loadedModel) stopExpiry() {
	if lm.expiry != nil {
		lm.expiry.Stop()
	}
	lm.expiresAt = time.Time{}
}

func (s *Server) unloadLocked(lm *loadedModel) {
	lm.stopExpiry()
	delete(s.loaded, lm.key)
	s.stats.Unloads++
	s.notifyIdleLocked()
}

func (s *Server) lruIdleLocked() *loadedModel {
	var victim *loadedModel
	for _, lm := range s.loaded {
		if lm.loaded && lm.refs == 0 && (victim == nil || lm.lastUsed.Before(victim.lastUsed)) {
			victim = lm
		}
	}
	return victim
}

// notifyIdleLocked wakes requests waiting for a model to become idle, if any; the channel
// is only made when someone waits, keeping the common path free of allocations.
func (s *Server) notifyIdleLocked() {
	if s.idleWait > 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stopTimers stops every keep-alive and load timer, for Close.
func (s *Server) stopTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lm := range s.loaded {
		lm.stopExpiry()
		if lm.loadTimer != nil {
			lm.loadTimer.Stop()
		}
	}
}

// served counts a request that got its slot and model.
func (s *Server) served(display string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.stats.PerModel[display]++
}

// psEntry is one row of /api/ps.
type psEntry struct {
	model     Model
	digest    string
	expiresAt time.Time
}

func (s *Server) running() []psEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]psEntry, 0, len(s.loaded))
	for _, lm := range s.loaded {
		if !lm.loaded {
			continue
		}
		e := psEntry{model: lm.model, digest: lm.digest, expiresAt: lm.expiresAt}
		if lm.refs > 0 {
			// Like Ollama, a model in use shows the expiry it would have if it finished now.
			e.expiresAt = now.Add(lm.keepAlive)
		}
		out = append(out, e)
	}
	return out
}

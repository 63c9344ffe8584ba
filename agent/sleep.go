package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultInhibit holds a logind sleep lock for as long as the child runs.
var defaultInhibit = []string{"systemd-inhibit", "--what=sleep:idle", "--who=hearth", "--why=hearth is answering requests on this machine's Ollama", "--mode=block", "sleep", "infinity"}

// idleCommandTimeout bounds idle.command (a suspend returns when the machine wakes).
const idleCommandTimeout = 2 * time.Minute

// sleepGuard keeps the machine awake while its Ollama answers requests through hearth
// (a logind inhibitor held by a child process), and runs idle.command after idle.after
// without requests. Ollama itself does neither.
type sleepGuard struct {
	argv      []string // nil: no inhibitor
	idleAfter time.Duration
	idleCmd   string
	inFlight  func() int
	log       *slog.Logger
	kick      chan struct{}

	mu       sync.Mutex
	child    *exec.Cmd
	exited   chan struct{} // closed when child exits
	disabled bool          // the inhibitor failed once: said so, not tried again
}

func newSleepGuard(argv []string, idleAfter time.Duration, idleCmd string, inFlight func() int, logger *slog.Logger) *sleepGuard {
	return &sleepGuard{argv: argv, idleAfter: idleAfter, idleCmd: idleCmd, inFlight: inFlight, log: logger, kick: make(chan struct{}, 1)}
}

// changed tells the guard that requests in flight changed; it never blocks.
func (g *sleepGuard) changed() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// Run follows the load until ctx ends, then releases the inhibitor.
func (g *sleepGuard) Run(ctx context.Context) error {
	defer g.release()
	var idle <-chan time.Time
	var idleTimer *time.Timer
	resetIdle := func() {
		if idleTimer != nil {
			idleTimer.Stop()
			idle = nil
		}
		if g.idleAfter > 0 {
			idleTimer = time.NewTimer(g.idleAfter)
			idle = idleTimer.C
		}
	}
	resetIdle()
	defer func() {
		if idleTimer != nil {
			idleTimer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.kick:
			if g.inFlight() > 0 {
				g.hold()
				if idleTimer != nil {
					idleTimer.Stop()
					idle = nil
				}
			} else {
				g.release()
				resetIdle()
			}
		case <-idle:
			idle = nil
			if g.inFlight() == 0 {
				g.runIdle(ctx)
				// Woken again (Wake-on-LAN) and still idle: the same wait, then again.
				resetIdle()
			}
		}
	}
}

// hold starts the inhibitor unless it runs or failed before.
func (g *sleepGuard) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.argv == nil || g.disabled || g.child != nil {
		return
	}
	if _, err := exec.LookPath(g.argv[0]); err != nil {
		g.disabled = true
		g.log.Warn(fmt.Sprintf("no sleep inhibitor (%s not found): this machine may fall asleep in the middle of an answer", g.argv[0]))
		return
	}
	cmd := exec.Command(g.argv[0], g.argv[1:]...)
	var out strings.Builder
	lw := &limitedWriter{b: &out, n: 1024}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		g.disabled = true
		g.log.Warn("no sleep inhibitor: this machine may fall asleep in the middle of an answer", "command", g.argv[0], "err", err)
		return
	}
	exited := make(chan struct{})
	g.child, g.exited = cmd, exited
	g.log.Debug("holding a sleep inhibitor while requests are in flight", "pid", cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		close(exited)
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.child == cmd { // it ended by itself: no logind, no permission
			g.child, g.disabled = nil, true
			g.log.Warn("the sleep inhibitor ended by itself; this machine may fall asleep in the middle of an answer",
				"command", g.argv[0], "err", err, "output", strings.TrimSpace(out.String()))
		}
	}()
}

// release stops the inhibitor and waits for it to go.
func (g *sleepGuard) release() {
	g.mu.Lock()
	cmd, exited := g.child, g.exited
	g.child = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// runIdle runs idle.command once the machine has had no requests for idle.after.
func (g *sleepGuard) runIdle(ctx context.Context) {
	if g.idleCmd == "" {
		return
	}
	g.log.Info(fmt.Sprintf("no requests for %s: running idle.command", g.idleAfter), "command", g.idleCmd)
	ctx, cancel := context.WithTimeout(ctx, idleCommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", g.idleCmd).CombinedOutput()
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		g.log.Error("idle.command failed", "command", g.idleCmd, "err", err, "output", strings.TrimSpace(string(out[:min(len(out), 1024)])))
	}
}

// limitedWriter keeps the first n bytes of a child's output.
type limitedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
	n  int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

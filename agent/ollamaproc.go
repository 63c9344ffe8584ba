package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// OllamaProc runs `ollama serve` for the agent (ollama.manage): configured from agent.yaml,
// its output in the agent's log, restarted with backoff when it dies, stopped with SIGTERM
// and, after a grace, SIGKILL.
type OllamaProc struct {
	binary string
	host   string   // OLLAMA_HOST, host:port
	env    []string // added to the agent's environment
	log    *slog.Logger

	grace       time.Duration // SIGTERM to SIGKILL
	killWait    time.Duration // SIGKILL to giving up on the process
	kill        func(pid int, sig syscall.Signal) error
	backoffMin  time.Duration
	backoffMax  time.Duration
	stableAfter time.Duration // a run this long resets the backoff
	// beforeRestart, when set, blocks a restart until Ollama may run again (the store's
	// required mount is back); it returns early when ctx ends.
	beforeRestart func(ctx context.Context)

	starts atomic.Int64
	mu     sync.Mutex
	pid    int // 0 while not running
}

// newOllamaProc builds the managed Ollama's command from the config.
func newOllamaProc(cfg config.Agent, logger *slog.Logger) (*OllamaProc, error) {
	host, err := cfg.Ollama.OllamaHost()
	if err != nil {
		return nil, fmt.Errorf("agent: managed Ollama: %w", err)
	}
	return &OllamaProc{
		binary: cfg.Ollama.Binary, host: host, env: ollamaEnv(cfg, host), log: logger,
		grace: 10 * time.Second, killWait: 5 * time.Second, kill: syscall.Kill, backoffMin: time.Second, backoffMax: 30 * time.Second, stableAfter: time.Minute,
	}, nil
}

// ollamaEnv is what a managed Ollama gets on top of the agent's environment.
func ollamaEnv(cfg config.Agent, host string) []string {
	env := []string{"OLLAMA_HOST=" + host, "OLLAMA_NUM_PARALLEL=" + strconv.Itoa(cfg.Ollama.Parallel)}
	if cfg.Storage.ModelsDir != "" {
		env = append(env, "OLLAMA_MODELS="+cfg.Storage.ModelsDir)
		if !cfg.Storage.PruneOwner {
			// A shared store: only the prune owner may delete blobs it finds unused, which
			// may be another node's download in progress.
			env = append(env, "OLLAMA_NOPRUNE=1")
		}
	}
	if cfg.Ollama.MaxLoaded > 0 {
		env = append(env, "OLLAMA_MAX_LOADED_MODELS="+strconv.Itoa(cfg.Ollama.MaxLoaded))
	}
	if cfg.Ollama.KeepAlive != "" {
		env = append(env, "OLLAMA_KEEP_ALIVE="+cfg.Ollama.KeepAlive)
	}
	for _, k := range sortedKeys(cfg.Ollama.Env) {
		env = append(env, k+"="+cfg.Ollama.Env[k])
	}
	return env
}

// childEnv is the agent's environment without hearth's own variables (HEARTH_*: the
// cluster secret, API keys and tunnel token that agent.yaml names as ${HEARTH_...}), which
// Ollama and its runners have no use for.
func childEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "HEARTH_") {
			out = append(out, kv)
		}
	}
	return out
}

// PID is the running Ollama's process id, 0 between runs.
func (p *OllamaProc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Starts counts how often Ollama was started.
func (p *OllamaProc) Starts() int { return int(p.starts.Load()) }

// Run keeps Ollama running until ctx ends, then stops it. It fails only when the binary
// cannot be started at all.
func (p *OllamaProc) Run(ctx context.Context) error {
	backoff := p.backoffMin
	for {
		if !p.waitPortFree(ctx) {
			return nil
		}
		start := time.Now()
		err := p.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var notStarted *startError
		if errors.As(err, &notStarted) {
			return fmt.Errorf("agent: cannot start the managed Ollama (ollama.binary %q): %w", p.binary, err)
		}
		if time.Since(start) >= p.stableAfter {
			backoff = p.backoffMin
		}
		p.log.Error(fmt.Sprintf("managed Ollama exited; restarting in %s", backoff), "err", err, "ran", time.Since(start).Round(time.Millisecond).String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if p.beforeRestart != nil {
			p.beforeRestart(ctx)
			if ctx.Err() != nil {
				return nil
			}
		}
		backoff = min(2*backoff, p.backoffMax)
	}
}

// waitPortFree holds the start while something else listens at OLLAMA_HOST (an
// ollama.service still enabled, an Ollama left by an earlier agent): Ollama would exit at
// once with "address already in use", again and again, while the agent served that other
// Ollama, which has none of its settings. It returns false when ctx ends.
func (p *OllamaProc) waitPortFree(ctx context.Context) bool {
	warned := false
	wait := p.backoffMin
	for {
		c, err := net.DialTimeout("tcp", p.host, time.Second)
		if err != nil {
			if warned {
				p.log.Info("nothing else listens at OLLAMA_HOST any more; starting the managed Ollama", "host", p.host)
			}
			return true
		}
		c.Close()
		if !warned {
			p.log.Error(fmt.Sprintf("something else already listens at %s, so the managed Ollama cannot start there: stop it "+
				"(an ollama.service still enabled: `sudo systemctl disable --now ollama`; or an Ollama an earlier agent left running). "+
				"Until then requests go to that Ollama, which runs without this agent's settings (OLLAMA_MODELS, OLLAMA_NOPRUNE)", p.host))
			warned = true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, p.backoffMax)
	}
}

// runOnce runs one `ollama serve` until it exits or ctx ends.
func (p *OllamaProc) runOnce(ctx context.Context) error {
	cmd := exec.Command(p.binary, "serve")
	cmd.Env = append(childEnv(os.Environ()), p.env...)
	// Its own process group, so that its runners are stopped with it (see childAttr).
	cmd.SysProcAttr = childAttr()
	out := &lineLog{log: p.log}
	cmd.Stdout, cmd.Stderr = out, out
	// Its runners inherit the output pipe: when `ollama serve` dies and leaves one running,
	// Wait returns this long after it, not when the runner ends, and the group is killed.
	cmd.WaitDelay = pipeDelay
	if err := cmd.Start(); err != nil {
		return &startError{err}
	}
	p.starts.Add(1)
	pid := cmd.Process.Pid
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
	p.log.Info("managed Ollama started", "pid", pid, "binary", p.binary, "env", envNames(p.env))
	defer func() {
		p.mu.Lock()
		p.pid = 0
		p.mu.Unlock()
		out.flush()
	}()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		_ = p.kill(-pid, syscall.SIGKILL) // runners it left behind
		return exitError(err)
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(p.grace)
	defer t.Stop()
	select {
	case err := <-exited:
		_ = p.kill(-pid, syscall.SIGKILL)
		p.log.Info("managed Ollama stopped", "pid", pid, "status", exitStatus(err))
		return nil
	case <-t.C:
	}
	_ = p.kill(-pid, syscall.SIGKILL)
	// A process in uninterruptible sleep (reading a hung NFS store) dies only when the read
	// returns: the agent does not wait for that for ever.
	k := time.NewTimer(p.killWait)
	defer k.Stop()
	select {
	case <-exited:
		p.log.Warn(fmt.Sprintf("managed Ollama did not stop within %s of SIGTERM; killed it", p.grace), "pid", pid)
	case <-k.C:
		p.log.Error(fmt.Sprintf("managed Ollama did not die within %s of SIGKILL (stuck in the kernel, on a hung NFS store?); leaving it", p.killWait), "pid", pid)
	}
	return nil
}

// pipeDelay is how long Wait waits for the output of a dead Ollama's children.
const pipeDelay = 2 * time.Second

// startError: the binary could not be started at all (missing, not executable); retrying
// will not help.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// lineLog writes a child's output into the agent's log, one record per line. Ollama's own
// lines carry "level=WARN" and the like, which sets the record's level.
type lineLog struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

// maxLine bounds one logged line; longer output is cut into pieces.
const maxLine = 8 << 10

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 && len(l.buf) < maxLine {
			return len(p), nil
		}
		if i < 0 || i > maxLine { // a line longer than maxLine: its first piece
			l.emit(string(l.buf[:maxLine]))
			l.buf = l.buf[maxLine:]
			continue
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}

func (l *lineLog) emit(line string) {
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return
	}
	level := slog.LevelInfo
	switch {
	case strings.Contains(line, "level=ERROR"):
		level = slog.LevelError
	case strings.Contains(line, "level=WARN"):
		level = slog.LevelWarn
	case strings.Contains(line, "level=DEBUG"), strings.HasPrefix(line, "[GIN]"):
		level = slog.LevelDebug // [GIN] is one line per request
	}
	l.log.Log(context.Background(), level, "ollama: "+line)
}

var _ io.Writer = (*lineLog)(nil)

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// envNames lists the variables set, with the values of hearth's own (ollama.env's values may
// be secrets, such as a proxy's password).
func envNames(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if slices.Contains(managedVars, k) {
			out = append(out, kv)
		} else {
			out = append(out, k+"="+strings.Repeat("*", min(len(v), 3)))
		}
	}
	return out
}

var managedVars = []string{"OLLAMA_HOST", "OLLAMA_MODELS", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_KEEP_ALIVE", "OLLAMA_NOPRUNE"}

// Package frplog carries frp's log into slog. frp logs through one process-wide logger that
// writes to stdout, so this package holds the one process-wide bridge that replaces it: the
// only package-level state in hearth, forced on it by frp. The agent's tunnel client and the
// relay's tunnel server register their loggers here; tests run both in one process, and each
// keeps its own lines.
package frplog

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	frplog "github.com/fatedier/frp/pkg/util/log"
	golog "github.com/fatedier/golib/log"
)

// TagPrefix starts the xlog prefix a tagged client puts on its frp lines.
const TagPrefix = "hearth-agent-"

var bridge = &lines{tagged: map[string]*slog.Logger{}, untagged: map[uint64]*slog.Logger{}}

type lines struct {
	once     sync.Once
	mu       sync.RWMutex
	next     uint64
	tagged   map[string]*slog.Logger // frp client runs, by their xlog tag
	untagged map[uint64]*slog.Logger // frp servers: lines without a tag
}

// Install replaces frp's logger, once per process. Call it before starting any frp
// goroutine: frp reads its logger without synchronisation on every call.
func Install() {
	bridge.once.Do(func() {
		frplog.Logger = golog.New(golog.WithOutput(bridge), golog.WithLevel(golog.InfoLevel),
			golog.WithCaller(true), golog.AddCallerSkip(1))
	})
}

// Tagged registers l for the lines of one frp client: run it under the returned xlog prefix.
// remove ends the registration.
func Tagged(l *slog.Logger) (tag string, remove func()) {
	bridge.mu.Lock()
	defer bridge.mu.Unlock()
	bridge.next++
	tag = TagPrefix + strconv.FormatUint(bridge.next, 10)
	bridge.tagged[tag] = l
	return tag, func() {
		bridge.mu.Lock()
		delete(bridge.tagged, tag)
		bridge.mu.Unlock()
	}
}

// Untagged registers l for lines that carry no client tag (frp's server logs so).
func Untagged(l *slog.Logger) (remove func()) {
	bridge.mu.Lock()
	defer bridge.mu.Unlock()
	bridge.next++
	id := bridge.next
	bridge.untagged[id] = l
	return func() {
		bridge.mu.Lock()
		delete(bridge.untagged, id)
		bridge.mu.Unlock()
	}
}

// Write is for callers that do not know the level (golib prefers WriteLog).
func (b *lines) Write(p []byte) (int, error) { return b.WriteLog(p, golog.InfoLevel, time.Now()) }

// WriteLog receives one formatted frp line: "2006-01-02 15:04:05.000 [I] [file.go:12] msg".
// A tagged line goes to its client's logger; any other line to the servers' loggers, or, with
// none, to every client (frp client code that logs without context, or a client that stopped).
func (b *lines) WriteLog(p []byte, level golog.Level, when time.Time) (int, error) {
	line := parse(string(p), level)
	b.mu.RLock()
	defer b.mu.RUnlock()
	if l := b.tagged[line.tag]; l != nil {
		line.emit(l, when)
		return len(p), nil
	}
	sinks := b.untagged
	if len(sinks) == 0 || line.tag != "" {
		for _, l := range b.tagged {
			line.emit(l, when)
		}
		return len(p), nil
	}
	for _, l := range sinks {
		line.emit(l, when)
	}
	return len(p), nil
}

// line is one frp log line taken apart.
type line struct {
	level  slog.Level
	caller string // "server/control.go:123"
	tag    string // a client's tag, "" when absent
	msg    string // the message with frp's other prefixes ("[runID] [proxy]") kept
}

func parse(s string, level golog.Level) line {
	s = strings.TrimRight(s, "\n")
	// "2006-01-02 15:04:05.000 [I] " is 28 bytes.
	if len(s) >= 28 && s[23] == ' ' && s[24] == '[' && s[26] == ']' {
		s = s[28:]
	}
	l := line{level: slogLevel(level)}
	if tok, rest, ok := bracketed(s); ok && strings.Contains(tok, ".go:") {
		l.caller, s = tok, rest
	}
	if tok, rest, ok := bracketed(s); ok && strings.HasPrefix(tok, TagPrefix) {
		l.tag, s = tok, rest
	}
	l.msg = s
	if quiet(s) {
		l.level = slog.LevelDebug
	}
	return l
}

// bracketed splits "[tok] rest".
func bracketed(s string) (tok, rest string, ok bool) {
	if !strings.HasPrefix(s, "[") {
		return "", s, false
	}
	end := strings.Index(s, "] ")
	if end < 0 {
		return "", s, false
	}
	return s[1:end], s[end+2:], true
}

// slogLevel maps frp's levels to slog's. frp's info lines repeat what hearth logs itself
// (logins, proxies up and down), so they become debug records.
func slogLevel(l golog.Level) slog.Level {
	switch {
	case l >= golog.ErrorLevel:
		return slog.LevelError
	case l == golog.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

// quiet reports frp warnings that are part of hearth's normal life, such as the listener the
// relay closes on shutdown.
func quiet(msg string) bool {
	return strings.HasPrefix(msg, "listener for incoming connections from client closed") ||
		strings.Contains(msg, "listener is closed: accept tcp") // a proxy's, when its agent leaves
}

func (l line) emit(to *slog.Logger, when time.Time) {
	ctx := context.Background()
	if !to.Enabled(ctx, l.level) {
		return
	}
	r := slog.NewRecord(when, l.level, l.msg, 0)
	r.AddAttrs(slog.String("frp", l.caller))
	_ = to.Handler().Handle(ctx, r)
}

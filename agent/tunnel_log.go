package agent

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

// frp logs through one process-wide logger (frplog.Logger) that writes to stdout. frpLogs
// replaces it, once, before this package starts any frp goroutine, and turns every line
// into a slog record. Each running Tunnel tags its frp client's lines (an xlog prefix,
// frpTagPrefix plus a number) so that they reach that Tunnel's logger.
//
// The relay package installs a bridge of its own for frp's server; hearth runs one role per
// process, but tests run both. Whichever bridge is installed second passes the other's
// lines on to the first (untagged lines are the relay's), so each side keeps its own.
var frpLogs = &agentFrpLogs{tunnels: map[string]*Tunnel{}}

// frpStdoutLogger is frp's own logger, read at package initialisation, before any bridge
// can have replaced it.
var frpStdoutLogger = frplog.Logger

// frpTagPrefix must match the relay package's agentFrpTag.
const frpTagPrefix = "hearth-agent-"

type agentFrpLogs struct {
	once    sync.Once
	relay   *golog.Logger // the relay's bridge, when it was installed first; else nil
	mu      sync.RWMutex
	tunnels map[string]*Tunnel
	next    uint64
}

// install must run before the first frp goroutine of this package: frplog.Logger is read
// without synchronisation on every frp log call.
func (b *agentFrpLogs) install() {
	b.once.Do(func() {
		if frplog.Logger != frpStdoutLogger {
			b.relay = frplog.Logger.WithOptions(golog.WithCaller(false))
		}
		frplog.Logger = golog.New(golog.WithOutput(b), golog.WithLevel(golog.InfoLevel),
			golog.WithCaller(true), golog.AddCallerSkip(1))
	})
}

// add registers t and returns the tag its frp client must carry.
func (b *agentFrpLogs) add(t *Tunnel) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	tag := frpTagPrefix + strconv.FormatUint(b.next, 10)
	b.tunnels[tag] = t
	return tag
}

func (b *agentFrpLogs) remove(tag string) {
	b.mu.Lock()
	delete(b.tunnels, tag)
	b.mu.Unlock()
}

// Write is for callers that do not know the level (golib prefers WriteLog).
func (b *agentFrpLogs) Write(p []byte) (int, error) {
	return b.WriteLog(p, golog.InfoLevel, time.Now())
}

// WriteLog receives one formatted frp line: "2006-01-02 15:04:05.000 [I] [file.go:12] msg".
func (b *agentFrpLogs) WriteLog(p []byte, level golog.Level, when time.Time) (int, error) {
	line := parseFrpLine(string(p), level)
	if line.tag == "" && b.relay != nil {
		b.relay.Log(level, 0, line.body)
		return len(p), nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if t := b.tunnels[line.tag]; t != nil {
		line.emit(t.log, when)
		return len(p), nil
	}
	// frp code that logs without context, or a Tunnel that has stopped.
	for _, t := range b.tunnels {
		line.emit(t.log, when)
	}
	return len(p), nil
}

// frpLine is one frp log line taken apart.
type frpLine struct {
	level  slog.Level
	caller string // "client/control.go:123"
	tag    string // a Tunnel's tag, "" when absent
	body   string // everything after the time and level, as frp wrote it
	msg    string // the message with frp's other prefixes ("[runID] [proxy]") kept
}

func parseFrpLine(s string, level golog.Level) frpLine {
	s = strings.TrimRight(s, "\n")
	// "2006-01-02 15:04:05.000 [I] " is 28 bytes.
	if len(s) >= 28 && s[23] == ' ' && s[24] == '[' && s[26] == ']' {
		s = s[28:]
	}
	line := frpLine{level: slog.LevelDebug, body: s}
	// frp's info lines repeat what hearth logs itself (logins, proxies up and down).
	switch {
	case level >= golog.ErrorLevel:
		line.level = slog.LevelError
	case level == golog.WarnLevel:
		line.level = slog.LevelWarn
	}
	if tok, rest, ok := frpBracketed(s); ok && strings.Contains(tok, ".go:") {
		line.caller, s = tok, rest
	}
	if tok, rest, ok := frpBracketed(s); ok && strings.HasPrefix(tok, frpTagPrefix) {
		line.tag, s = tok, rest
	}
	line.msg = s
	return line
}

// frpBracketed splits "[tok] rest".
func frpBracketed(s string) (tok, rest string, ok bool) {
	if !strings.HasPrefix(s, "[") {
		return "", s, false
	}
	end := strings.Index(s, "] ")
	if end < 0 {
		return "", s, false
	}
	return s[1:end], s[end+2:], true
}

func (line frpLine) emit(l *slog.Logger, when time.Time) {
	ctx := context.Background()
	if !l.Enabled(ctx, line.level) {
		return
	}
	r := slog.NewRecord(when, line.level, line.msg, 0)
	r.AddAttrs(slog.String("frp", line.caller))
	_ = l.Handler().Handle(ctx, r)
}

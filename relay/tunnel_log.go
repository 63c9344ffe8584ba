package relay

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	frplog "github.com/fatedier/frp/pkg/util/log"
	golog "github.com/fatedier/golib/log"
)

// frp logs through one process-wide logger (frplog.Logger) that writes to stdout. frpLogs
// replaces it, once, before this package starts any frp goroutine, and turns every line
// into a slog record on the loggers of the running relay Tunnels (normally exactly one).
//
// The agent package installs a bridge of its own for frp's client; hearth runs one role per
// process, but tests run both. Client lines carry the agent's tag (agentFrpTag); whichever
// bridge is installed second passes the other's lines on to the first, so each side keeps
// its own lines.
var frpLogs = &relayFrpLogs{sinks: map[*Tunnel]*slog.Logger{}}

// frpStdoutLogger is frp's own logger, read at package initialisation, before any bridge
// can have replaced it.
var frpStdoutLogger = frplog.Logger

// agentFrpTag starts the xlog prefix that agent.Tunnel puts on every line of its frp client.
const agentFrpTag = "hearth-agent-"

type relayFrpLogs struct {
	once  sync.Once
	agent *golog.Logger // the agent's bridge, when it was installed first; else nil
	mu    sync.RWMutex
	sinks map[*Tunnel]*slog.Logger
}

// install must run before the first frp goroutine of this package: frplog.Logger is read
// without synchronisation on every frp log call.
func (b *relayFrpLogs) install() {
	b.once.Do(func() {
		if frplog.Logger != frpStdoutLogger {
			b.agent = frplog.Logger.WithOptions(golog.WithCaller(false))
		}
		frplog.Logger = golog.New(golog.WithOutput(b), golog.WithLevel(golog.InfoLevel),
			golog.WithCaller(true), golog.AddCallerSkip(1))
	})
}

func (b *relayFrpLogs) add(t *Tunnel, l *slog.Logger) {
	b.mu.Lock()
	b.sinks[t] = l
	b.mu.Unlock()
}

func (b *relayFrpLogs) remove(t *Tunnel) {
	b.mu.Lock()
	delete(b.sinks, t)
	b.mu.Unlock()
}

// Write is for callers that do not know the level (golib prefers WriteLog).
func (b *relayFrpLogs) Write(p []byte) (int, error) {
	return b.WriteLog(p, golog.InfoLevel, time.Now())
}

// WriteLog receives one formatted frp line: "2006-01-02 15:04:05.000 [I] [file.go:12] msg".
func (b *relayFrpLogs) WriteLog(p []byte, level golog.Level, when time.Time) (int, error) {
	line := parseFrpLine(string(p), level)
	if strings.HasPrefix(line.tag, agentFrpTag) && b.agent != nil {
		b.agent.Log(level, 0, line.body)
		return len(p), nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, l := range b.sinks {
		line.emit(l, when)
	}
	return len(p), nil
}

// frpLine is one frp log line taken apart.
type frpLine struct {
	level  slog.Level
	caller string // "server/control.go:123"
	tag    string // the first xlog prefix, "" when there is none
	body   string // everything after the time and level, as frp wrote it
	msg    string // the message with frp's other prefixes ("[runID] [proxy]") kept
}

func parseFrpLine(s string, level golog.Level) frpLine {
	s = strings.TrimRight(s, "\n")
	// "2006-01-02 15:04:05.000 [I] " is 28 bytes.
	if len(s) >= 28 && s[23] == ' ' && s[24] == '[' && s[26] == ']' {
		s = s[28:]
	}
	line := frpLine{level: frpLevel(level), body: s}
	if tok, rest, ok := frpBracketed(s); ok && strings.Contains(tok, ".go:") {
		line.caller, s = tok, rest
	}
	if tok, rest, ok := frpBracketed(s); ok && strings.HasPrefix(tok, agentFrpTag) {
		line.tag, s = tok, rest
	}
	line.msg = s
	if frpQuiet(s) {
		line.level = slog.LevelDebug
	}
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

// frpLevel maps frp's levels to slog's. frp's info lines repeat what hearth logs itself
// (logins, proxies up and down), so they become debug records.
func frpLevel(l golog.Level) slog.Level {
	switch {
	case l >= golog.ErrorLevel:
		return slog.LevelError
	case l == golog.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

// frpQuiet reports frp warnings that are part of hearth's normal life, such as the listener
// that the Tunnel closes on shutdown.
func frpQuiet(msg string) bool {
	return strings.HasPrefix(msg, "listener for incoming connections from client closed") ||
		strings.Contains(msg, "listener is closed: accept tcp") // a proxy's, when its agent leaves
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

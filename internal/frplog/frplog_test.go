package frplog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	golog "github.com/fatedier/golib/log"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in    string
		level golog.Level
		want  line
	}{
		{"2026-01-02 03:04:05.678 [I] [client/control.go:174] [hearth-agent-12] [abc] [home-nas] start proxy success\n", golog.InfoLevel,
			line{level: slog.LevelDebug, caller: "client/control.go:174", tag: "hearth-agent-12", msg: "[abc] [home-nas] start proxy success"}},
		{"2026-01-02 03:04:05.678 [W] [client/control.go:128] [hearth-agent-1] start new connection to server error: EOF\n", golog.WarnLevel,
			line{level: slog.LevelWarn, caller: "client/control.go:128", tag: "hearth-agent-1", msg: "start new connection to server error: EOF"}},
		{"2026-01-02 03:04:05.678 [W] [server/service.go:479] [abc] register control error: x\n", golog.WarnLevel,
			line{level: slog.LevelWarn, caller: "server/service.go:479", msg: "[abc] register control error: x"}},
		{"2026-01-02 03:04:05.678 [W] [server/service.go:690] listener for incoming connections from client closed\n", golog.WarnLevel,
			line{level: slog.LevelDebug, caller: "server/service.go:690", msg: "listener for incoming connections from client closed"}},
		{"2026-01-02 03:04:05.678 [E] untagged\n", golog.ErrorLevel, line{level: slog.LevelError, msg: "untagged"}},
		{"[weird", golog.InfoLevel, line{level: slog.LevelDebug, msg: "[weird"}},
	}
	for _, tt := range tests {
		if got := parse(tt.in, tt.level); got != tt.want {
			t.Errorf("parse(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

// TestRouting: a client's lines reach its own logger, server lines the servers'.
func TestRouting(t *testing.T) {
	var client, server bytes.Buffer
	tag, removeClient := Tagged(slog.New(slog.NewTextHandler(&client, &slog.HandlerOptions{Level: slog.LevelDebug})))
	removeServer := Untagged(slog.New(slog.NewTextHandler(&server, &slog.HandlerOptions{Level: slog.LevelDebug})))
	now := time.Now()
	_, _ = bridge.WriteLog([]byte("2026-01-02 03:04:05.678 [W] [client/control.go:1] ["+tag+"] client says hi\n"), golog.WarnLevel, now)
	_, _ = bridge.WriteLog([]byte("2026-01-02 03:04:05.678 [E] [server/service.go:2] server says hi\n"), golog.ErrorLevel, now)
	if !strings.Contains(client.String(), "client says hi") || strings.Contains(client.String(), "server says hi") {
		t.Errorf("client log: %s", client.String())
	}
	if !strings.Contains(server.String(), "server says hi") || strings.Contains(server.String(), "client says hi") {
		t.Errorf("server log: %s", server.String())
	}
	removeServer()
	_, _ = bridge.WriteLog([]byte("2026-01-02 03:04:05.678 [E] context-free client line\n"), golog.ErrorLevel, now)
	if !strings.Contains(client.String(), "context-free client line") {
		t.Errorf("with no server, untagged lines go to the clients: %s", client.String())
	}
	removeClient()
}

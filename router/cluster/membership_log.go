package cluster

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// memberlistLogger is a *log.Logger for memberlist.Config.Logger that turns each of
// memberlist's "[LEVEL] memberlist: message" lines into a record of logger at that level.
func memberlistLogger(logger *slog.Logger) *log.Logger {
	return log.New(slogWriter{logger}, "", 0)
}

type slogWriter struct{ log *slog.Logger }

// Write takes one line: log.Logger writes each message in one call.
func (w slogWriter) Write(p []byte) (int, error) {
	level, msg := parseLogLine(string(p))
	ctx := context.Background()
	if w.log.Enabled(ctx, level) {
		w.log.Log(ctx, level, msg)
	}
	return len(p), nil
}

// parseLogLine splits "[WARN] memberlist: message" into a level and "message". A line
// without a known level is Info.
func parseLogLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "]"); ok {
			switch strings.ToUpper(tag) {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR", "CRIT", "FATAL":
				level = slog.LevelError
			}
			line = strings.TrimSpace(msg)
		}
	}
	return level, strings.TrimPrefix(line, "memberlist: ")
}

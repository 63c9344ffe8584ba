package certs

// Certificates the user brings (reloaded when their files change), and certmagic's log
// routed into slog.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap/zapcore"
)

// byoCertificate is a certificate the user brings: reloaded when its files change, checked
// at most every `every`, so that a certificate renewed by another tool is picked up.
type byoCertificate struct {
	certFile, keyFile string
	every             time.Duration
	logger            *slog.Logger

	cert      atomic.Pointer[tls.Certificate]
	lastCheck atomic.Int64 // unix nanoseconds

	mu                  sync.Mutex // one check at a time; guards the stamps
	certStamp, keyStamp fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

func loadBYOCertificate(certFile, keyFile string, logger *slog.Logger) (*byoCertificate, error) {
	b := &byoCertificate{certFile: certFile, keyFile: keyFile, every: time.Minute, logger: logger}
	if err := b.load(); err != nil {
		return nil, fmt.Errorf("relay: tls.cert %s / tls.key %s: %w", certFile, keyFile, err)
	}
	b.lastCheck.Store(time.Now().UnixNano())
	return b, nil
}

// load reads both files; on success it replaces the certificate and remembers the stamps.
func (b *byoCertificate) load() error {
	certStamp, err := stampOf(b.certFile)
	if err != nil {
		return err
	}
	keyStamp, err := stampOf(b.keyFile)
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(b.certFile, b.keyFile)
	if err != nil {
		return err
	}
	b.cert.Store(&pair)
	b.certStamp, b.keyStamp = certStamp, keyStamp
	if left := time.Until(pair.Leaf.NotAfter); left < 14*24*time.Hour {
		b.logger.Warn("tls.cert expires soon: renew it; the relay picks up the new file within a minute",
			"not_after", pair.Leaf.NotAfter, "names", pair.Leaf.DNSNames)
	}
	return nil
}

func (b *byoCertificate) current() *tls.Certificate {
	now := time.Now().UnixNano()
	if now-b.lastCheck.Load() >= int64(b.every) && b.mu.TryLock() {
		b.lastCheck.Store(now)
		b.reloadIfChanged()
		b.mu.Unlock()
	}
	return b.cert.Load()
}

func (b *byoCertificate) reloadIfChanged() {
	certStamp, err1 := stampOf(b.certFile)
	keyStamp, err2 := stampOf(b.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		b.logger.Warn("tls.cert or tls.key unreadable: serving the certificate loaded before", "error", err)
		return
	}
	if certStamp == b.certStamp && keyStamp == b.keyStamp {
		return
	}
	if err := b.load(); err != nil {
		// Often a renewal caught half-way (new certificate, old key): tried again next time.
		b.logger.Warn("tls.cert or tls.key changed but does not load: serving the certificate loaded before", "error", err)
		return
	}
	b.logger.Info("reloaded tls.cert", "not_after", b.cert.Load().Leaf.NotAfter)
}

func (b *byoCertificate) covers(host string) bool {
	cert := b.cert.Load()
	return cert != nil && cert.Leaf != nil && cert.Leaf.VerifyHostname(host) == nil
}

// certmagicLogCore is a zap core that writes certmagic's (and acmez's) logs as slog records.
// Their info lines (locks, polling) go to debug and their errors to warn: the lines a person
// must act on are onCertEvent's.
type certmagicLogCore struct {
	handler slog.Handler
}

func certmagicLevel(l zapcore.Level) slog.Level {
	if l >= zapcore.WarnLevel {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

func (l *certmagicLogCore) Enabled(level zapcore.Level) bool {
	return l.handler.Enabled(context.Background(), certmagicLevel(level))
}

func (l *certmagicLogCore) With(fields []zapcore.Field) zapcore.Core {
	return &certmagicLogCore{handler: l.handler.WithAttrs(zapFieldsToAttrs(fields))}
}

func (l *certmagicLogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if l.Enabled(e.Level) {
		return ce.AddCore(e, l)
	}
	return ce
}

func (l *certmagicLogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, certmagicLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(zapFieldsToAttrs(fields)...)
	return l.handler.Handle(context.Background(), r)
}

func (l *certmagicLogCore) Sync() error { return nil }

func zapFieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		for k, v := range enc.Fields {
			if k != "errorVerbose" {
				attrs = append(attrs, slog.Any(k, v))
			}
		}
	}
	return attrs
}

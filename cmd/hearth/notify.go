package main

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/hearthlab/hearth/internal/sdnotify"
)

// runNotified runs a role that New has built, telling systemd (Type=notify) it is ready,
// keeping its watchdog fed while the role runs, and that it stops once Run returns.
func runNotified(ctx context.Context, log *slog.Logger, n *sdnotify.Notifier, run func(context.Context) error) error {
	if err := n.Ready(); err != nil {
		log.Warn("cannot tell systemd the service is ready", "err", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		n.RunWatchdog(wctx, func(err error) { log.Warn("cannot feed systemd's watchdog", "err", err) })
	})
	err := run(ctx)
	_ = n.Stopping()
	cancel()
	wg.Wait()
	return err
}

func systemdNotifier() *sdnotify.Notifier { return sdnotify.New(os.Getenv, os.Getpid()) }

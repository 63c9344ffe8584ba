package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/hearthlab/hearth/internal/sdnotify"
)

// runNotified runs a role that New has built, telling systemd (Type=notify) it is ready,
// keeping its watchdog fed while the role runs and alive (nil: always) says it works, and
// that it stops once Run returns.
func runNotified(ctx context.Context, log *slog.Logger, n *sdnotify.Notifier, run func(context.Context) error, alive func(context.Context) error) error {
	if err := n.Ready(); err != nil {
		log.Warn("cannot tell systemd the service is ready", "err", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		n.RunWatchdog(wctx, alive, func(err error) { log.Warn("systemd's watchdog not fed", "err", err) })
	})
	err := run(ctx)
	_ = n.Stopping()
	cancel()
	wg.Wait()
	return err
}

func systemdNotifier() *sdnotify.Notifier { return sdnotify.New(os.Getenv, os.Getpid()) }

// healthzAlive asks the agent's own API for /healthz: a wedged server stops the watchdog's
// pings, and systemd restarts it.
func healthzAlive(addr net.Addr) func(context.Context) error {
	url := "http://" + addr.String() + "/healthz"
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		url = fmt.Sprintf("http://127.0.0.1:%d/healthz", tcp.Port)
	}
	client := &http.Client{}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

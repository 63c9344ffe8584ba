package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/hearthlab/hearth/internal/doctor"
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

// healthzAlive asks the agent's own API for /healthz, each time on a new connection: a wedged
// server stops the watchdog's pings, and systemd restarts it.
func healthzAlive(addr net.Addr) func(context.Context) error {
	return getsOK(healthClient("", nil, 0), "http://"+doctor.Loopback(addr.String())+"/healthz")
}

// relayAlive asks the relay's own HTTPS for /healthz on its listener, as hearth health
// --connect does but with each probe a new connection, so that a wedged accept loop, TLS or
// handler stops the watchdog's pings. It names the relay's domain, in the SNI (which picks
// the certificate) and the Host (which picks the API). It does not verify the certificate:
// doctor checks that, and a relay whose certificate a restart cannot fix (a staging CA, an
// expired file) must not be restarted in a loop. Until ACME has obtained the first
// certificate the relay can only answer the handshake with an alert; that alert is its TLS
// answering, so it counts as alive, or systemd would restart issuance itself.
func relayAlive(addr net.Addr, domain string) func(context.Context) error {
	client := healthClient(doctor.Loopback(addr.String()), &tls.Config{ServerName: domain, InsecureSkipVerify: true}, 0) //nolint:gosec // a probe of itself, not of its certificate
	get := getsOK(client, "https://"+domain+"/healthz")
	return func(ctx context.Context) error {
		err := get(ctx)
		if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
			return nil // a TLS alert: no certificate to show yet
		}
		return err
	}
}

// getsOK is a liveness check: GET url answers 200.
func getsOK(client *http.Client, url string) func(context.Context) error {
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

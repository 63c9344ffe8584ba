// Package sdnotify speaks systemd's notify protocol (sd_notify(3)) for units of Type=notify:
// READY=1 once a role is built, WATCHDOG=1 at half of WatchdogSec, STOPPING=1 on the way out,
// each a datagram to $NOTIFY_SOCKET (a path, or an abstract socket written "@name"). Outside
// systemd ($NOTIFY_SOCKET unset) every call does nothing. Only cmd/hearth imports it; the
// roles' packages do not.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends to one notify socket.
type Notifier struct {
	socket   string
	watchdog time.Duration // WATCHDOG_USEC when it is meant for this process; 0 = off
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID through getenv (os.Getenv); pid is
// this process's, which WATCHDOG_PID must name when set.
func New(getenv func(string) string, pid int) *Notifier {
	n := &Notifier{socket: getenv("NOTIFY_SOCKET")}
	usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return n
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return n // the watchdog is some other process's (we were started by it)
	}
	n.watchdog = time.Duration(usec) * time.Microsecond
	return n
}

// Enabled is true under systemd with Type=notify.
func (n *Notifier) Enabled() bool { return n.socket != "" }

// WatchdogInterval is WatchdogSec, 0 when the unit has none.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog }

// Notify sends one state ("READY=1", "STATUS=..."); lines are newline-separated.
func (n *Notifier) Notify(state string) error {
	if n.socket == "" {
		return nil
	}
	name := n.socket
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:] // the abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %s: %w", n.socket, err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %s: %w", n.socket, err)
	}
	return nil
}

// Ready tells systemd the service is up.
func (n *Notifier) Ready() error { return n.Notify("READY=1") }

// Stopping tells systemd the service is shutting down.
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1") }

// RunWatchdog sends WATCHDOG=1 every half WatchdogSec until ctx ends, each time alive (nil:
// always) says the service works, so that systemd restarts one that hangs; it returns at once
// when the unit has no watchdog or no socket. A failed check or send goes to onError, and the
// next tick tries again.
func (n *Notifier) RunWatchdog(ctx context.Context, alive func(context.Context) error, onError func(error)) {
	if n.socket == "" || n.watchdog <= 0 {
		return
	}
	report := func(err error) {
		if err != nil && onError != nil {
			onError(err)
		}
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive != nil {
				actx, cancel := context.WithTimeout(ctx, n.watchdog/2)
				err := alive(actx)
				cancel()
				if err != nil {
					report(fmt.Errorf("sdnotify: not feeding the watchdog: %w", err))
					continue
				}
			}
			report(n.Notify("WATCHDOG=1"))
		}
	}
}

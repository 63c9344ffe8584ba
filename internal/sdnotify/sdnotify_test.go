package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// listen opens a unixgram socket as systemd's would be and returns what it receives.
func listen(t *testing.T, name string) <-chan string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

func receive(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case msg := <-got:
		if msg != want {
			t.Errorf("received %q, want %q", msg, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing received, want %q", want)
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNotifyPathSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	got := listen(t, path)
	n := New(env(map[string]string{"NOTIFY_SOCKET": path}), os.Getpid())
	if !n.Enabled() || n.WatchdogInterval() != 0 {
		t.Fatalf("enabled %v watchdog %v", n.Enabled(), n.WatchdogInterval())
	}
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "READY=1")
	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "STOPPING=1")
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "@hearth-sdnotify-test-" + strconv.Itoa(os.Getpid())
	got := listen(t, "\x00"+name[1:])
	if err := New(env(map[string]string{"NOTIFY_SOCKET": name}), os.Getpid()).Ready(); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "READY=1")
}

func TestNotifyOutsideSystemdDoesNothing(t *testing.T) {
	n := New(env(nil), os.Getpid())
	if n.Enabled() || n.Ready() != nil {
		t.Error("without NOTIFY_SOCKET, Ready should do nothing and succeed")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n.RunWatchdog(ctx, nil, nil) // returns at once: no socket
}

func TestNotifyErrorNamesTheSocket(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone.sock")
	err := New(env(map[string]string{"NOTIFY_SOCKET": missing}), 1).Ready()
	if err == nil || !strings.Contains(err.Error(), "sdnotify: "+missing) {
		t.Errorf("error %v", err)
	}
}

func TestWatchdog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	got := listen(t, path)
	vars := map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000", "WATCHDOG_PID": strconv.Itoa(os.Getpid())}
	n := New(env(vars), os.Getpid())
	if n.WatchdogInterval() != 40*time.Millisecond {
		t.Fatalf("interval %v", n.WatchdogInterval())
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	// alive is answered by the test, round by round, so the order of events is fixed.
	calls := make(chan chan error)
	alive := func(ctx context.Context) error {
		answer := make(chan error)
		select {
		case calls <- answer:
		case <-ctx.Done():
			return ctx.Err()
		}
		return <-answer
	}
	failures := make(chan error, 1)
	wg.Go(func() { n.RunWatchdog(ctx, alive, func(err error) { failures <- err }) })
	(<-calls) <- nil
	receive(t, got, "WATCHDOG=1")
	// An unhealthy round pings nothing and says why: the next message is the test's MARK,
	// sent once the watchdog is in its following round.
	(<-calls) <- errors.New("the API does not answer")
	if err := <-failures; err.Error() != "sdnotify: not feeding the watchdog: the API does not answer" {
		t.Errorf("failure %q", err)
	}
	next := <-calls
	if err := n.Notify("MARK"); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "MARK")
	next <- nil
	receive(t, got, "WATCHDOG=1")
	cancel()
	wg.Wait()

	// WATCHDOG_PID naming another process: the watchdog is not ours.
	vars["WATCHDOG_PID"] = "1"
	if New(env(vars), os.Getpid()).WatchdogInterval() != 0 {
		t.Error("a watchdog meant for pid 1 was taken")
	}
	vars["WATCHDOG_USEC"] = "nonsense"
	if New(env(vars), 1).WatchdogInterval() != 0 {
		t.Error("a bad WATCHDOG_USEC gave a watchdog")
	}
}

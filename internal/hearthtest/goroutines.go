package hearthtest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Hearth matches the goroutines running hearth's own code, for CheckGoroutines.
const Hearth = "github.com/hearthlab/hearth/"

// forever are goroutines that libraries start once per process or per server and that
// nothing can stop: frps' port managers' hourly cleaners and its metrics, kcp-go's
// scheduler, certmagic's per-CA rate limiters. They hold no port.
var forever = []string{
	"ports.(*Manager).cleanReservedPortsWorker",
	"mem.(*serverMetrics).run",
	"kcp-go",
	"certmagic.(*RingBufferRateLimiter)",
}

// Goroutines lists the stacks of the running goroutines that contain one of match, but the
// caller's, the tests' own (a parent test waiting for its subtests) and those in forever.
func Goroutines(match ...string) []string {
	buf := make([]byte, 4<<20)
	stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	var out []string
	for _, g := range stacks[1:] { // the first is the caller's
		if containsAny(g, match) && !containsAny(g, forever) && !strings.Contains(g, "testing.tRunner(") {
			out = append(out, g)
		}
	}
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// CheckGoroutines fails t when goroutines whose stacks contain one of match (Hearth, a
// library's package path, a function) still run 5 s after the test's other cleanups: every
// goroutine has an owner that waits for it. Call it first in the test, so that its check runs
// last; not in parallel tests, whose goroutines it would count.
func CheckGoroutines(t testing.TB, match ...string) {
	t.Helper()
	t.Cleanup(func() {
		var left []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if left = Goroutines(match...); len(left) == 0 {
				return
			}
		}
		t.Errorf("%d goroutines outlived the test:\n%s", len(left), strings.Join(left, "\n\n"))
	})
}

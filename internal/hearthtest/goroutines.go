package hearthtest

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Hearth matches the goroutines running hearth's own code, for CheckGoroutines and Main. A
// goroutine's stack names the function that started it, so this also matches a library's
// goroutine that hearth's code started (an http.Server's connection, a frp control loop).
const Hearth = "github.com/hearthlab/hearth/"

// settle is how long goroutines get to end after a test (CheckGoroutines) or a package's
// tests (Main): a server's connections close a moment after its Shutdown returns.
const settle = 5 * time.Second

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

// leftAfter polls Goroutines(match...) until none is left or limit passes, and returns what
// is left then.
func leftAfter(limit time.Duration, match []string) []string {
	deadline := time.Now().Add(limit)
	for {
		left := Goroutines(match...)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CheckGoroutines fails t when goroutines whose stacks contain one of match (Hearth, a
// library's package path, a function) still run 5 s after the test's other cleanups: every
// goroutine has an owner that waits for it. Call it first in the test, so that its check runs
// last; not in parallel tests, whose goroutines it would count.
func CheckGoroutines(t testing.TB, match ...string) {
	t.Helper()
	t.Cleanup(func() {
		if left := leftAfter(settle, match); len(left) > 0 {
			t.Errorf("%d goroutines outlived the test:\n%s", len(left), strings.Join(left, "\n\n"))
		}
	})
}

// Main runs a package's tests, for its TestMain, and then fails the package (exit status 1,
// the stacks on stderr) when goroutines whose stacks contain one of match still run 5 s after
// the last test ended; with no match, those of Hearth. It is CheckGoroutines for a whole
// package: it needs no call in each test, sees what parallel tests left, and names no test.
// A package whose servers run frp, yamux or memberlist adds their paths to match, for the
// goroutines those libraries start on their own.
func Main(m *testing.M, match ...string) {
	os.Exit(mainCode(m, os.Stderr, settle, match))
}

func mainCode(m interface{ Run() int }, stderr io.Writer, limit time.Duration, match []string) int {
	if len(match) == 0 {
		match = []string{Hearth}
	}
	code := m.Run()
	if left := leftAfter(limit, match); len(left) > 0 {
		fmt.Fprintf(stderr, "hearthtest: %d goroutines outlived the tests by %s (every goroutine needs an owner that waits for it):\n\n%s\n",
			len(left), limit, strings.Join(left, "\n\n"))
		if code == 0 {
			code = 1
		}
	}
	return code
}

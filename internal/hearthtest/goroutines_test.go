package hearthtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// tests is a stand-in for testing.M: its Run runs body and returns code.
type tests struct {
	code int
	body func()
}

func (m tests) Run() int { m.body(); return m.code }

// parked is a goroutine of hearth's code that runs until release is closed.
func parked(release <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	<-release
}

// endsSoon is a goroutine of hearth's code that ends by itself a moment after it starts.
func endsSoon(wg *sync.WaitGroup) {
	defer wg.Done()
	time.Sleep(50 * time.Millisecond)
}

// TestMainFailsThePackageOnALeak: a goroutine of hearth's that outlives the tests turns a
// passing package into a failing one, and its stack is printed; one that ends within the
// grace period, or the tests' failure alone, does not change the outcome.
func TestMainFailsThePackageOnALeak(t *testing.T) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)

	var stderr strings.Builder
	leak := tests{body: func() { wg.Add(1); go parked(release, &wg) }}
	if code := mainCode(leak, &stderr, 200*time.Millisecond, nil); code != 1 {
		t.Fatalf("exit status %d with a leaked goroutine, want 1", code)
	}
	if out := stderr.String(); !strings.Contains(out, "1 goroutines outlived the tests") || !strings.Contains(out, "hearthtest.parked") {
		t.Fatalf("stderr does not show the leaked goroutine:\n%s", out)
	}

	// A failing package keeps its own status, and still shows the leak.
	stderr.Reset()
	if code := mainCode(tests{code: 2, body: func() {}}, &stderr, 200*time.Millisecond, nil); code != 2 {
		t.Fatalf("exit status %d for failed tests, want 2", code)
	}
	if !strings.Contains(stderr.String(), "hearthtest.parked") {
		t.Fatalf("stderr does not show the leaked goroutine:\n%s", stderr.String())
	}

	// A goroutine that ends a moment after the tests is no leak (the first one still runs:
	// match only this one).
	stderr.Reset()
	late := tests{body: func() {
		wg.Add(1)
		go endsSoon(&wg)
	}}
	if code := mainCode(late, &stderr, 5*time.Second, []string{"hearthtest.endsSoon"}); code != 0 {
		t.Fatalf("exit status %d, want 0:\n%s", code, stderr.String())
	}

	// Goroutines outside match do not count.
	stderr.Reset()
	if code := mainCode(tests{body: func() {}}, &stderr, 200*time.Millisecond, []string{"github.com/elsewhere/"}); code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit status %d, stderr %q: a goroutine outside match counted", code, stderr.String())
	}
}

// TestRunStopsAndReports: Run's component gets a live context until stop, stop waits for it
// and is idempotent, and an error it returns fails the test.
func TestRunStopsAndReports(t *testing.T) {
	var ft fakeT
	ft.T = t
	ended := false
	stop := Run(&ft, "quiet", func(ctx context.Context) error {
		<-ctx.Done()
		ended = true
		return nil
	})
	stop()
	stop()
	if !ended || len(ft.errs) != 0 {
		t.Fatalf("after stop: ended %v, errors %q", ended, ft.errs)
	}

	stop = Run(&ft, "broken", func(ctx context.Context) error { <-ctx.Done(); return errors.New("disk full") })
	stop()
	if len(ft.errs) != 1 || ft.errs[0] != "broken: Run: disk full" {
		t.Fatalf("errors %q, want the component's error named", ft.errs)
	}
}

// fakeT records the errors Run reports instead of failing the test.
type fakeT struct {
	*testing.T
	errs []string
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

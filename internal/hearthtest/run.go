package hearthtest

import (
	"context"
	"sync"
	"testing"
	"time"
)

// stopLimit bounds how long Run's stop waits for a component to return once its context
// ended; a component that takes longer hangs, and the test says so.
const stopLimit = 30 * time.Second

// Run starts a component's run (its Run(ctx)) in a goroutine and returns stop, which cancels
// run's context, waits for run to return, and fails t (naming the component by name) when it
// returned an error or did not return within 30 s. t's cleanup calls stop, so a test calls it
// only to stop the component early (a node leaving); stop does its work once.
//
// The context is not t.Context(): that ends before any cleanup runs, which would stop every
// component at once; stopped by its cleanup, a component stops before those started earlier
// (the agent before the relay it tunnels to), as a test's cleanups unwind.
func Run(t testing.TB, name string, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		case <-time.After(stopLimit):
			t.Errorf("%s: Run did not return within %s of its context ending", name, stopLimit)
		}
	})
	t.Cleanup(stop)
	return stop
}

package hearthtest

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it holds, and fails the test (saying what it waited
// for) when limit passes first: the one bounded wait-until of hearth's tests.
func Eventually(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

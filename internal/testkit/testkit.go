// Package testkit is what flowhouse's tests share: waiting for a condition
// (Eventually, Within) and reading the UDP datagrams of a packet capture
// (ReadCapture). Only tests import it.
package testkit

import (
	"testing"
	"time"
)

// maxPoll bounds the pause between two evaluations of a condition: the
// first ones come quickly (1 ms, doubling), so a condition that holds
// soon is seen soon, and a costly one (a query) is not run in a loop.
const maxPoll = 50 * time.Millisecond

// Within evaluates cond until it holds or timeout has passed, and reports
// whether it held. It is for tests that then check the exact outcome
// themselves; Eventually fails the test instead.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; ; pause = min(2*pause, maxPoll) {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left))
	}
}

// Eventually evaluates cond until it holds, and fails the test (t.Fatalf
// naming what was awaited) when timeout passes first. cond runs on the
// test's goroutine, so it may call t.Fatal itself.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

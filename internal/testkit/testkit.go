// Package testkit is what flowhouse's tests share: waiting for a condition
// (Eventually, Within) and reading the UDP datagrams of a packet capture
// (ReadCapture). Only tests import it.
package testkit

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
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

// READMEBlock returns the first fenced code block of lang (```lang) that
// follows the text after in the repository's README.md, so tests run the
// examples as they are written there.
func READMEBlock(t testing.TB, after, lang string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	readme, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, after)
	if i < 0 {
		t.Fatalf("README.md has no %q", after)
	}
	s = s[i:]
	fence := "```" + lang + "\n"
	start := strings.Index(s, fence)
	if start < 0 {
		t.Fatalf("README.md has no %s block after %q", lang, after)
	}
	s = s[start+len(fence):]
	end := strings.Index(s, "```")
	if end < 0 {
		t.Fatalf("README.md: the %s block after %q does not end", lang, after)
	}
	return s[:end]
}

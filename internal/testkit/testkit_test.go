package testkit

import (
	"fmt"
	"testing"
	"time"
)

func TestWithin(t *testing.T) {
	calls := 0
	if !Within(5*time.Second, func() bool { calls++; return calls == 5 }) || calls != 5 {
		t.Fatalf("Within: %d calls, want true at the 5th", calls)
	}
	start := time.Now()
	if Within(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Within held a condition that never holds")
	}
	if el := time.Since(start); el < 30*time.Millisecond || el > time.Second {
		t.Fatalf("Within gave up after %s, want 30ms", el)
	}
}

// fatalTB records Fatalf instead of stopping the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestEventually(t *testing.T) {
	ok := &fatalTB{TB: t}
	Eventually(ok, "a condition that holds", time.Second, func() bool { return true })
	if ok.msg != "" {
		t.Fatalf("failed on a condition that holds: %s", ok.msg)
	}
	never := &fatalTB{TB: t}
	Eventually(never, "godot", 10*time.Millisecond, func() bool { return false })
	if want := "timed out after 10ms waiting for godot"; never.msg != want {
		t.Fatalf("message %q, want %q", never.msg, want)
	}
}

package store

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestClassifyInsertErrors(t *testing.T) {
	exc := func(code int32) error {
		return fmt.Errorf("insert: %w", &clickhouse.Exception{Code: code})
	}
	for _, tc := range []struct {
		err  error
		want ErrorClass
	}{
		{fmt.Errorf("dial tcp 127.0.0.1:9000: %w", syscall.ECONNREFUSED), Transient},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), Transient},
		{context.DeadlineExceeded, Transient},
		{fmt.Errorf("x: %w", context.Canceled), Transient},
		{exc(CodeTooManyParts), Transient},
		{exc(CodeServerOverloaded), Transient},
		{exc(CodeTooManySimultaneousQueries), Transient},
		{exc(CodeMemoryLimitExceeded), Transient},
		{exc(CodeTypeMismatch), Rejected},
		{exc(16), Rejected}, // NO_SUCH_COLUMN_IN_TABLE
		{exc(CodeUnknownSetting), Rejected},
		{exc(CodeUnknownTable), Unavailable},
		{exc(CodeAuthenticationFailed), Unavailable},
		{errors.New("insert into flows: server expects 40 columns, batch has 47"), Rejected},
		{errors.New("write: broken pipe"), Transient},
		{clickhouse.ErrAcquireConnTimeout, Transient},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestBackoffDoublesWithJitterUpToMax(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: 700 * time.Millisecond}
	for i, want := range []time.Duration{100, 200, 400, 700, 700} {
		want *= time.Millisecond
		if d := b.Delay(); d != want {
			t.Fatalf("attempt %d: delay %s, want %s", i, d, want)
		}
		if w := b.Next(); w < want/2 || w > want {
			t.Fatalf("attempt %d: wait %s outside [%s, %s]", i, w, want/2, want)
		}
	}
	b.Reset()
	if d := b.Delay(); d != 100*time.Millisecond {
		t.Errorf("after Reset: %s", d)
	}
}

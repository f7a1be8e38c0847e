package store

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// This file is flowhouse's one place for what ClickHouse errors mean: the
// exception codes it looks at, how an error is classified, and the
// backoff of the loops that retry.

// ClickHouse exception codes (src/Common/ErrorCodes.cpp) that flowhouse
// looks at.
const (
	CodeUnexpectedEndOfFile          = 3
	CodeAttemptToReadAfterEOF        = 32
	CodeNumberOfArgumentsDoesntMatch = 42
	CodeIllegalTypeOfArgument        = 43
	CodeUnknownFunction              = 46
	CodeUnknownIdentifier            = 47
	CodeTypeMismatch                 = 53
	CodeTableAlreadyExists           = 57
	CodeUnknownTable                 = 60
	CodeSyntaxError                  = 62
	CodeUnknownFormat                = 73
	CodeUnknownDatabase              = 81
	CodeCannotReadFromSocket         = 95
	CodeCannotWriteToSocket          = 96
	CodeUnknownSetting               = 115
	CodeTooManyRows                  = 158
	CodeTimeoutExceeded              = 159
	CodeTooSlow                      = 160
	CodeReadonly                     = 164
	CodeCannotAllocateMemory         = 173
	CodeUnknownUser                  = 192
	CodeWrongPassword                = 193
	CodeRequiredPassword             = 194
	CodeQuotaExceeded                = 201
	CodeTooManySimultaneousQueries   = 202
	CodeNoFreeConnection             = 203
	CodeSocketTimeout                = 209
	CodeNetworkError                 = 210
	CodeTableIsDropped               = 218
	CodeNoZookeeper                  = 225
	CodeNoReplicaHasPart             = 234
	CodeAborted                      = 236
	CodeMemoryLimitExceeded          = 241
	CodeTableIsReadOnly              = 242
	CodeNotEnoughSpace               = 243
	CodeTooManyParts                 = 252
	CodeReplicaAlreadyExists         = 253
	CodeAllConnectionTriesFailed     = 279
	CodeTooFewLiveReplicas           = 285
	CodeUnsatisfiedQuorumForPrevious = 286
	CodeReplicaIsNotInQuorum         = 289
	CodeTooManyBytes                 = 307
	CodeUnknownStatusOfInsert        = 319
	CodeAllReplicasAreStale          = 369
	CodeQueryWasCancelled            = 394
	CodeTooManyRowsOrBytes           = 396
	CodeCannotScheduleTask           = 439
	CodeAccessDenied                 = 497
	CodeAuthenticationFailed         = 516
	CodeTooManyPartitions            = 565
	CodeDistributedTooManyPending    = 574
	CodeServerOverloaded             = 745
	CodeKeeperException              = 999
	CodeUnknownException             = 1002
)

// ExceptionCode is the ClickHouse exception code in err's chain, or 0.
func ExceptionCode(err error) int32 {
	var exc *clickhouse.Exception
	if errors.As(err, &exc) {
		return exc.Code
	}
	return 0
}

// ErrorClass is what a failed insert means for its batch.
type ErrorClass int

const (
	// Transient: the server is down, unreachable, overloaded or slow.
	// Retry later (the spool keeps the batch and replays it).
	Transient ErrorClass = iota
	// Unavailable: the server answers but refuses every insert for a
	// reason that is not the batch's (authentication, missing database or
	// table). Keep the batch like a transient failure and say what to fix.
	Unavailable
	// Rejected: the server refused this batch (type mismatch, unknown
	// column, ...). Retrying cannot help.
	Rejected
)

func (c ErrorClass) String() string {
	switch c {
	case Transient:
		return "transient"
	case Unavailable:
		return "unavailable"
	}
	return "rejected"
}

var transientCodes = map[int32]bool{
	CodeUnexpectedEndOfFile: true, CodeAttemptToReadAfterEOF: true,
	CodeCannotReadFromSocket: true, CodeCannotWriteToSocket: true,
	CodeTimeoutExceeded: true, CodeTooSlow: true, CodeCannotAllocateMemory: true,
	CodeQuotaExceeded: true, CodeTooManySimultaneousQueries: true, CodeNoFreeConnection: true,
	CodeSocketTimeout: true, CodeNetworkError: true, CodeTableIsDropped: true,
	CodeNoZookeeper: true, CodeNoReplicaHasPart: true, CodeAborted: true,
	CodeMemoryLimitExceeded: true, CodeTableIsReadOnly: true, CodeNotEnoughSpace: true,
	CodeTooManyParts: true, CodeAllConnectionTriesFailed: true, CodeTooFewLiveReplicas: true,
	CodeUnsatisfiedQuorumForPrevious: true, CodeReplicaIsNotInQuorum: true,
	CodeUnknownStatusOfInsert: true, CodeAllReplicasAreStale: true,
	CodeQueryWasCancelled: true, CodeCannotScheduleTask: true, CodeTooManyPartitions: true,
	CodeDistributedTooManyPending: true, CodeServerOverloaded: true, CodeKeeperException: true,
}

var unavailableCodes = map[int32]bool{
	CodeUnknownTable: true, CodeUnknownDatabase: true, CodeReadonly: true,
	CodeUnknownUser: true, CodeWrongPassword: true, CodeRequiredPassword: true,
	CodeAccessDenied: true, CodeAuthenticationFailed: true,
}

// Classify tells what an insert error means for the batch: by ClickHouse
// exception code when the server sent one, else by the error's type
// (timeouts, canceled contexts and network errors are transient). Errors
// of no known kind are Rejected: a batch the client cannot even encode
// for the table (a column type the driver cannot convert) fails the same
// way every time.
func Classify(err error) ErrorClass {
	if err == nil {
		return Transient
	}
	if code := ExceptionCode(err); code != 0 {
		switch {
		case transientCodes[code]:
			return Transient
		case unavailableCodes[code]:
			return Unavailable
		}
		return Rejected
	}
	if isTimeout(err) || isConnectionError(err) {
		return Transient
	}
	return Rejected
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}

// isConnectionError: the server could not be reached or the connection
// broke. clickhouse-go does not wrap every network failure with %w, so
// its messages are looked at too.
func isConnectionError(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, context.Canceled), errors.As(err, &netErr), errors.As(err, &opErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, clickhouse.ErrAcquireConnTimeout):
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "i/o timeout", "EOF", "bad connection", "acquire conn timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Insert error reasons, the insert_errors_total label.
const (
	errTimeout    = "timeout"
	errConnection = "connection"
	errServer     = "server"
	errOther      = "other"
)

// ErrorReason is the metric label of a failed insert or write:
// timeout, connection, server (an exception) or other.
func ErrorReason(err error) string {
	switch {
	case isTimeout(err):
		return errTimeout
	case ExceptionCode(err) != 0:
		return errServer
	case errors.Is(err, context.Canceled):
		return errOther
	case isConnectionError(err):
		return errConnection
	}
	return errOther
}

// Backoff is an exponential backoff with jitter: each wait is drawn from
// the upper half of the current delay, which doubles from Initial up to
// Max. The jitter keeps several writers (or flowhouse instances) from
// hitting a recovering server in lockstep.
type Backoff struct {
	Initial, Max time.Duration
	delay        time.Duration
}

// Next is how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.delay == 0 {
		b.delay = b.Initial
	}
	wait := b.delay/2 + rand.N(b.delay/2+1)
	b.delay = min(2*b.delay, b.Max)
	return wait
}

// Delay is the current delay, before jitter.
func (b *Backoff) Delay() time.Duration {
	if b.delay == 0 {
		return b.Initial
	}
	return b.delay
}

// Reset starts again from Initial, after a success.
func (b *Backoff) Reset() { b.delay = 0 }

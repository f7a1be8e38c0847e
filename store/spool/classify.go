package spool

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Class of an insert error: what the spool does with the batch.
type Class int

const (
	// Transient: the server is down, unreachable, overloaded or slow.
	// The batch is spooled and replayed when the server answers.
	Transient Class = iota
	// Unavailable: the server answers but refuses every insert for a
	// reason that is not the batch's (authentication, missing database or
	// table). The batch is spooled like a transient failure, and readiness
	// fails with what to fix; once fixed the spool replays.
	Unavailable
	// Rejected: the server refused this batch (type mismatch, unknown
	// column, ...). Retrying cannot help: the batch is quarantined.
	Rejected
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Unavailable:
		return "unavailable"
	}
	return "rejected"
}

// ClickHouse exception codes (src/Common/ErrorCodes.cpp).
const (
	codeUnexpectedEndOfFile          = 3
	codeAttemptToReadAfterEOF        = 32
	codeUnknownTable                 = 60
	codeUnknownDatabase              = 81
	codeCannotReadFromSocket         = 95
	codeCannotWriteToSocket          = 96
	codeTimeoutExceeded              = 159
	codeTooSlow                      = 160
	codeReadonly                     = 164
	codeCannotAllocateMemory         = 173
	codeUnknownUser                  = 192
	codeWrongPassword                = 193
	codeRequiredPassword             = 194
	codeQuotaExceeded                = 201
	codeTooManySimultaneousQueries   = 202
	codeNoFreeConnection             = 203
	codeSocketTimeout                = 209
	codeNetworkError                 = 210
	codeTableIsDropped               = 218
	codeNoZookeeper                  = 225
	codeNoReplicaHasPart             = 234
	codeAborted                      = 236
	codeMemoryLimitExceeded          = 241
	codeTableIsReadOnly              = 242
	codeNotEnoughSpace               = 243
	codeTooManyParts                 = 252
	codeAllConnectionTriesFailed     = 279
	codeTooFewLiveReplicas           = 285
	codeUnsatisfiedQuorumForPrevious = 286
	codeReplicaIsNotInQuorum         = 289
	codeUnknownStatusOfInsert        = 319
	codeAllReplicasAreStale          = 369
	codeQueryWasCancelled            = 394
	codeCannotScheduleTask           = 439
	codeAccessDenied                 = 497
	codeAuthenticationFailed         = 516
	codeTooManyPartitions            = 565
	codeDistributedTooManyPending    = 574
	codeServerOverloaded             = 745
	codeKeeperException              = 999
)

var transientCodes = map[int32]bool{
	codeUnexpectedEndOfFile: true, codeAttemptToReadAfterEOF: true,
	codeCannotReadFromSocket: true, codeCannotWriteToSocket: true,
	codeTimeoutExceeded: true, codeTooSlow: true, codeCannotAllocateMemory: true,
	codeQuotaExceeded: true, codeTooManySimultaneousQueries: true, codeNoFreeConnection: true,
	codeSocketTimeout: true, codeNetworkError: true, codeTableIsDropped: true,
	codeNoZookeeper: true, codeNoReplicaHasPart: true, codeAborted: true,
	codeMemoryLimitExceeded: true, codeTableIsReadOnly: true, codeNotEnoughSpace: true,
	codeTooManyParts: true, codeAllConnectionTriesFailed: true, codeTooFewLiveReplicas: true,
	codeUnsatisfiedQuorumForPrevious: true, codeReplicaIsNotInQuorum: true,
	codeUnknownStatusOfInsert: true, codeAllReplicasAreStale: true,
	codeQueryWasCancelled: true, codeCannotScheduleTask: true, codeTooManyPartitions: true,
	codeDistributedTooManyPending: true, codeServerOverloaded: true, codeKeeperException: true,
}

var unavailableCodes = map[int32]bool{
	codeUnknownTable: true, codeUnknownDatabase: true, codeReadonly: true,
	codeUnknownUser: true, codeWrongPassword: true, codeRequiredPassword: true,
	codeAccessDenied: true, codeAuthenticationFailed: true,
}

// Classify tells what an insert error means for the batch: by ClickHouse
// exception code when the server sent one, else by the error's type
// (timeouts, canceled contexts and network errors are transient). Errors
// of no known kind are Rejected: a batch the client cannot even encode
// for the table (a column type the driver cannot convert) fails the same
// way every time.
func Classify(err error) Class {
	if err == nil {
		return Transient
	}
	var exc *clickhouse.Exception
	if errors.As(err, &exc) {
		switch {
		case transientCodes[exc.Code]:
			return Transient
		case unavailableCodes[exc.Code]:
			return Unavailable
		}
		return Rejected
	}
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &netErr), errors.As(err, &opErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, clickhouse.ErrAcquireConnTimeout):
		return Transient
	}
	// clickhouse-go does not wrap every network failure with %w.
	msg := err.Error()
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "i/o timeout", "EOF", "bad connection", "acquire conn timeout"} {
		if strings.Contains(msg, s) {
			return Transient
		}
	}
	return Rejected
}

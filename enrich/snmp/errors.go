package snmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/gosnmp/gosnmp"
)

// Reasons of failed polls, the "reason" label of the failure metric.
const (
	ReasonTimeout = "timeout" // no answer: wrong address or port, agent down, or (v2c) wrong community
	ReasonAuth    = "auth"    // v3: unknown user, wrong digest (auth passphrase), decryption error (priv passphrase), unsupported level
	ReasonNetwork = "network" // socket errors: unreachable, refused
	ReasonAgent   = "agent"   // the agent answered with an error status
	ReasonOther   = "other"
)

// Reasons lists every reason, for pre-creating metric series.
var Reasons = []string{ReasonTimeout, ReasonAuth, ReasonNetwork, ReasonAgent, ReasonOther}

// Error is a failed SNMP operation with a classified reason.
type Error struct {
	Reason string
	Op     string
	Target string
	Err    error
}

func (e *Error) Error() string {
	hint := ""
	switch e.Reason {
	case ReasonTimeout:
		hint = " (no answer: check the agent address and port, that the agent runs, and for v2c the community)"
	case ReasonAuth:
		hint = " (SNMPv3 credentials rejected: check user, auth/priv protocols and passphrases)"
	}
	return fmt.Sprintf("snmp %s %s: %s: %v%s", e.Target, e.Op, e.Reason, e.Err, hint)
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of err, ReasonOther when it is not an *Error.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonOther
}

var authErrors = []error{
	gosnmp.ErrUnknownUsername, gosnmp.ErrWrongDigest, gosnmp.ErrDecryption,
	gosnmp.ErrUnknownSecurityLevel,
}

func classify(err error, _ gosnmp.SnmpVersion) string {
	for _, a := range authErrors {
		if errors.Is(err, a) {
			return ReasonAuth
		}
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonTimeout
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "max retries"):
		return ReasonTimeout
	case slices.ContainsFunc([]string{"authentic", "digest", "decrypt", "unknown user", "usmstats"}, func(s string) bool { return strings.Contains(msg, s) }):
		return ReasonAuth
	case strings.Contains(msg, "refused"), strings.Contains(msg, "unreachable"), strings.Contains(msg, "no route"):
		return ReasonNetwork
	case strings.Contains(msg, "agent answered"):
		return ReasonAgent
	}
	return ReasonOther
}

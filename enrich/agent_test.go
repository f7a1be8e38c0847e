package enrich_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowhouse/flowhouse/internal/peers"
)

// Real net-snmp agents for the tests, from package peers (shared with the
// ARP rules' tests): on the host's loopback, or inside a network
// namespace the test creates, reached through a relay.

// agent is a running snmpd; addr is where the test reaches it.
type agent struct {
	*peers.SNMPAgent
	addr string
}

func (a *agent) setAlias(t *testing.T, ifIndex uint32, alias string) { a.SetAlias(t, ifIndex, alias) }

func run(t *testing.T, args ...string) string { t.Helper(); return peers.MustRun(t, args...) }

func freeUDPPort(t *testing.T) int { return peers.FreeUDPPort(t) }

// startSnmpd runs snmpd (in ns when not empty) until the test ends.
func startSnmpd(t *testing.T, ns, sysName string) *agent {
	t.Helper()
	a := peers.StartSnmpd(t, ns, sysName)
	return &agent{a, a.Addr}
}

func ifIndexOf(t *testing.T, ns, name string) uint32 { t.Helper(); return peers.IfIndexOf(t, ns, name) }

func labNamespace(t *testing.T, wan, lan string, neigh map[string]string) string {
	t.Helper()
	return peers.LabNamespace(t, wan, lan, neigh)
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

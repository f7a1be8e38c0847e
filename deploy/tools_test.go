// Package deploy holds flowhouse's deployment files (the systemd unit, the
// cluster compose variant and its ClickHouse configuration) and the tests
// that check them, with the Dockerfile and docker-compose.yml at the root,
// against flowhouse's configuration and against real tools
// (docker-compose, systemd-analyze).
package deploy

import (
	"errors"
	"os"
	"testing"

	"github.com/flowhouse/flowhouse/internal/peers"
)

// requireTool returns the path of a tool the test runs. A missing tool
// skips the test with the install hint, except under CI=true, where it
// fails: CI installs it (scripts/deps.sh), and a skip there would pass
// the check silently.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := peers.Binary(name)
	if errors.Is(err, peers.ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

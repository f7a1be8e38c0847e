package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/internal/peers"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

// README's nftables example of balancing exporters over collectors by
// source address is a ruleset the kernel takes: nft checks it (-c) in a
// network namespace of the test's own, and refuses it with a mistake.
func TestNftablesBalancerExample(t *testing.T) {
	nft := requireTool(t, "nft")
	if os.Geteuid() != 0 {
		t.Skip("nft checks a ruleset against the kernel in a network namespace, which needs root (CI runs as root)")
	}
	ruleset := testkit.READMEBlock(t, "Or with nftables", "")
	if !strings.Contains(ruleset, "jhash ip saddr") {
		t.Fatalf("README's nftables example does not hash the source address:\n%s", ruleset)
	}
	ns := peers.NewNetns(t)
	for _, tc := range []struct {
		name    string
		ruleset string
		ok      bool
	}{
		{"as in README", ruleset, true},
		{"a mistake", strings.Replace(ruleset, "jhash", "jhashx", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "flowhouse.nft")
			if err := os.WriteFile(file, []byte(tc.ruleset), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("ip", "netns", "exec", ns, nft, "-c", "-f", file).CombinedOutput()
			if (err == nil) != tc.ok {
				t.Errorf("nft -c: %v, want accepted %v\n%s", err, tc.ok, out)
			}
		})
	}
}

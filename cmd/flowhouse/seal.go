package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/flowhouse/flowhouse/config"
	"github.com/flowhouse/flowhouse/secret"
)

// maxSealInput bounds what seal reads: a secret, not a file's worth.
const maxSealInput = 1 << 16

// runSeal prints a new key (seal -genkey), or seals stdin with the key of
// enrich.secrets. The configuration is loaded without opening its
// secrets, so that values sealed with an old key do not stop sealing with
// a new one.
func runSeal(configPath string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "-genkey" {
		key, err := secret.GenerateKey()
		if err != nil {
			fmt.Fprintln(stderr, "flowhouse seal:", err)
			return 1
		}
		fmt.Fprintln(stdout, key)
		return 0
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "flowhouse seal: unexpected arguments %q\n", args)
		return 2
	}
	cfg, err := config.LoadUnopened(configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	plain, err := io.ReadAll(io.LimitReader(stdin, maxSealInput))
	if err != nil {
		fmt.Fprintln(stderr, "flowhouse seal:", err)
		return 1
	}
	sealed, err := secret.SealWithConfig(cfg.Enrich.Secrets, strings.TrimRight(string(plain), "\r\n"))
	if err != nil {
		fmt.Fprintln(stderr, "flowhouse seal:", err)
		return 1
	}
	fmt.Fprintln(stdout, sealed)
	return 0
}

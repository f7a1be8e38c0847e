// Command flowhouse collects NetFlow, IPFIX and sFlow and stores the flows
// in ClickHouse.
//
//	flowhouse serve         run the collector, the store and the HTTP server
//	flowhouse migrate       apply pending schema migrations and exit
//	flowhouse check-config  check the configuration, open every secret, and
//	                        print it with secrets redacted
//	flowhouse seal          seal a secret for the configuration
//	flowhouse query SQL     run a read-only query and print the result
//	flowhouse token ...     create, list and revoke API tokens
//	flowhouse health        probe /readyz of a serving flowhouse (exit 0/1)
//	flowhouse version       print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/flowhouse/flowhouse/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: flowhouse [--config FILE] COMMAND

Commands:
  serve         collect flows and store them (until SIGTERM or SIGINT)
  migrate       apply pending schema migrations and exit
  check-config  validate the configuration, open every secret (enc: values,
                _file keys) and print it, secrets redacted
  query SQL     run a read-only query on the configured database and print
                the result (-format table|tsv|csv|json; query -h for more)
  token create|list|revoke
                API tokens: create prints the secret once (token -h for more)
  seal          read a secret on standard input and print it sealed as enc:...
                for any secret of the configuration (key from
                enrich.secrets); seal -genkey prints a new random key
  health [-url URL]
                GET /readyz of the serving process (default: http.listen);
                exit 0 when ready, 1 when not (for HEALTHCHECK and probes)
  version       print the version

The configuration is one YAML file (--config, default ./flowhouse.yaml if it
exists) plus FLOWHOUSE_<SECTION>_<KEY> environment variables; see README.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flowhouse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return 2
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "flowhouse", buildVersion())
		return 0
	case "query":
		return runQuery(*configPath, rest, os.Stdin, stdout, stderr)
	case "seal":
		return runSeal(*configPath, rest, os.Stdin, stdout, stderr)
	case "token":
		return runToken(*configPath, rest, stdout, stderr)
	case "health":
		return runHealth(*configPath, rest, stdout, stderr)
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "flowhouse %s: unexpected arguments %q\n", cmd, rest)
		return 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	switch cmd {
	case "check-config":
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		if err := checkRules(ctx, cfg, stderr); err != nil {
			fmt.Fprintln(stderr, "flowhouse check-config:", err)
			return 2
		}
		out, err := cfg.YAML()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		stdout.Write(out)
		return 0
	case "migrate":
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		if err := migrate(ctx, cfg, stdout); err != nil {
			fmt.Fprintln(stderr, "flowhouse migrate:", err)
			return 1
		}
		return 0
	case "serve":
		if err := serve(cfg, stderr); err != nil {
			fmt.Fprintln(stderr, "flowhouse serve:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "flowhouse: unknown command %q\n\n", cmd)
	fs.Usage()
	return 2
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return version
}

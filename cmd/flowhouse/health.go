package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/config"
)

// healthTimeout bounds one probe: Docker's HEALTHCHECK and systemd expect
// an answer within seconds, and /readyz bounds its own checks by
// http.readiness_timeout (2 s by default).
const healthTimeout = 5 * time.Second

// runHealth is `flowhouse health [-url URL]`: GET /readyz of the serving
// process and exit 0 when it answers 200, 1 otherwise. It exists so that
// an image without a shell or curl (distroless) can have a HEALTHCHECK.
// Without -url the address is http.listen of the configuration, reached on
// loopback when it listens on every address.
func runHealth(configPath string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flowhouse health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "", "URL to probe (default: /readyz of http.listen)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	u := *target
	if u == "" {
		cfg, err := config.Load(configPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		u = readyzURL(cfg.HTTP.Listen, cfg.HTTP.TLSCertFile != "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	if err := probe(ctx, u); err != nil {
		fmt.Fprintln(stderr, "flowhouse health:", err)
		return 1
	}
	fmt.Fprintln(stdout, "ok", u)
	return 0
}

// readyzURL is /readyz of the server listening on listen.
func readyzURL(listen string, https bool) string {
	u := endpointURL(listen) + "readyz"
	if https {
		u = "https://" + strings.TrimPrefix(u, "http://")
	}
	return u
}

// probe fails unless GET u answers 200 before ctx ends.
func probe(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", u, err)
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy:       nil, // our own process: never through HTTP_PROXY
		DialContext: (&net.Dialer{}).DialContext,
		// The certificate names the host clients use, not the loopback
		// address the probe dials; what is checked is readiness, not
		// the certificate.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
	}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

package deploy

import (
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/flowhouse/flowhouse/config"
)

// loadEnv loads env (FLOWHOUSE_* only) with config.LoadEnviron, as
// flowhouse would at start with no config file: an unknown variable or a
// bad value fails the test, naming where env comes from.
func loadEnv(t *testing.T, where string, env map[string]string) *config.Config {
	t.Helper()
	var environ []string
	for name, value := range env {
		if strings.HasPrefix(name, config.EnvPrefix) {
			environ = append(environ, name+"="+value)
		}
	}
	sort.Strings(environ)
	cfg, err := config.LoadEnviron("", environ)
	if err != nil {
		t.Fatalf("%s: flowhouse would not start with %q: %v", where, environ, err)
	}
	return cfg
}

// port is the port of a host:port address.
func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: port: %v", addr, err)
	}
	return n
}

// listenPorts are the container ports flowhouse listens on with cfg:
// "2055/udp" for each collector listener, "8080/tcp" for http.listen.
func listenPorts(t *testing.T, cfg *config.Config) []string {
	t.Helper()
	var out []string
	for _, l := range cfg.Collector.Listeners {
		out = append(out, strconv.Itoa(port(t, l))+"/udp")
	}
	out = append(out, strconv.Itoa(port(t, cfg.HTTP.Listen))+"/tcp")
	sort.Strings(out)
	return out
}

// covered reports whether path lies on a volume mounted at one of targets.
func covered(path string, targets []string) bool {
	for _, t := range targets {
		if path == t || strings.HasPrefix(path, strings.TrimSuffix(t, "/")+"/") {
			return true
		}
	}
	return false
}

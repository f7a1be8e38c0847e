package apitest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/api"
	"github.com/flowhouse/flowhouse/internal/receivers"
	"github.com/flowhouse/flowhouse/internal/testkit"
)

func trusting(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
}

// The listener serves HTTPS from the configured files and picks up a
// renewed certificate without a restart; a broken renewal keeps the old
// certificate in use and is counted.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := receivers.SelfSigned(t, dir)
	cfg := api.DefaultConfig()
	cfg.Listen, cfg.TLSCertFile, cfg.TLSKeyFile = "127.0.0.1:0", cert, key
	reg := prometheus.NewRegistry()
	s := api.New(cfg, api.Deps{Gatherer: reg})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	url := "https://" + s.Addr() + "/healthz"

	first := trusting(t, cert)
	if resp, err := first.Get(url); err != nil {
		t.Fatalf("HTTPS with the first certificate: %v", err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS listener: %d, want Go's 400 for HTTP to an HTTPS server", resp.StatusCode)
		}
	}

	// Renew: a new certificate written over the files.
	newCert, newKey := receivers.SelfSigned(t, t.TempDir())
	copyFile(t, newKey, key)
	copyFile(t, newCert, cert)
	second := trusting(t, newCert)
	testkit.Eventually(t, "the renewed certificate in use", 10*time.Second, func() bool {
		resp, err := second.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

	// A broken renewal: the server goes on with the last good certificate.
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the broken renewal counted", 10*time.Second, func() bool {
		resp, err := second.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && counterValue(t, reg, "flowhouse_http_tls_reload_errors_total") == 1
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(to), ".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A later mtime than the original's, even on coarse clocks.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(tmp, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

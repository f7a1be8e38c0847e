package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// deliveryError is a failed attempt: its metric reason, whether another
// attempt could succeed, and how long the server asked to wait.
type deliveryError struct {
	reason     string
	permanent  bool
	retryAfter time.Duration
	err        error
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

// classify finds the reason of a failed attempt: a deliveryError made by
// the sender, else by the error's type. Timeouts and network errors are
// retried; TLS handshake and certificate errors are not (they are
// configuration to fix, and retrying only repeats them).
func classify(err error) *deliveryError {
	var de *deliveryError
	if errors.As(err, &de) {
		return de
	}
	var (
		netErr   net.Error
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		alertErr tls.AlertError
		recErr   tls.RecordHeaderError
		tpErr    *textproto.Error
	)
	switch {
	case errors.As(err, &tpErr):
		// A mail server's reply: 4xx is transient, 5xx is not.
		return &deliveryError{reason: ReasonSMTP, permanent: tpErr.Code >= 500, err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return &deliveryError{reason: ReasonTimeout, err: err}
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &alertErr), errors.As(err, &recErr):
		return &deliveryError{reason: ReasonTLS, permanent: true, err: err}
	}
	return &deliveryError{reason: ReasonConnection, err: err}
}

// newHTTPClient makes a client that does not follow redirects: a
// signed request is for the configured URL only, and a redirect is a
// configuration to fix.
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// userAgent of every request.
const userAgent = "flowhouse-notify/1"

// maxErrorBody is how much of a refusal's body is kept for the log.
const maxErrorBody = 256

// postJSON posts body to u and says what the answer means: nil for 2xx,
// else a deliveryError: 5xx, 408 and 429 are retried (429 and 503 with
// their Retry-After), other 4xx and 1xx/3xx are not.
func postJSON(ctx context.Context, client *http.Client, u string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return &deliveryError{reason: ReasonConnection, permanent: true, err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		// The URL (which may hold a token in its query) stays out of the
		// message: the log names the destination.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	e := &deliveryError{err: fmt.Errorf("HTTP %d: %s", code, printable(snippet))}
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		e.reason = ReasonHTTP4xx
		e.retryAfter = retryAfter(resp.Header.Get("Retry-After"))
	case code >= 400 && code < 500:
		e.reason, e.permanent = ReasonHTTP4xx, true
	case code >= 500:
		e.reason = ReasonHTTP5xx
		e.retryAfter = retryAfter(resp.Header.Get("Retry-After"))
	default:
		e.reason, e.permanent = ReasonHTTPOther, true
		if loc := resp.Header.Get("Location"); loc != "" {
			e.err = fmt.Errorf("HTTP %d to %s: redirects are not followed; configure the final URL", code, logURL(loc))
		}
	}
	return e
}

// retryAfter reads a Retry-After of seconds; dates and nonsense are 0.
func retryAfter(v string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(min(s, 3600)) * time.Second
}

// printable is text fit for one log line.
func printable(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(bytes.ToValidUTF8(b, []byte("?"))))
	return strings.TrimSpace(s)
}

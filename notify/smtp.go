package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/loopback"
)

// smtpSender sends mail through one server with net/smtp.
type smtpSender struct {
	cfg      SMTPConfig
	host     string
	from     *mail.Address
	to       []*mail.Address
	hello    string
	tlsMode  string
	tls      *tls.Config // set by load
	domain   string      // of From, for Message-ID
	password string
}

func newSMTPSender(c SMTPConfig) (*smtpSender, error) {
	host, _, err := net.SplitHostPort(c.Smarthost)
	if err != nil {
		return nil, fmt.Errorf("smtp.smarthost: %w", err)
	}
	s := &smtpSender{cfg: c, host: host, hello: c.Hello, tlsMode: c.TLS, password: c.Password}
	if s.hello == "" {
		s.hello = "localhost"
	}
	if s.tlsMode == "" {
		s.tlsMode = TLSStartTLS
	}
	if c.Username != "" && c.Password == "" {
		return nil, errors.New("smtp.password is empty (password_file is read by config.Load)")
	}
	if s.from, err = mail.ParseAddress(c.From); err != nil {
		return nil, fmt.Errorf("smtp.from: %w", err)
	}
	for _, to := range c.To {
		a, err := mail.ParseAddress(to)
		if err != nil {
			return nil, fmt.Errorf("smtp.to: %w", err)
		}
		s.to = append(s.to, a)
	}
	s.domain = "flowhouse.invalid"
	if _, d, ok := strings.Cut(s.from.Address, "@"); ok && d != "" {
		s.domain = d
	}
	return s, nil
}

// load reads the CA file, at Start.
func (s *smtpSender) load() error {
	name := s.cfg.ServerName
	if name == "" {
		name = s.host
	}
	cfg := &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
	if s.cfg.CAFile != "" {
		pem, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return fmt.Errorf("smtp.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("smtp.ca_file: %s holds no PEM certificate", s.cfg.CAFile)
		}
		cfg.RootCAs = pool
	}
	s.tls = cfg
	return nil
}

// send delivers one message: connect (TLS from the start for smtps),
// EHLO, STARTTLS (required unless tls is none), AUTH, MAIL, RCPT, DATA.
// The whole session is bounded by ctx.
func (s *smtpSender) send(ctx context.Context, msg []byte) (err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Smarthost)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	secure := false
	if s.tlsMode == TLSImplicit {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn, secure = tc, true
	}
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		conn.Close()
		return err
	}
	defer func() {
		if err != nil {
			// Say goodbye on a refusal too, so the server does not wait
			// for a client that left; the deadline bounds it.
			_ = c.Quit()
		}
		c.Close()
	}()
	if err := c.Hello(s.hello); err != nil {
		return err
	}
	if s.tlsMode == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return &deliveryError{reason: ReasonTLS, permanent: true,
				err: errors.New("the server does not offer STARTTLS, which smtp.tls starttls requires")}
		}
		if err := c.StartTLS(s.tls); err != nil {
			return err
		}
		secure = true
	}
	if s.cfg.Username != "" {
		if !secure && !loopback.Host(s.host) {
			return &deliveryError{reason: ReasonTLS, permanent: true, err: errors.New("AUTH refused without TLS")}
		}
		ok, mechs := c.Extension("AUTH")
		if !ok {
			return &deliveryError{reason: ReasonSMTP, permanent: true, err: errors.New("the server does not offer AUTH, but smtp.username is set")}
		}
		mech, err := s.mechanism(strings.Fields(strings.ToUpper(mechs)))
		if err != nil {
			return err
		}
		if err := c.Auth(mech); err != nil {
			return err
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return err
	}
	for _, to := range s.to {
		if err := c.Rcpt(to.Address); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// The message is accepted: a failing QUIT loses nothing.
	_ = c.Quit()
	return nil
}

func (s *smtpSender) mechanism(offered []string) (smtp.Auth, error) {
	want := strings.ToUpper(s.cfg.Auth)
	for _, m := range []string{"PLAIN", "LOGIN"} {
		if (want == "" || want == m) && slices.Contains(offered, m) {
			if m == "PLAIN" {
				return &plainAuth{user: s.cfg.Username, pass: s.password}, nil
			}
			return &loginAuth{user: s.cfg.Username, pass: s.password}, nil
		}
	}
	return nil, &deliveryError{reason: ReasonSMTP, permanent: true,
		err: fmt.Errorf("the server offers AUTH %s, not %s", strings.Join(offered, " "), orDefault(want, "PLAIN or LOGIN"))}
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// plainAuth is AUTH PLAIN (RFC 4616). net/smtp's PlainAuth would do,
// but it checks the server name against the host it was made for; the
// sender itself checks that the connection is TLS (or loopback).
type plainAuth struct{ user, pass string }

func (a *plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a *plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, &deliveryError{reason: ReasonSMTP, permanent: true, err: errors.New("unexpected server challenge after AUTH PLAIN")}
	}
	return nil, nil
}

// loginAuth is AUTH LOGIN (draft-murchison-sasl-login): the server asks
// for the user name, then the password. Servers word the prompts
// differently ("Username:", aiosmtpd's "User Name\x00"), so the answers
// go by order, as most clients do.
type loginAuth struct {
	user, pass string
	step       int
}

func (a *loginAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(challenge []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch a.step {
	case 1:
		return []byte(a.user), nil
	case 2:
		return []byte(a.pass), nil
	}
	return nil, &deliveryError{reason: ReasonSMTP, permanent: true,
		err: fmt.Errorf("unexpected third AUTH LOGIN challenge %q", printable(challenge))}
}

// message composes the mail of one notification: headers, then a
// quoted-printable UTF-8 plain-text body.
func (s *smtpSender) message(x *notification, externalURL, id string) []byte {
	var b bytes.Buffer
	header := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString("\r\n")
	}
	tos := make([]string, len(s.to))
	for i, a := range s.to {
		tos[i] = a.String()
	}
	header("Date", x.created.Format(time.RFC1123Z))
	header("From", s.from.String())
	header("To", strings.Join(tos, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(subject(x), 200)))
	header("Message-ID", "<"+id+"."+fmt.Sprint(x.created.UnixNano())+"@"+s.domain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	header("X-Flowhouse-Tenant", mime.QEncoding.Encode("utf-8", oneLine(x.tenant, 200)))
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	// In text mode the writer ends lines with CRLF itself.
	_, _ = qp.Write([]byte(body(x, externalURL)))
	_ = qp.Close()
	return b.Bytes()
}

// subject: "[FIRING:2] critical: HighTraffic (tenant acme)".
func subject(x *notification) string {
	n := 0
	top := SeverityInfo
	for _, a := range x.alerts {
		if a.Status == x.status {
			n++
		}
		if a.Severity.rank() > top.rank() {
			top = a.Severity
		}
	}
	return fmt.Sprintf("[%s:%d] %s: %s (tenant %s)", strings.ToUpper(string(x.status)), n, top, rules(x), x.tenant)
}

// rules names the group's rule, or its first rules.
func rules(x *notification) string {
	if r, ok := x.groupLabels[LabelAlertname]; ok {
		return r
	}
	set := map[string]bool{}
	for _, a := range x.alerts {
		set[a.Rule] = true
	}
	names := slices.Sorted(maps.Keys(set))
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return strings.Join(names, ", ")
}

func body(x *notification, externalURL string) string {
	var b strings.Builder
	firing := 0
	for _, a := range x.alerts {
		if a.Status == StatusFiring {
			firing++
		}
	}
	fmt.Fprintf(&b, "%d firing, %d resolved: %s, tenant %s.\n", firing, len(x.alerts)-firing, rules(x), x.tenant)
	for _, a := range x.alerts {
		b.WriteString("\n")
		fmt.Fprintf(&b, "[%s] %s %s\n", strings.ToUpper(string(a.Status)), a.Severity, a.Rule)
		if v := a.Annotations[AnnotationSummary]; v != "" {
			fmt.Fprintf(&b, "Summary: %s\n", v)
		}
		if v := a.Annotations[AnnotationDescription]; v != "" {
			fmt.Fprintf(&b, "Description: %s\n", v)
		}
		fmt.Fprintf(&b, "Started: %s\n", a.StartsAt.UTC().Format(time.RFC3339))
		if a.Status == StatusResolved {
			fmt.Fprintf(&b, "Ended: %s\n", a.EndsAt.UTC().Format(time.RFC3339))
		}
		b.WriteString("Labels:\n")
		ls := a.LabelSet()
		for _, k := range slices.Sorted(maps.Keys(ls)) {
			fmt.Fprintf(&b, "  %s = %s\n", k, ls[k])
		}
		for _, k := range slices.Sorted(maps.Keys(a.Annotations)) {
			if k != AnnotationSummary && k != AnnotationDescription {
				fmt.Fprintf(&b, "Annotation %s: %s\n", k, a.Annotations[k])
			}
		}
		if a.GeneratorURL != "" {
			fmt.Fprintf(&b, "Source: %s\n", a.GeneratorURL)
		}
		fmt.Fprintf(&b, "Fingerprint: %s\n", a.Fingerprint)
	}
	b.WriteString("\n-- \n")
	if externalURL != "" {
		fmt.Fprintf(&b, "flowhouse: %s\n", externalURL)
	}
	fmt.Fprintf(&b, "Group: %s\n", x.groupKey)
	return b.String()
}

// oneLine makes s fit a header: no line breaks or control characters,
// at most limit runes.
func oneLine(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit-1]) + "…"
	}
	return s
}

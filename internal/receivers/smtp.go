package receivers

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Python3 is Debian's: a pyenv or venv python3 earlier on PATH lacks the
// Debian module.
const Python3 = "/usr/bin/python3"

//go:embed smtp_server.py
var smtpServerScript []byte

// SMTP is aiosmtpd (smtp_server.py) on a free loopback port; it appends
// a JSON line per AUTH attempt and per message.
type SMTP struct {
	Addr   string
	CAFile string // the server's self-signed certificate
	out    string
}

// SMTPRecord is an AUTH attempt (Auth set) or a message.
type SMTPRecord struct {
	Auth      string   `json:"auth"`
	OK        bool     `json:"ok"`
	From      string   `json:"from"`
	To        []string `json:"to"`
	TLS       bool     `json:"tls"`
	User      string   `json:"user"`
	Mechanism string   `json:"mechanism"`
	Data      string   `json:"data"`
}

// StartSMTP runs the server in mode starttls (STARTTLS then AUTH
// required), smtps (implicit TLS, AUTH required) or plain (neither),
// accepting user and password.
func StartSMTP(t *testing.T, mode, user, password string) *SMTP {
	t.Helper()
	RequireBinary(t, Python3, "python3")
	if out, err := exec.Command(Python3, "-c", "import aiosmtpd").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import aiosmtpd: install Debian's python3-aiosmtpd (run scripts/deps.sh as root): %v: %s", Python3, err, out)
	}
	dir := t.TempDir()
	cert, key := SelfSigned(t, dir)
	s := &SMTP{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), out: filepath.Join(dir, "mail.jsonl"), CAFile: cert}
	script := filepath.Join(dir, "smtp_server.py")
	if err := os.WriteFile(script, smtpServerScript, 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(s.Addr, ":")
	d := StartDaemon(t, "aiosmtpd "+mode+" "+s.Addr, Python3, script, mode, port, user, password, cert, key, s.out,
		strconv.Itoa(int(Lifetime.Seconds())))
	d.WaitDial(t, s.Addr)
	return s
}

// Records are the AUTH attempts and the messages received so far.
func (s *SMTP) Records(t testing.TB) (auths, messages []SMTPRecord) {
	t.Helper()
	f, err := os.Open(s.out)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r SMTPRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // a line being written
		}
		if r.Auth != "" {
			auths = append(auths, r)
		} else {
			messages = append(messages, r)
		}
	}
	return auths, messages
}

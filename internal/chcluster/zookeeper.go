package chcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/internal/chtest"
	"github.com/flowhouse/flowhouse/internal/peers"
)

// zkServerScript is Debian's; a variable so a test can pretend it is missing.
var zkServerScript = "/usr/share/zookeeper/bin/zkServer.sh"

// errZooKeeperExited: ZooKeeper exited before it answered, most often
// because its client port was taken meanwhile.
var errZooKeeperExited = errors.New("zookeeper exited during startup")

// The admin server is off and the JMX port too (JMXDISABLE below): both
// would listen on all addresses. srvr is what the readiness check uses.
const zooCfg = `tickTime=2000
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
maxClientCnxns=0
`

type zooKeeper struct {
	proc *chtest.Process
	addr string
	dir  string
}

// zooKeeperInstalled reports what is missing to run ZooKeeper.
func zooKeeperInstalled() error {
	if _, err := os.Stat(zkServerScript); err != nil {
		return fmt.Errorf("chcluster: zookeeper (%s) %w", zkServerScript, peers.ErrNotInstalled)
	}
	if _, err := exec.LookPath("java"); err != nil {
		return fmt.Errorf("chcluster: java for zookeeper %w", peers.ErrNotInstalled)
	}
	return nil
}

// startZooKeeper runs a standalone ZooKeeper in dir and waits until it
// serves. start-foreground execs java, so the process is java.
func startZooKeeper(ctx context.Context, dir string, port int, timeout, lifetime time.Duration) (*zooKeeper, error) {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("chcluster: zookeeper dir: %w", err)
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, zooCfg, filepath.Join(dir, "data"), port), 0o644); err != nil {
		return nil, fmt.Errorf("chcluster: write zoo.cfg: %w", err)
	}
	out, err := os.Create(filepath.Join(dir, "zk.out"))
	if err != nil {
		return nil, fmt.Errorf("chcluster: %w", err)
	}
	proc, err := chtest.StartProcess(chtest.Command{
		// Debian's zkEnv.sh fixes ZOOCFGDIR: the config goes as an argument.
		Argv: []string{zkServerScript, "start-foreground", cfg},
		Dir:  dir,
		// A small heap and the serial collector: test data is a few znodes,
		// and the machine runs the ClickHouse nodes beside it.
		Env:         []string{"JMXDISABLE=true", "SERVER_JVMFLAGS=-Xmx128m -XX:+UseSerialGC"},
		Out:         out,
		MaxLifetime: lifetime,
	})
	if err != nil {
		out.Close()
		return nil, err
	}
	zk := &zooKeeper{proc: proc, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	if err := zk.waitReady(ctx, timeout); err != nil {
		zk.proc.Kill()
		return nil, err
	}
	return zk, nil
}

func (zk *zooKeeper) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		// Not "ruok": it answers "imok" as soon as the port listens, before
		// the server takes sessions (ClickHouse's handshakes then got EOF).
		// "srvr" reports the mode only once the server is up.
		if lastErr = fourLetterWord(zk.addr, "srvr", "Mode: standalone"); lastErr == nil {
			return nil
		}
		select {
		case <-zk.proc.Exited():
			out, _ := os.ReadFile(filepath.Join(zk.dir, "zk.out"))
			return fmt.Errorf("chcluster: %w (%v): %s", errZooKeeperExited, zk.proc.Err(), tail(out))
		case <-ctx.Done():
			return fmt.Errorf("chcluster: zookeeper at %s did not answer within %s: %v", zk.addr, timeout, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fourLetterWord sends word and wants an answer containing want.
func fourLetterWord(addr, word, want string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, word); err != nil {
		return err
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !strings.Contains(string(got), want) {
		return fmt.Errorf("%s answered %q, want %q", word, got, want)
	}
	return nil
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

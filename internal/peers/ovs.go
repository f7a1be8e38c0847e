package peers

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// OVSConfig is the IPFIX exporter of the bridge StartOVS makes.
type OVSConfig struct {
	Target netip.AddrPort // where IPFIX goes: a loopback address
	// ActiveTimeout is the flow cache's cache_active_timeout in seconds:
	// a flow is reported this long after its first packet, then again
	// for the packets after (default 1).
	ActiveTimeout     int
	ObservationDomain uint32
}

// OVS is an Open vSwitch that runs without the kernel module, as OVS's
// own test suite runs it: ovsdb-server with a database of its own and
// ovs-vswitchd with the dummy datapath, both in a temporary directory
// (nothing touches the system's /var/run/openvswitch). Its bridge br0 has
// two dummy ports, p1 forwarding to p2, and exports IPFIX for every packet
// (sampling 1) at input and at output. Receive injects a packet into p1.
type OVS struct {
	dir    string
	env    []string
	procs  []*exec.Cmd
	stops  []context.CancelFunc
	appctl string
}

// StartOVS starts ovsdb-server and ovs-vswitchd and configures the bridge;
// it returns once ovs-vswitchd applied the configuration. Both processes
// are stopped at the end of the test (t.Cleanup), or when StartOVS fails.
// Call it from the test goroutine.
func StartOVS(ctx context.Context, t testing.TB, cfg OVSConfig) (*OVS, error) {
	t.Helper()
	for _, b := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"} {
		if _, err := Binary(b); err != nil {
			return nil, err
		}
	}
	if err := checkTarget(cfg.Target); err != nil {
		return nil, err
	}
	if cfg.ActiveTimeout <= 0 {
		cfg.ActiveTimeout = 1
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	dir := t.TempDir()
	o := &OVS{dir: dir, appctl: filepath.Join(dir, "ovs-vswitchd.ctl")}
	o.env = append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_DBDIR="+dir, "OVS_LOGDIR="+dir, "OVS_SYSCONFDIR="+dir)
	t.Cleanup(o.stop)
	if err := o.start(ctx, t, cfg); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

func (o *OVS) start(ctx context.Context, t testing.TB, cfg OVSConfig) error {
	db, sock := filepath.Join(o.dir, "conf.db"), filepath.Join(o.dir, "db.sock")
	if _, err := o.run(ctx, "ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema"); err != nil {
		return err
	}
	if err := o.spawn(t, "ovsdb-server", "--no-chdir", "--log-file="+filepath.Join(o.dir, "ovsdb-server.log"),
		"--remote=punix:"+sock, "--unixctl="+filepath.Join(o.dir, "ovsdb-server.ctl"), db); err != nil {
		return err
	}
	if err := waitFor(ctx, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		return fmt.Errorf("peers: ovsdb-server made no socket: %w", err)
	}
	vsctl := []string{"--db=unix:" + sock, "--timeout=30"}
	if _, err := o.run(ctx, "ovs-vsctl", append(vsctl, "--no-wait", "init")...); err != nil {
		return err
	}
	if err := o.spawn(t, "ovs-vswitchd", "--enable-dummy=override", "--disable-system", "--disable-system-route",
		"--no-chdir", "--log-file="+filepath.Join(o.dir, "ovs-vswitchd.log"), "--unixctl="+o.appctl, "unix:"+sock); err != nil {
		return err
	}
	// Without --no-wait, ovs-vsctl returns once ovs-vswitchd applied it.
	if _, err := o.run(ctx, "ovs-vsctl", append(vsctl,
		"add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=dummy", "fail-mode=secure",
		"--", "add-port", "br0", "p1", "--", "set", "Interface", "p1", "type=dummy", "ofport_request=1",
		"--", "add-port", "br0", "p2", "--", "set", "Interface", "p2", "type=dummy", "ofport_request=2")...); err != nil {
		return err
	}
	if _, err := o.run(ctx, "ovs-ofctl", "add-flow", "unix:"+filepath.Join(o.dir, "br0.mgmt"), "in_port=1,actions=output:2"); err != nil {
		return err
	}
	_, err := o.run(ctx, "ovs-vsctl", append(vsctl, "--", "set", "Bridge", "br0", "ipfix=@i",
		"--", "--id=@i", "create", "IPFIX", fmt.Sprintf("targets=%q", cfg.Target.String()), "sampling=1",
		"obs_domain_id="+strconv.FormatUint(uint64(cfg.ObservationDomain), 10),
		"cache_active_timeout="+strconv.Itoa(cfg.ActiveTimeout), "cache_max_flows=1024")...)
	return err
}

// Receive injects one frame of frameLen bytes into p1, described as an
// ODP flow without in_port, e.g.
// "eth(src=...,dst=...),eth_type(0x0800),ipv4(src=...,dst=...,proto=6,tos=0,ttl=64,frag=no),tcp(src=1,dst=2)".
// OVS counts the frame's octets less its 14-byte Ethernet header.
func (o *OVS) Receive(ctx context.Context, odpFlow string, frameLen int) error {
	_, err := o.run(ctx, "ovs-appctl", "-t", o.appctl, "netdev-dummy/receive", "p1", "in_port(1),"+odpFlow, "--len", strconv.Itoa(frameLen))
	return err
}

// run runs an OVS command line tool to completion.
func (o *OVS) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	bin, err := Binary(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env = o.dir, o.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("peers: %s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out, 4096))
	}
	return out, nil
}

// spawn starts a daemon in the foreground, in a process group of its own,
// its output in DIR/NAME.out.
func (o *OVS) spawn(t testing.TB, name string, args ...string) error {
	bin, err := Binary(name)
	if err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(o.dir, name+".out"))
	if err != nil {
		return err
	}
	defer out.Close()
	// The daemon outlives the context StartOVS was given: it is stopped
	// by cancelling its own, which kills its process group.
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env = o.dir, o.env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)
	t.Logf("peers: starting %s %s", bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		cancel()
		return fmt.Errorf("peers: %s: %w", name, err)
	}
	o.procs, o.stops = append(o.procs, cmd), append(o.stops, cancel)
	return nil
}

// stop kills the daemons, the last started first, and waits for them.
func (o *OVS) stop() {
	for i := len(o.procs) - 1; i >= 0; i-- {
		o.stops[i]()
		_ = o.procs[i].Wait()
	}
	o.procs, o.stops = nil, nil
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

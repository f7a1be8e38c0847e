package main

// FastNetMon CE (Debian's fastnetmon 1.2.4) as a comparison detector: a
// configuration of our own in a temporary directory (NetFlow collector on
// a loopback port, no API, no Prometheus, no usage report, pid, logs and
// statistics files in the directory), a notify script that appends one
// line per call, and the process run under timeout(1), stopped by the pid
// it writes.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// fnmBinary is where Debian's package installs FastNetMon.
const fnmBinary = "/usr/sbin/fastnetmon"

// fastnetmonInstalled is the default of -fastnetmon.
func fastnetmonInstalled() bool {
	_, err := os.Stat(fnmBinary)
	return err == nil
}

// FNMThresholds are the global detection settings of one FastNetMon run.
type FNMThresholds struct {
	PPS         int  `json:"threshold_pps"`
	Mbps        int  `json:"threshold_mbps"`
	Flows       int  `json:"threshold_flows"`
	BanForFlows bool `json:"ban_for_flows"`
}

var (
	// fnmDefaults are the shipped /etc/fastnetmon.conf's.
	fnmDefaults = FNMThresholds{PPS: 20000, Mbps: 1000, Flows: 3500}
	// fnmLowered are low enough for the bench's attacks.
	fnmLowered = FNMThresholds{PPS: 1000, Mbps: 5, Flows: 500, BanForFlows: true}
)

// fnmConfig is a complete fastnetmon.conf: the shipped file's detection
// logic (5 s averages, ban for pps and bandwidth, connection tracking),
// NetFlow only, everything that would listen or phone home turned off.
const fnmConfig = `# written by flowbench
logging_level = info
logging_local_syslog_logging = off
logging_remote_syslog_logging = off
disable_usage_report = on
enable_ban = on
enable_ban_ipv6 = on
process_incoming_traffic = on
process_outgoing_traffic = on
dump_all_traffic = off
dump_other_traffic = off
ban_details_records_count = 20
ban_time = 1900
unban_only_if_attack_finished = on
networks_list_path = {{dir}}/networks_list
white_list_path = {{dir}}/networks_whitelist
check_period = 1
enable_connection_tracking = on
ban_for_pps = on
ban_for_bandwidth = on
ban_for_flows = {{ban_for_flows}}
threshold_pps = {{pps}}
threshold_mbps = {{mbps}}
threshold_flows = {{flows}}
mirror_afpacket = off
mirror_afxdp = off
mirror_netmap = off
pcap = off
sflow = off
netflow = on
netflow_host = 127.0.0.1
netflow_port = {{port}}
netflow_sampling_ratio = 1
average_calculation_time = 5
speed_calculation_delay = 1
notify_script_path = {{dir}}/notify.sh
collect_attack_pcap_dumps = off
redis_enabled = off
mongodb_enabled = off
exabgp = off
gobgp = off
influxdb = off
graphite = off
kafka_traffic_export = off
monitor_local_ip_addresses = off
monitor_openvz_vps_ip_addresses = off
pid_path = {{dir}}/fastnetmon.pid
cli_stats_file_path = {{dir}}/fastnetmon.dat
cli_stats_ipv6_file_path = {{dir}}/fastnetmon_ipv6.dat
enable_api = off
prometheus = on
prometheus_host = 127.0.0.1
prometheus_port = {{metrics_port}}
`

// fnmNotify is the notify script: FastNetMon runs it with IP, direction,
// pps and action (ban, unban, attack_details) and writes the attack's
// description to its standard input, which must be read.
const fnmNotify = `#!/bin/sh
details=$(cat)
type=$(printf '%s\n' "$details" | sed -n 's/^Attack type: //p' | head -n 1)
printf '%s %s %s %s %s %s\n' "$1" "$2" "$3" "$4" "${type:--}" "$(date +%s.%N)" >> '{{dir}}/events'
`

// fnmInstance is one running FastNetMon.
type fnmInstance struct {
	name        string
	dir         string
	port        int
	metricsPort int
	cmd         *exec.Cmd
	done        chan struct{}
}

func fill(tmpl string, vars map[string]string) string {
	for k, v := range vars {
		tmpl = strings.ReplaceAll(tmpl, "{{"+k+"}}", v)
	}
	return tmpl
}

// fnmWriteConfig writes the configuration, the networks list (flowgen's
// inside networks), the empty whitelist and the notify script into dir.
func fnmWriteConfig(dir string, port, metricsPort int, th FNMThresholds) error {
	onOff := map[bool]string{true: "on", false: "off"}
	vars := map[string]string{"dir": dir, "port": strconv.Itoa(port), "metrics_port": strconv.Itoa(metricsPort), "pps": strconv.Itoa(th.PPS),
		"mbps": strconv.Itoa(th.Mbps), "flows": strconv.Itoa(th.Flows), "ban_for_flows": onOff[th.BanForFlows]}
	files := []struct {
		name, text string
		mode       os.FileMode
	}{
		{"fastnetmon.conf", fill(fnmConfig, vars), 0o644},
		{"networks_list", "192.0.2.0/24\n2001:db8:1::/48\n", 0o644},
		{"networks_whitelist", "", 0o644},
		{"notify.sh", fill(fnmNotify, vars), 0o755},
		{"events", "", 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.text), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// fnmStart starts FastNetMon under timeout(1) (it ends by itself after
// limit) and waits for its NetFlow collector to listen.
func fnmStart(name string, th FNMThresholds, limit time.Duration) (*fnmInstance, error) {
	dir, err := os.MkdirTemp("", "flowbench-fastnetmon-")
	if err != nil {
		return nil, err
	}
	f := &fnmInstance{name: name, dir: dir, done: make(chan struct{})}
	if f.port, err = freePort("udp"); err == nil {
		if f.metricsPort, err = freePort("tcp"); err == nil {
			err = fnmWriteConfig(dir, f.port, f.metricsPort, th)
		}
	}
	var out *os.File
	if err == nil {
		out, err = os.Create(filepath.Join(dir, "stdout.log"))
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer out.Close()
	f.cmd = exec.Command("timeout", "-k", "5", strconv.Itoa(int(limit.Seconds())), fnmBinary,
		"--configuration_file", filepath.Join(dir, "fastnetmon.conf"), "--log_file", filepath.Join(dir, "fastnetmon.log"))
	f.cmd.Stdout, f.cmd.Stderr = out, out
	// timeout(1) passes a SIGTERM on to FastNetMon: if flowbench dies.
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := f.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { _ = f.cmd.Wait(); close(f.done) }()
	if err := f.waitListening(10 * time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "fastnetmon.log"))
		f.stop()
		return nil, fmt.Errorf("fastnetmon %s: %w\n%s", name, err, log)
	}
	return f, nil
}

// waitListening waits for the log line of the NetFlow collector.
func (f *fnmInstance) waitListening(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := fmt.Sprintf("listen on 127.0.0.1:%d udp", f.port)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(filepath.Join(f.dir, "fastnetmon.log")); strings.Contains(string(b), want) {
			return nil
		}
		select {
		case <-f.done:
			return errors.New("exited before listening")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("its NetFlow collector did not start listening")
}

func (f *fnmInstance) target() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(f.port))
}

// pid is FastNetMon's pid from its pid file, if that process is the child
// of our timeout(1).
func (f *fnmInstance) pid() int {
	b, err := os.ReadFile(filepath.Join(f.dir, "fastnetmon.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 2 || fields[1] != strconv.Itoa(f.cmd.Process.Pid) {
		return 0
	}
	return pid
}

// stop ends FastNetMon (SIGTERM to the pid it wrote, then SIGKILL) and
// removes its directory.
func (f *fnmInstance) stop() {
	defer os.RemoveAll(f.dir)
	if pid := f.pid(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	} else {
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-f.done:
		return
	case <-time.After(10 * time.Second):
	}
	if pid := f.pid(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = f.cmd.Process.Kill()
	<-f.done
}

// events reads the bans the notify script recorded.
func (f *fnmInstance) events(detector string) []fnmDetection {
	file, err := os.Open(filepath.Join(f.dir, "events"))
	if err != nil {
		return nil
	}
	defer file.Close()
	var out []fnmDetection
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		// ip direction pps action type unix-time
		fl := strings.Fields(sc.Text())
		if len(fl) != 6 || fl[3] != "ban" {
			continue
		}
		secs, err := strconv.ParseFloat(fl[5], 64)
		if err != nil {
			continue
		}
		addr := fl[0]
		if a, err := netip.ParseAddr(addr); err == nil {
			addr = a.String()
		}
		out = append(out, fnmDetection{Detector: detector, Subject: addr, Subjects: []string{addr}, Kind: fl[4],
			At: time.Unix(0, int64(secs*1e9)), Power: fl[2] + " pps " + fl[1]})
	}
	return out
}

// received is the NetFlow v9 and IPFIX flows FastNetMon decoded (its
// Prometheus endpoint, on loopback) and the datagrams the kernel dropped
// at its socket (/proc/net/udp).
func (f *fnmInstance) received() (flows, drops uint64) {
	if m, err := scrape(fmt.Sprintf("127.0.0.1:%d", f.metricsPort)); err == nil {
		flows = uint64(m["fastnetmon_netflow_v9_total_flows"] + m["fastnetmon_ipfix_total_flows"])
	}
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return flows, 0
	}
	local := fmt.Sprintf("0100007F:%04X", f.port)
	for _, line := range strings.Split(string(b), "\n") {
		fl := strings.Fields(line)
		if len(fl) > 12 && fl[1] == local {
			drops, _ = strconv.ParseUint(fl[len(fl)-1], 10, 64)
		}
	}
	return flows, drops
}

// fnmForwarder sends a copy of every datagram flowgen sends to each
// FastNetMon, from a socket of the exporter's own source address (so
// each exporter is a distinct agent there, as it is for flowhouse).
type fnmForwarder struct {
	mu      sync.Mutex
	conns   map[int]*net.UDPConn
	targets []netip.AddrPort
	errors  uint64
	last    error
}

func (w *fnmForwarder) onDatagram(exporter int, src netip.AddrPort, payload []byte, _ time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.conns[exporter]
	if c == nil {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.Addr(), 0)))
		if err != nil {
			w.errors++
			w.last = err
			return
		}
		w.conns[exporter] = c
	}
	for _, t := range w.targets {
		if _, err := c.WriteToUDPAddrPort(payload, t); err != nil {
			w.errors++
			w.last = err
		}
	}
}

func (w *fnmForwarder) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.conns {
		c.Close()
	}
}

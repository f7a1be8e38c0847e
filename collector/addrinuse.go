package collector

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Our sockets use SO_REUSEPORT, so a second collector on the same address
// would bind without error and the kernel would split the exporters'
// datagrams between the two processes: each would store part of every
// exporter's flows and see sequence loss that is not there. Two checks
// refuse that. Before binding, a probe socket without SO_REUSEPORT fails
// on any address someone holds (so we never join another process's
// group). After binding, /proc/net/udp{,6} must show no socket on our
// address but ours, which catches two collectors starting at the same
// moment (both then refuse, rather than both running).

// procNetUDP lists the kernel's UDP sockets of this network namespace.
var procNetUDP = []string{"/proc/net/udp", "/proc/net/udp6"}

// udpUnconnected is the state of a bound, unconnected UDP socket in
// /proc/net/udp (TCP_CLOSE): the sockets that receive from any exporter.
const udpUnconnected = "07"

// udpSocket is one socket of /proc/net/udp or /proc/net/udp6.
type udpSocket struct {
	local netip.AddrPort
	uid   int
	inode uint64
}

// probeFree fails when a socket already holds address. Port 0 is always
// free: the first real socket picks the port.
func probeFree(ctx context.Context, address string) error {
	if _, port, err := net.SplitHostPort(address); err == nil {
		if n, err := strconv.Atoi(port); err == nil && n == 0 {
			return nil
		}
	}
	var lc net.ListenConfig // no SO_REUSEPORT, no SO_REUSEADDR
	pc, err := lc.ListenPacket(ctx, "udp", address)
	if err == nil {
		return pc.Close()
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err // the real bind reports it the same way
	}
	var holders []udpSocket
	if ua, rerr := net.ResolveUDPAddr("udp", address); rerr == nil {
		holders = socketsOn(udpAddrPort(ua), nil)
	}
	return inUseError(holders)
}

// checkAlone fails when a socket that is not one of l's shares its address.
func (l *listener) checkAlone() error {
	if len(l.conns) == 0 {
		return nil
	}
	ours := map[uint64]bool{}
	for _, c := range l.conns {
		if ino, ok := inodeOf(c); ok {
			ours[ino] = true
		}
	}
	if len(ours) != len(l.conns) {
		return nil // cannot tell our sockets from others: do not guess
	}
	local := udpAddrPort(l.conns[0].LocalAddr().(*net.UDPAddr))
	if others := socketsOn(local, ours); len(others) > 0 {
		return inUseError(others)
	}
	return nil
}

func udpAddrPort(ua *net.UDPAddr) netip.AddrPort {
	ap := ua.AddrPort()
	if !ap.Addr().IsValid() {
		// ":2055": Go binds the dual-stack wildcard.
		return netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func inodeOf(c *net.UDPConn) (uint64, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var st syscall.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return 0, false
	}
	return st.Ino, true
}

// socketsOn lists the unconnected UDP sockets whose address overlaps
// target's, on its port, except the inodes in skip. Unreadable /proc
// files give none: the check is best effort where /proc is missing.
func socketsOn(target netip.AddrPort, skip map[uint64]bool) []udpSocket {
	var out []udpSocket
	for _, file := range procNetUDP {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, s := range parseProcNetUDP(data) {
			if s.local.Port() == target.Port() && !skip[s.inode] && overlaps(s.local.Addr(), target.Addr()) {
				out = append(out, s)
			}
		}
	}
	return out
}

// parseProcNetUDP reads the unconnected sockets of a /proc/net/udp{,6}
// table. Addresses are hex words in host byte order, ports big-endian.
func parseProcNetUDP(data []byte) []udpSocket {
	var out []udpSocket
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
		if len(f) < 10 || f[3] != udpUnconnected {
			continue
		}
		local, ok := parseHexAddrPort(f[1])
		uid, uerr := strconv.Atoi(f[7])
		inode, ierr := strconv.ParseUint(f[9], 10, 64)
		if !ok || uerr != nil || ierr != nil {
			continue
		}
		out = append(out, udpSocket{local: local, uid: uid, inode: inode})
	}
	return out
}

func parseHexAddrPort(s string) (netip.AddrPort, bool) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(raw); i += 4 {
		// The kernel prints each 32-bit word as a number in host order.
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), true
}

// overlaps reports whether datagrams to one address could reach a socket
// bound to the other: the same address, or a wildcard covering it (the
// IPv6 wildcard is dual-stack, as Go binds it).
func overlaps(a, b netip.Addr) bool {
	a, b = a.Unmap(), b.Unmap()
	switch {
	case a == b, a == netip.IPv6Unspecified(), b == netip.IPv6Unspecified():
		return true
	case a == netip.IPv4Unspecified():
		return b.Is4()
	case b == netip.IPv4Unspecified():
		return a.Is4()
	}
	return false
}

// inUseError names who holds the address, as far as this user can see.
// The caller's message names the address.
func inUseError(holders []udpSocket) error {
	who := "another socket"
	if len(holders) > 0 {
		who = describeHolder(holders[0])
	}
	return fmt.Errorf("already used by %s; a second collector there would silently get part of every exporter's datagrams: stop the other or listen on another address: %w",
		who, syscall.EADDRINUSE)
}

func describeHolder(s udpSocket) string {
	pid, ok := pidOfSocket(s.inode)
	switch {
	case !ok:
		return fmt.Sprintf("a socket on %s of uid %d, whose process this user cannot see", s.local, s.uid)
	case pid == os.Getpid():
		return fmt.Sprintf("this process (pid %d: another listener or socket, on %s)", pid, s.local)
	}
	return fmt.Sprintf("pid %d (%s) on %s", pid, commandOf(pid), s.local)
}

// pidOfSocket finds a process with the socket open among the processes
// whose descriptors this user may read.
func pidOfSocket(inode uint64) (int, bool) {
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && link == want {
				return pid, true
			}
		}
	}
	return 0, false
}

// commandOf is a process's command line, shortened, for a message.
func commandOf(pid int) string {
	const max = 120
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		if b, err = os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); err != nil {
			return "command unknown"
		}
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

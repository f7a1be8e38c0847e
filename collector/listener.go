package collector

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// listener is one configured address served by several SO_REUSEPORT
// sockets, so the kernel spreads datagrams over several reading goroutines.
type listener struct {
	name          string
	addr          netip.AddrPort
	conns         []*net.UDPConn
	grantedBuffer int
}

// openListener binds the sockets of address. It refuses an address that
// another socket already holds (see addrinuse.go): SO_REUSEPORT would
// otherwise share it without a word.
func openListener(ctx context.Context, address string, sockets, rcvbuf int) (*listener, error) {
	if err := probeFree(ctx, address); err != nil {
		return nil, err
	}
	l := &listener{name: address}
	var sockErr error
	lc := net.ListenConfig{Control: func(network, addr string, rc syscall.RawConn) error {
		err := rc.Control(func(fd uintptr) {
			if sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); sockErr != nil {
				sockErr = fmt.Errorf("SO_REUSEPORT: %w", sockErr)
				return
			}
			if rcvbuf > 0 {
				// SO_RCVBUFFORCE passes net.core.rmem_max when we may
				// (CAP_NET_ADMIN); otherwise the kernel caps SO_RCVBUF.
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
				}
			}
		})
		if err != nil {
			return err
		}
		return sockErr
	}}
	bind := address
	for i := 0; i < sockets; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", bind)
		if err != nil {
			l.close()
			return nil, err
		}
		conn := pc.(*net.UDPConn)
		l.conns = append(l.conns, conn)
		if i == 0 {
			// With port 0 the first socket picks the port; the others join it.
			ap := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			l.addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			host, _, _ := net.SplitHostPort(address)
			bind = net.JoinHostPort(host, strconv.Itoa(int(ap.Port())))
			if raw, err := conn.SyscallConn(); err == nil {
				_ = raw.Control(func(fd uintptr) {
					// The kernel reports twice the usable size it granted.
					v, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
					l.grantedBuffer = v / 2
				})
			}
		}
	}
	if err := l.checkAlone(); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *listener) close() {
	for _, c := range l.conns {
		_ = c.Close()
	}
}

// kernelDrops sums the drops the kernel reports for sockets on our port:
// datagrams lost because the receive buffer was full.
func (l *listener) kernelDrops() (uint64, error) {
	port := fmt.Sprintf(":%04X", l.addr.Port())
	var total uint64
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 13 || !strings.HasSuffix(fields[1], port) {
				continue
			}
			if n, err := strconv.ParseUint(fields[len(fields)-1], 10, 64); err == nil {
				total += n
			}
		}
		f.Close()
	}
	return total, nil
}

// batchReader reads many datagrams per system call (recvmmsg).
type batchReader struct {
	pc   *ipv4.PacketConn
	msgs []ipv4.Message
}

func newBatchReader(conn *net.UDPConn, n int) *batchReader {
	r := &batchReader{pc: ipv4.NewPacketConn(conn), msgs: make([]ipv4.Message, n)}
	for i := range r.msgs {
		r.msgs[i].Buffers = [][]byte{make([]byte, maxDatagram)}
	}
	return r
}

func (r *batchReader) read() (int, error) {
	return r.pc.ReadBatch(r.msgs, 0)
}

func (r *batchReader) message(i int) ([]byte, netip.AddrPort) {
	m := &r.msgs[i]
	var src netip.AddrPort
	if ua, ok := m.Addr.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		src = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return m.Buffers[0][:m.N], src
}

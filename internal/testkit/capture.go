package testkit

import (
	"testing"

	"github.com/flowhouse/flowhouse/internal/pcapfile"
)

// Datagram is one UDP datagram of a capture.
type Datagram = pcapfile.Datagram

// ReadCapture reads the UDP datagrams of a capture file with
// pcapfile.Read, failing tb on an error.
func ReadCapture(tb testing.TB, path string) []Datagram {
	tb.Helper()
	ds, err := pcapfile.Read(path)
	if err != nil {
		tb.Fatalf("read capture %s: %v", path, err)
	}
	return ds
}

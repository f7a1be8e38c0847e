// Package loopback tells whether a host or listen address stays on this
// machine: the one test that config checks of listeners and of plain-text
// connections share (an empty host listens on every interface, so it is
// not loopback).
package loopback

import (
	"net"
	"strconv"
)

// Host is localhost or a loopback IP.
func Host(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr is host:port with a loopback host and a valid port.
func Addr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return false
	}
	return Host(host)
}

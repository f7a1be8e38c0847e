package collector

import "github.com/flowhouse/flowhouse/flow"

// Sink receives the flows decoded from one datagram, in order, from the
// worker that owns the datagram's exporter. The slice and its elements are
// reused once Write returns: a Sink copies what it keeps.
type Sink interface {
	Write(flows []flow.Flow)
}

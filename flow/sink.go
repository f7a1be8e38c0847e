package flow

// Sink receives the flows decoded from one datagram, in order, from the
// collector worker that owns the datagram's exporter; enrichment is one
// and hands them on to the next (the store's batcher). The slice and its
// elements are reused once Write returns: a Sink copies what it keeps.
type Sink interface {
	Write(flows []Flow)
}

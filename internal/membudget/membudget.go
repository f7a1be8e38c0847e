// Package membudget turns flowhouse's one memory budget (memory.limit)
// into the bounds its parts work under: the Go runtime's soft memory
// limit, the bytes of flow batches the store may hold while the database
// is slow, and a check that the collector's datagram queues fit.
//
// The budget covers the memory Go manages. The embedded engine's own
// memory (ClickHouse's allocator in the same process) is outside it and
// bounded by its query limits (clickhouse.embedded.query_max_memory_bytes).
package membudget

import "fmt"

// Config is the memory section.
type Config struct {
	// Limit is the bytes flowhouse's Go memory may take: the heap's soft
	// limit (GOMEMLIMIT, unless that variable is set), and what the
	// queues are sized from (see Plan).
	Limit int64 `mapstructure:"limit" yaml:"limit"`
}

// DefaultConfig is 384 MiB: half of it for flow batches (about 18
// batches of 50 000 flows), which absorbs a database that stalls for
// several seconds at 350k flows/s.
func DefaultConfig() Config { return Config{Limit: 384 << 20} }

// MinLimit is the smallest budget accepted: below it the batches' share
// would not hold two default batches.
const MinLimit = 64 << 20

// Validate names the key and what is wrong.
func (c Config) Validate() error {
	if c.Limit < MinLimit {
		return fmt.Errorf("limit: %d bytes is less than 64 MiB (%d)", c.Limit, MinLimit)
	}
	return nil
}

// Shares of the limit: batches waiting for the database (queued for a
// writer or being inserted, and waiting for the spool), and the most the
// collector's datagram queues may take. The rest is for what has no
// queue: decoders' templates and flow tables, enrichment's caches, the
// current batch, HTTP, and the GC's headroom.
const (
	queueShare     = 0.375 // of the limit
	spillShare     = 0.125
	datagramsShare = 0.25
)

// Plan is what the parts get from the budget.
type Plan struct {
	// GoLimit is the Go runtime's soft memory limit.
	GoLimit int64
	// QueueBytes bounds the batches queued for the database's writers or
	// being inserted; SpillBytes the batches the full queue hands to the
	// disk spool and that wait to be written.
	QueueBytes, SpillBytes int64
	// DatagramBytes is the most the collector's queues may take when full.
	DatagramBytes int64
}

// Plan divides the limit.
func (c Config) Plan() (Plan, error) {
	if err := c.Validate(); err != nil {
		return Plan{}, err
	}
	limit := float64(c.Limit)
	return Plan{
		GoLimit:       c.Limit,
		QueueBytes:    int64(queueShare * limit),
		SpillBytes:    int64(spillShare * limit),
		DatagramBytes: int64(datagramsShare * limit),
	}, nil
}

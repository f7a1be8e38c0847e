package store

import (
	"github.com/flowhouse/flowhouse/schema"
)

// FlowBatch holds flows column by column, the shape the database wants
// them in: a batch of the flows table, whose columns schema.Flows
// defines. Appending copies the flows; Reset keeps the capacity, so a
// batch reused between flushes stops allocating once it has grown to its
// usual size.
type FlowBatch = schema.Batch

// NewFlowBatch makes a batch with room for capacity flows.
func NewFlowBatch(capacity int) *FlowBatch { return schema.Flows.NewBatch(capacity) }

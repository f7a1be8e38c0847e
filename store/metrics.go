package store

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a row is dropped, the rows_dropped_total label.
const (
	DropQueueFull        = "queue_full"        // all queued batches wait for the database, and no spool took the batch
	DropSpillQueueFull   = "spill_queue_full"  // the insert queue and the spill queue were both full
	DropRetriesExhausted = "retries_exhausted" // retry.max_elapsed passed without a successful insert
	DropShutdown         = "shutdown"          // stop_timeout passed before the batch was inserted
	DropStopped          = "stopped"           // written after Stop
)

// SpillBackpressure is the reason given to the Spiller for a batch the
// insert queue had no room for (the database slower than the input).
const SpillBackpressure = "backpressure"

type metrics struct {
	rowsInserted    prometheus.Counter
	batchesInserted prometheus.Counter
	batchRows       prometheus.Histogram
	insertSeconds   prometheus.Histogram
	insertErrors    *prometheus.CounterVec
	rowsDropped     *prometheus.CounterVec
	queueBatches    prometheus.GaugeFunc
	rowsSpilled     prometheus.Counter
	spillBatches    prometheus.GaugeFunc
	queueBytes      prometheus.GaugeFunc
	spillBytes      prometheus.GaugeFunc
	memoryLimit     *prometheus.GaugeVec
}

// gauges read the batcher's queues.
type gauges struct {
	queueLen, spillLen, queueBytes, spillBytes func() float64
}

func newMetrics(reg prometheus.Registerer, g gauges) *metrics {
	m := &metrics{
		rowsInserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_store_rows_inserted_total",
			Help: "Flows inserted into the flows table.",
		}),
		batchesInserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_store_batches_inserted_total",
			Help: "Batches inserted into the flows table.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flowhouse_store_batch_rows",
			Help:    "Flows per inserted batch.",
			Buckets: prometheus.ExponentialBuckets(10, 4, 9), // 10 .. 655360
		}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flowhouse_store_insert_duration_seconds",
			Help:    "Time of one successful batch insert.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1 ms .. 60 s
		}),
		insertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_store_insert_errors_total",
			Help: "Failed insert attempts, by reason (timeout, connection, server, other).",
		}, []string{"reason"}),
		rowsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_store_rows_dropped_total",
			Help: "Flows never inserted, by reason (queue_full, spill_queue_full, retries_exhausted, shutdown, stopped).",
		}, []string{"reason"}),
		queueBatches: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flowhouse_store_queue_batches",
			Help: "Full batches waiting for a writer.",
		}, g.queueLen),
		rowsSpilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_store_rows_spilled_total",
			Help: "Flows the insert queue had no room for, handed to the disk spool (which counts what it kept in flowhouse_spool_rows_spooled_total{reason=\"backpressure\"} and what it had no room for in flowhouse_spool_rows_dropped_total{reason=\"spool_full\"}).",
		}),
		spillBatches: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flowhouse_store_spill_queue_batches",
			Help: "Batches the insert queue had no room for, waiting to be written to the spool.",
		}, g.spillLen),
		queueBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flowhouse_store_queue_bytes",
			Help: "Memory of the batches waiting for a writer or being inserted (bounded by flowhouse_store_memory_limit_bytes{queue=\"queue\"}).",
		}, g.queueBytes),
		spillBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flowhouse_store_spill_queue_bytes",
			Help: "Memory of the batches waiting to be written to the spool or being written (bounded by flowhouse_store_memory_limit_bytes{queue=\"spill\"}).",
		}, g.spillBytes),
		memoryLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowhouse_store_memory_limit_bytes",
			Help: "The bounds of the batcher's queues, from memory.limit: queue (waiting for the database) and spill (waiting for the disk spool).",
		}, []string{"queue"}),
	}
	// Known label values exist from the start, so rate() sees the first drop.
	for _, r := range []string{DropQueueFull, DropSpillQueueFull, DropRetriesExhausted, DropShutdown, DropStopped} {
		m.rowsDropped.WithLabelValues(r)
	}
	for _, r := range []string{errTimeout, errConnection, errServer, errOther} {
		m.insertErrors.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.rowsInserted, m.batchesInserted, m.batchRows, m.insertSeconds,
			m.insertErrors, m.rowsDropped, m.queueBatches, m.rowsSpilled, m.spillBatches,
			m.queueBytes, m.spillBytes, m.memoryLimit)
	}
	return m
}

package spool

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowhouse/flowhouse/store"
)

// Reasons a row is dropped by the spool, the rows_dropped_total label.
const (
	DropSpoolFull      = "spool_full"      // database down and max_bytes of segments waiting
	DropQuarantineFull = "quarantine_full" // a batch to quarantine found max_quarantine_bytes used
)

// Reasons a batch is spooled, the rows_spooled_total label: the spool's
// own, and those the batcher gives to Spill (store.SpillBackpressure,
// store.DropShutdown, store.DropRetriesExhausted).
const (
	SpillDatabaseDown = "database_down" // an insert failed (or the database is marked down)
)

var spillReasons = []string{SpillDatabaseDown, store.SpillBackpressure, store.DropShutdown, store.DropRetriesExhausted}

// Reasons a segment is quarantined, the segments_quarantined_total label.
const (
	QuarantineCorrupt  = "corrupt"  // checksum, header or layout wrong
	QuarantineRejected = "rejected" // the database refused the batch (non-retryable error)
)

type metrics struct {
	rowsSpooled         *prometheus.CounterVec
	rowsReplayed        prometheus.Counter
	rowsDirect          prometheus.Counter
	batchesDirect       prometheus.Counter
	segmentsReplayed    prometheus.Counter
	replayYields        prometheus.Counter
	rowsDropped         *prometheus.CounterVec
	segmentsQuarantined *prometheus.CounterVec
	rowsQuarantined     *prometheus.CounterVec
	writeErrors         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Spool) *metrics {
	m := &metrics{
		rowsSpooled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_spool_rows_spooled_total",
			Help: "Flows written to the spool, by reason: database_down (an insert failed), backpressure (the batcher's insert queue was full), shutdown, retries_exhausted.",
		}, []string{"reason"}),
		rowsReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_spool_rows_replayed_total",
			Help: "Spooled flows inserted into the database.",
		}),
		rowsDirect: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_spool_rows_direct_total",
			Help: "Flows inserted into the database at the first attempt, without the spool.",
		}),
		batchesDirect: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_spool_batches_direct_total",
			Help: "Batches inserted into the database at the first attempt, without the spool (live inserts).",
		}),
		segmentsReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_spool_segments_replayed_total",
			Help: "Segments (one batch each) replayed into the database.",
		}),
		replayYields: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_spool_replay_yields_total",
			Help: "Times the replay loop waited for live inserts because replay had used its share (replay_share).",
		}),
		rowsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_spool_rows_dropped_total",
			Help: "Flows the spool could not keep, by reason (spool_full, quarantine_full).",
		}, []string{"reason"}),
		segmentsQuarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_spool_segments_quarantined_total",
			Help: "Batches moved to the quarantine directory, by reason (corrupt, rejected).",
		}, []string{"reason"}),
		rowsQuarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowhouse_spool_rows_quarantined_total",
			Help: "Flows in quarantined batches, by reason (corrupt when the header could still be read, rejected).",
		}, []string{"reason"}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowhouse_spool_write_errors_total",
			Help: "Segments that could not be written (disk full, permissions); the batch is handed back to the batcher.",
		}),
	}
	for _, r := range spillReasons {
		m.rowsSpooled.WithLabelValues(r)
	}
	for _, r := range []string{DropSpoolFull, DropQuarantineFull} {
		m.rowsDropped.WithLabelValues(r)
	}
	for _, r := range []string{QuarantineCorrupt, QuarantineRejected} {
		m.segmentsQuarantined.WithLabelValues(r)
		m.rowsQuarantined.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.rowsSpooled, m.rowsReplayed, m.rowsDirect, m.batchesDirect, m.segmentsReplayed, m.replayYields, m.rowsDropped,
			m.segmentsQuarantined, m.rowsQuarantined, m.writeErrors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "flowhouse_spool_segments_pending",
				Help: "Segments waiting to be replayed.",
			}, func() float64 { return float64(s.Stats().PendingSegments) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "flowhouse_spool_bytes_pending",
				Help: "Bytes of segments waiting to be replayed.",
			}, func() float64 { return float64(s.Stats().PendingBytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "flowhouse_spool_max_bytes",
				Help: "The spool's bound (max_bytes).",
			}, func() float64 { return float64(s.cfg.MaxBytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "flowhouse_spool_replay_share",
				Help: "The bound on replayed inserts among all inserts while live ones run (replay_share).",
			}, func() float64 { return s.cfg.ReplayShare }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "flowhouse_spool_quarantine_bytes",
				Help: "Bytes in the quarantine directory.",
			}, func() float64 { return float64(s.Stats().QuarantineBytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "flowhouse_spool_database_up",
				Help: "1 when new batches go to the database, 0 while they go to the spool.",
			}, func() float64 {
				if s.down.Load() {
					return 0
				}
				return 1
			}),
		)
	}
	return m
}

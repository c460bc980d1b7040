// Package metrics holds the Prometheus collectors that migrated exports on /metrics.
package metrics

import (
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "migrated"

// Phases lists every value of the phase label, in lifecycle order. SetPhase sets exactly one of
// them to 1, so a dashboard can graph the phase without knowing which ones have been seen.
var Phases = []string{
	"snapshotting",
	"streaming",
	"cutting-over",
	"switched",
	"completed",
	"rolling-back",
	"cancelled",
	"failed",
}

// Version is the build version reported by migrated_build_info. The linker sets it with
// -ldflags "-X github.com/migrated/migrated/internal/metrics.Version=v1.2.3".
var Version = "dev"

// Metrics is every collector migrated exports. Components update the fields directly; the fields
// are safe for concurrent use.
type Metrics struct {
	Phase *prometheus.GaugeVec

	LagSeconds *prometheus.GaugeVec
	LagBytes   *prometheus.GaugeVec

	SnapshotRowsCopied    *prometheus.CounterVec
	SnapshotRowsEstimated *prometheus.GaugeVec
	SnapshotTablesDone    prometheus.Gauge
	SnapshotTablesTotal   prometheus.Gauge

	ChangesReceived     *prometheus.CounterVec
	ChangesApplied      *prometheus.CounterVec
	TransactionsApplied *prometheus.CounterVec
	ApplyBatchDuration  prometheus.Histogram
	ApplyBatchChanges   prometheus.Histogram
	StreamConnected     *prometheus.GaugeVec
	StreamReconnects    *prometheus.CounterVec
	LastApplyTimestamp  *prometheus.GaugeVec

	SourceSlotRetainedBytes prometheus.Gauge
	Errors                  *prometheus.CounterVec

	CutoverPhaseDuration    *prometheus.GaugeVec
	CutoverWriteUnavailable prometheus.Gauge

	VerifyMismatchedChunks prometheus.Gauge
	VerifyChunks           prometheus.Gauge
	VerifyLastSuccess      prometheus.Gauge

	BuildInfo *prometheus.GaugeVec

	phaseMu sync.Mutex // makes SetPhase atomic, so no scrape sees two phases at 1 for long
	phase   string
}

// New creates the collectors and registers them on reg, which is never the global registry so
// that tests and several daemons in one process do not collide. It panics if a name is already
// registered on reg, as that is a programming error. New exports every known phase at 0 until
// the first SetPhase, and migrated_build_info at 1.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "phase",
			Help: "1 for the migration's current phase, 0 for the others.",
		}, []string{"phase"}),

		LagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "replication_lag_seconds",
			Help: "Time between the newest source commit and the newest commit applied to the target.",
		}, []string{"direction"}),
		LagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "replication_lag_bytes",
			Help: "Bytes of change stream between the source position and the applied position.",
		}, []string{"direction"}),

		SnapshotRowsCopied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "snapshot_rows_copied_total",
			Help: "Rows copied by the initial snapshot.",
		}, []string{"table"}),
		SnapshotRowsEstimated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "snapshot_rows_estimated",
			Help: "Estimated rows in each table at the start of the snapshot.",
		}, []string{"table"}),
		SnapshotTablesDone: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "snapshot_tables_done",
			Help: "Tables whose snapshot copy has finished.",
		}),
		SnapshotTablesTotal: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "snapshot_tables",
			Help: "Tables included in the snapshot.",
		}),

		ChangesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "changes_received_total",
			Help: "Row changes decoded from the change stream.",
		}, []string{"direction"}),
		ChangesApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "changes_applied_total",
			Help: "Row changes applied to the destination, by operation.",
		}, []string{"direction", "op"}),
		TransactionsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "transactions_applied_total",
			Help: "Source transactions applied to the destination.",
		}, []string{"direction"}),
		ApplyBatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "apply_batch_duration_seconds",
			Help:    "Time to apply and commit one batch of changes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1ms to ~8s
		}),
		ApplyBatchChanges: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "apply_batch_changes",
			Help:    "Row changes in one applied batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 to 65536
		}),
		StreamConnected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "stream_connected",
			Help: "1 while the change stream is connected to its source, else 0.",
		}, []string{"direction"}),
		StreamReconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "stream_reconnects_total",
			Help: "Times the change stream reconnected after losing its source.",
		}, []string{"direction"}),
		LastApplyTimestamp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_applied_commit_timestamp_seconds",
			Help: "Source commit time, as Unix seconds, of the newest transaction applied.",
		}, []string{"direction"}),

		SourceSlotRetainedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_slot_retained_bytes",
			Help: "WAL bytes the source retains for migrated's replication slot.",
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "errors_total",
			Help: "Errors seen, by component, including ones that were retried.",
		}, []string{"component"}),

		CutoverPhaseDuration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "cutover_phase_duration_seconds",
			Help: "Duration of each phase of the last cutover attempt.",
		}, []string{"phase"}),
		CutoverWriteUnavailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "cutover_write_unavailable_seconds",
			Help: "Time writes were blocked during the last cutover.",
		}),

		VerifyMismatchedChunks: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "verify_mismatched_chunks",
			Help: "Chunks that differed between source and target in the last verification.",
		}),
		VerifyChunks: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "verify_chunks",
			Help: "Chunks compared in the last verification.",
		}),
		VerifyLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "verify_last_run_timestamp_seconds",
			Help: "Unix time at which the last verification finished.",
		}),

		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "Always 1, labelled with the version of migrated and of Go that built it.",
		}, []string{"version", "goversion"}),
	}
	reg.MustRegister(m.collectors()...)
	m.BuildInfo.WithLabelValues(Version, runtime.Version()).Set(1)
	for _, p := range Phases {
		m.Phase.WithLabelValues(p).Set(0)
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.Phase,
		m.LagSeconds, m.LagBytes,
		m.SnapshotRowsCopied, m.SnapshotRowsEstimated, m.SnapshotTablesDone, m.SnapshotTablesTotal,
		m.ChangesReceived, m.ChangesApplied, m.TransactionsApplied,
		m.ApplyBatchDuration, m.ApplyBatchChanges,
		m.StreamConnected, m.StreamReconnects, m.LastApplyTimestamp,
		m.SourceSlotRetainedBytes, m.Errors,
		m.CutoverPhaseDuration, m.CutoverWriteUnavailable,
		m.VerifyMismatchedChunks, m.VerifyChunks, m.VerifyLastSuccess,
		m.BuildInfo,
	}
}

// SetPhase sets migrated_phase to 1 for phase and 0 for every other phase. A phase that is not
// in Phases still gets its own series, so a new phase shows up on dashboards rather than
// vanishing; it is dropped again when the phase changes.
func (m *Metrics) SetPhase(phase string) {
	m.phaseMu.Lock()
	defer m.phaseMu.Unlock()
	if m.phase != "" && m.phase != phase && !known(m.phase) {
		m.Phase.DeleteLabelValues(m.phase)
	}
	for _, p := range Phases {
		if p != phase {
			m.Phase.WithLabelValues(p).Set(0)
		}
	}
	m.Phase.WithLabelValues(phase).Set(1)
	m.phase = phase
}

func known(phase string) bool {
	for _, p := range Phases {
		if p == phase {
			return true
		}
	}
	return false
}

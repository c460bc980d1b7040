package server

import "time"

// Status is what GET /v1/status returns and `migrated status` renders. It never holds a secret:
// DSNs appear only in their redacted form.
type Status struct {
	Migration string    `json:"migration"`
	Phase     string    `json:"phase"`
	Paused    bool      `json:"paused"`
	Since     time.Time `json:"since"` // when the current phase began
	Source    Endpoint  `json:"source"`
	Target    Endpoint  `json:"target"`
	// Error is the reason for the failed phase, with what to do next. Empty unless failed.
	Error    string        `json:"error,omitempty"`
	Snapshot SnapshotState `json:"snapshot"`
	Stream   StreamState   `json:"stream"`
}

// Endpoint is one side of the migration.
type Endpoint struct {
	Engine string `json:"engine"` // "postgres" or "mysql"
	DSN    string `json:"dsn"`    // redacted: no password
}

// SnapshotState is the progress of the initial copy.
type SnapshotState struct {
	TablesTotal  int          `json:"tables_total"`
	TablesDone   int          `json:"tables_done"`
	RowsCopied   int64        `json:"rows_copied"`
	RowsEstimate int64        `json:"rows_estimated"`
	Tables       []TableState `json:"tables"`
	// ETA is the estimated time left for the copy, zero when unknown or done.
	ETASeconds float64 `json:"eta_seconds,omitempty"`
}

// TableState is the snapshot progress of one table.
type TableState struct {
	Table        string `json:"table"`
	State        string `json:"state"` // pending, copying, done
	RowsCopied   int64  `json:"rows_copied"`
	RowsEstimate int64  `json:"rows_estimated"`
	ChunksTotal  int    `json:"chunks_total"`
	ChunksDone   int    `json:"chunks_done"`
}

// StreamState is the change stream's position and lag.
type StreamState struct {
	// SourcePosition is the newest position seen on the source.
	SourcePosition string `json:"source_position"`
	// AppliedPosition is the position durably checkpointed on the target.
	AppliedPosition string    `json:"applied_position"`
	LastCommitTime  time.Time `json:"last_commit_time,omitempty"`
	LagSeconds      float64   `json:"lag_seconds"`
	LagBytes        int64     `json:"lag_bytes"`
	ChangesApplied  int64     `json:"changes_applied"`
	TxnsApplied     int64     `json:"transactions_applied"`
	Connected       bool      `json:"connected"`
}

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
	// Reverse is the stream from the target back to the old source, during the dual-write
	// phase (switched). Nil before a cutover.
	Reverse *StreamState `json:"reverse,omitempty"`
	// Operation is the cutover or rollback running now, or the last one. Nil before any.
	Operation *OperationState `json:"operation,omitempty"`
	// Verify is the running or last verify. Nil before any.
	Verify *VerifyState `json:"verify,omitempty"`
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

// OperationState is the cutover or rollback in progress, or the last one.
type OperationState struct {
	Op string `json:"op"` // "cutover" or "rollback"
	// Step is the step running now; empty when the operation is over.
	Step string `json:"step,omitempty"`
	// Outcome is "running", "done", "aborted" or "failed".
	Outcome   string    `json:"outcome"`
	StartedAt time.Time `json:"started_at"`
	// FinishedAt is zero while the operation runs.
	FinishedAt time.Time `json:"finished_at,omitempty"`
	// FencePosition is the source (cutover) or target (rollback) position at the fence.
	FencePosition string `json:"fence_position,omitempty"`
	// WriteUnavailableSeconds is the time from the fence to the new side writable; for an
	// aborted operation, from the fence to the unfence.
	WriteUnavailableSeconds float64 `json:"write_unavailable_seconds,omitempty"`
	// FailedStep is the step whose failure aborted the operation, if one did.
	FailedStep string `json:"failed_step,omitempty"`
	// StepSeconds is how long each step took, the failed one included.
	StepSeconds map[string]float64 `json:"step_seconds,omitempty"`
	// Error says why the operation aborted or failed, and what to do next.
	Error string `json:"error,omitempty"`
	// HookError is set when the routing hook failed after the commit: the switch happened,
	// and the application must be pointed at the new side by hand.
	HookError string `json:"hook_error,omitempty"`
}

// VerifyState is the progress or result of the last verify.
type VerifyState struct {
	Run        int64     `json:"run"`
	Running    bool      `json:"running"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
	Tables     int       `json:"tables"`
	TablesDone int       `json:"tables_done"`
	Chunks     int64     `json:"chunks"`
	Mismatched int64     `json:"mismatched_chunks"`
	Clean      bool      `json:"clean"`
	// Samples are some of the differing rows, at most a few per table.
	Samples []Mismatch `json:"samples,omitempty"`
	Error   string     `json:"error,omitempty"`
}

// Mismatch is one row that differs between source and target.
type Mismatch struct {
	Table string `json:"table"`
	Key   string `json:"key"`  // the key's values, as text: (1,abc)
	Kind  string `json:"kind"` // "missing" on the target, "extra" on the target, or "different"
}

// CutoverPlan is the answer to a cutover (or rollback) request: the preconditions judged and the
// steps that run, and for a real run, how it went.
type CutoverPlan struct {
	Op     string   `json:"op"`
	DryRun bool     `json:"dry_run"`
	Checks []Check  `json:"checks"`
	Steps  []string `json:"steps"`
	// Result is the operation's outcome; nil for a dry run or a refusal.
	Result *OperationState `json:"result,omitempty"`
}

// Check is one precondition with its verdict.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// ActionResult is the answer of the simple actions (pause, resume, complete, cancel, verify).
type ActionResult struct {
	Action  string `json:"action"`
	Phase   string `json:"phase"`
	Message string `json:"message"`
}

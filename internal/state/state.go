// Package state keeps a migration's durable state on the target, in the schema _migrated: the
// phase, per-table snapshot progress, the stream checkpoint and the post-data steps done.
//
// The stream checkpoint is written by apply inside the same target transaction as the data it
// covers (see CheckpointSQL), so on restart the target and its position always agree.
package state

import (
	"context"
	"errors"
	"fmt"
	"github.com/migrated/migrated/internal/cdc"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Phase is a migration phase, as shown in status and metrics.
type Phase string

// The phases of a migration.
const (
	PhaseSnapshotting Phase = "snapshotting"
	PhaseStreaming    Phase = "streaming"
	PhaseCuttingOver  Phase = "cutting-over"
	PhaseRollingBack  Phase = "rolling-back"
	PhaseSwitched     Phase = "switched"
	PhaseCompleted    Phase = "completed"
	PhaseCancelled    Phase = "cancelled"
	PhaseFailed       Phase = "failed"
)

// Table states of the snapshot.
const (
	TablePending = "pending"
	TableCopying = "copying"
	TableDone    = "done"
)

// ErrNotFound means the target holds no state for the migration: it has not started.
var ErrNotFound = errors.New("no migration state on the target")

const ddl = `
CREATE SCHEMA IF NOT EXISTS _migrated;
CREATE TABLE IF NOT EXISTS _migrated.migration (
    name          text PRIMARY KEY,
    phase         text NOT NULL,
    phase_since   timestamptz NOT NULL DEFAULT now(),
    error         text NOT NULL DEFAULT '',
    start_position text NOT NULL DEFAULT '',
    post_data     text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE _migrated.migration ADD COLUMN IF NOT EXISTS failed_in text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS _migrated.tables (
    migration      text NOT NULL,
    table_schema   text NOT NULL,
    table_name     text NOT NULL,
    state          text NOT NULL DEFAULT 'pending',
    rows_copied    bigint NOT NULL DEFAULT 0,
    rows_estimated bigint NOT NULL DEFAULT 0,
    chunks_total   int NOT NULL DEFAULT 0,
    chunks_done    int NOT NULL DEFAULT 0,
    skip_before    text NOT NULL DEFAULT '',
    PRIMARY KEY (migration, table_schema, table_name)
);
CREATE TABLE IF NOT EXISTS _migrated.progress (
    migration   text NOT NULL,
    stream      text NOT NULL,
    position    text NOT NULL,
    commit_time timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, stream)
);
CREATE TABLE IF NOT EXISTS _migrated.operations (
    id            bigserial PRIMARY KEY,
    migration     text NOT NULL,
    op            text NOT NULL,
    outcome       text NOT NULL DEFAULT 'running',
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    fence_position text NOT NULL DEFAULT '',
    write_unavailable_seconds double precision NOT NULL DEFAULT 0,
    step_seconds  jsonb NOT NULL DEFAULT '{}',
    error         text NOT NULL DEFAULT '',
    hook_error    text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS _migrated.journal (
    operation bigint NOT NULL REFERENCES _migrated.operations (id),
    seq       int NOT NULL,
    step      text NOT NULL,
    state     text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    detail    text NOT NULL DEFAULT '',
    PRIMARY KEY (operation, seq)
);
CREATE TABLE IF NOT EXISTS _migrated.marks (
    migration    text NOT NULL,
    table_schema text NOT NULL,
    table_name   text NOT NULL,
    cursor       bytea[],
    rows         bigint NOT NULL DEFAULT 0,
    done         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (migration, table_schema, table_name)
);
CREATE TABLE IF NOT EXISTS _migrated.steps (
    migration text NOT NULL,
    step      text NOT NULL,
    done_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, step)
);`

// Store reads and writes one migration's state.
type Store struct {
	pool *pgxpool.Pool
	name string
}

// Open creates the _migrated schema if needed and returns the store of the named migration.
func Open(ctx context.Context, pool *pgxpool.Pool, name string) (*Store, error) {
	if _, err := pool.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("create _migrated schema on the target: %w", err)
	}
	return &Store{pool: pool, name: name}, nil
}

// Migration is the row of a migration.
type Migration struct {
	Name          string
	Phase         Phase
	PhaseSince    time.Time
	Error         string
	StartPosition string
	PostData      string
	// FailedIn is the phase a failed migration was in, where a restart resumes it.
	FailedIn Phase
}

// ResumePhase is the phase whose work a restart runs: the phase itself, or for a failed migration
// the phase it failed in (the snapshot when that was not recorded).
func (m *Migration) ResumePhase() Phase {
	switch {
	case m.Phase != PhaseFailed:
		return m.Phase
	case m.FailedIn != "":
		return m.FailedIn
	}
	return PhaseSnapshotting
}

// Load returns the migration's row, or ErrNotFound.
func (s *Store) Load(ctx context.Context) (*Migration, error) {
	m := &Migration{}
	err := s.pool.QueryRow(ctx, `SELECT name, phase, phase_since, error, start_position, post_data, failed_in
	  FROM _migrated.migration WHERE name = $1`, s.name).Scan(&m.Name, &m.Phase, &m.PhaseSince, &m.Error, &m.StartPosition, &m.PostData, &m.FailedIn)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read migration state: %w", err)
	}
	return m, nil
}

// Create records a new migration in the snapshotting phase with its tables, the stream's start
// position and the post-data DDL to run after the copy. It runs first, in the same transaction,
// so that the target never holds the schema without the state that explains it.
func (s *Store) Create(ctx context.Context, start string, postData string, tables []TableProgress, first func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if first != nil {
			if err := first(tx); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO _migrated.migration (name, phase, start_position, post_data) VALUES ($1, $2, $3, $4)`,
			s.name, PhaseSnapshotting, start, postData); err != nil {
			return fmt.Errorf("record migration: %w", err)
		}
		for _, t := range tables {
			if _, err := tx.Exec(ctx, `INSERT INTO _migrated.tables (migration, table_schema, table_name, rows_estimated) VALUES ($1, $2, $3, $4)`,
				s.name, t.Schema, t.Name, t.RowsEstimate); err != nil {
				return fmt.Errorf("record table %s.%s: %w", t.Schema, t.Name, err)
			}
		}
		if _, err := tx.Exec(ctx, CheckpointSQL, s.name, "forward", start, nil); err != nil {
			return fmt.Errorf("record start position: %w", err)
		}
		return nil
	})
}

// SetPhase moves the migration to a phase, with the error that caused it for PhaseFailed.
func (s *Store) SetPhase(ctx context.Context, phase Phase, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE _migrated.migration SET phase = $2, error = $3, phase_since = now() WHERE name = $1`, s.name, phase, reason)
	if err != nil {
		return fmt.Errorf("record phase %s: %w", phase, err)
	}
	return nil
}

// SetFailed moves the migration to the failed phase with the error, remembering the phase it
// failed in so that a restart resumes there.
func (s *Store) SetFailed(ctx context.Context, in Phase, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE _migrated.migration SET phase = $2, error = $3, phase_since = now(),
	    failed_in = CASE WHEN phase = $2 THEN failed_in ELSE $4 END WHERE name = $1`, s.name, PhaseFailed, reason, in)
	if err != nil {
		return fmt.Errorf("record phase %s: %w", PhaseFailed, err)
	}
	return nil
}

// TableProgress is the snapshot state of one table.
type TableProgress struct {
	Schema, Name string
	State        string
	RowsCopied   int64
	RowsEstimate int64
	ChunksTotal  int
	ChunksDone   int
	// SkipBefore is the position of the snapshot the table was copied from, when that is later
	// than the stream's start: stream changes committed before it are already in the copy.
	SkipBefore string
}

// Tables returns the snapshot state of every table, in name order.
func (s *Store) Tables(ctx context.Context) ([]TableProgress, error) {
	rows, err := s.pool.Query(ctx, `SELECT table_schema, table_name, state, rows_copied, rows_estimated, chunks_total, chunks_done, skip_before
	  FROM _migrated.tables WHERE migration = $1 ORDER BY 1, 2`, s.name)
	if err != nil {
		return nil, fmt.Errorf("read table progress: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableProgress, error) {
		var t TableProgress
		err := r.Scan(&t.Schema, &t.Name, &t.State, &t.RowsCopied, &t.RowsEstimate, &t.ChunksTotal, &t.ChunksDone, &t.SkipBefore)
		return t, err
	})
}

// ResetTable marks a table to be copied again from a new snapshot.
func (s *Store) ResetTable(ctx context.Context, schema, name string, chunks int, skipBefore string) error {
	_, err := s.pool.Exec(ctx, `UPDATE _migrated.tables SET state = 'copying', rows_copied = 0, chunks_total = $4, chunks_done = 0, skip_before = $5
	  WHERE migration = $1 AND table_schema = $2 AND table_name = $3`, s.name, schema, name, chunks, skipBefore)
	if err != nil {
		return fmt.Errorf("reset progress of %s.%s: %w", schema, name, err)
	}
	return nil
}

// ChunkDoneSQL records a copied chunk. Run it in the transaction that copied the chunk: $1
// migration, $2 schema, $3 table, $4 rows.
const ChunkDoneSQL = `UPDATE _migrated.tables SET rows_copied = rows_copied + $4, chunks_done = chunks_done + 1,
    state = CASE WHEN chunks_done + 1 >= chunks_total THEN 'done' ELSE 'copying' END
  WHERE migration = $1 AND table_schema = $2 AND table_name = $3`

// CheckpointSQL records a stream position. Apply runs it in the transaction that holds the data
// up to that position: $1 migration, $2 stream, $3 position, $4 commit time (may be NULL).
const CheckpointSQL = `INSERT INTO _migrated.progress (migration, stream, position, commit_time, updated_at)
  VALUES ($1, $2, $3, $4, now())
  ON CONFLICT (migration, stream) DO UPDATE SET position = EXCLUDED.position,
    commit_time = coalesce(EXCLUDED.commit_time, _migrated.progress.commit_time), updated_at = now()`

// Position returns the checkpointed position of a stream and the source commit time of the last
// transaction applied.
func (s *Store) Position(ctx context.Context, stream string) (string, time.Time, error) {
	var pos string
	var at *time.Time
	err := s.pool.QueryRow(ctx, `SELECT position, commit_time FROM _migrated.progress WHERE migration = $1 AND stream = $2`, s.name, stream).Scan(&pos, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, ErrNotFound
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("read %s stream position: %w", stream, err)
	}
	if at == nil {
		return pos, time.Time{}, nil
	}
	return pos, *at, nil
}

// StepDoneSQL records a finished named step inside the transaction that did it: $1 migration, $2 step.
const StepDoneSQL = `INSERT INTO _migrated.steps (migration, step) VALUES ($1, $2) ON CONFLICT DO NOTHING`

// StepsDone returns the names of the finished steps.
func (s *Store) StepsDone(ctx context.Context) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT step FROM _migrated.steps WHERE migration = $1`, s.name)
	if err != nil {
		return nil, fmt.Errorf("read finished steps: %w", err)
	}
	steps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read finished steps: %w", err)
	}
	done := make(map[string]bool, len(steps))
	for _, s := range steps {
		done[s] = true
	}
	return done, nil
}

// Name is the migration's name.
func (s *Store) Name() string { return s.name }

// MarkSQL records a reconciled snapshot's progress on one table inside the transaction that
// wrote its rows: $1 migration, $2 schema, $3 table, $4 cursor (bytea[]), $5 rows, $6 done.
const MarkSQL = `INSERT INTO _migrated.marks (migration, table_schema, table_name, cursor, rows, done)
  VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (migration, table_schema, table_name) DO UPDATE
  SET cursor = EXCLUDED.cursor, rows = EXCLUDED.rows, done = EXCLUDED.done`

// Marks returns the reconciled snapshot's progress per source table.
func (s *Store) Marks(ctx context.Context) (map[cdc.TableID]cdc.SnapshotMark, error) {
	rows, err := s.pool.Query(ctx, `SELECT table_schema, table_name, cursor, rows, done FROM _migrated.marks WHERE migration = $1`, s.name)
	if err != nil {
		return nil, fmt.Errorf("read snapshot progress: %w", err)
	}
	defer rows.Close()
	out := map[cdc.TableID]cdc.SnapshotMark{}
	for rows.Next() {
		var id cdc.TableID
		var cursor [][]byte
		var m cdc.SnapshotMark
		if err := rows.Scan(&id.Schema, &id.Name, &cursor, &m.Rows, &m.Done); err != nil {
			return nil, fmt.Errorf("read snapshot progress: %w", err)
		}
		for _, c := range cursor {
			m.Cursor = append(m.Cursor, string(c))
		}
		out[id] = m
	}
	return out, rows.Err()
}

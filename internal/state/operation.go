package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Operation is a cutover or rollback, with its journal: every step written before it runs and
// again when it is done, so that a restarted daemon knows how to finish or undo it.
type Operation struct {
	ID         int64
	Op         string
	Outcome    string // running, done, aborted, failed
	StartedAt  time.Time
	FinishedAt *time.Time
	// FencePosition is where the fenced side stood when it was fenced.
	FencePosition           string
	WriteUnavailableSeconds float64
	StepSeconds             map[string]float64
	Error                   string
	HookError               string
	Journal                 []JournalEntry
}

// JournalEntry is one line of an operation's journal.
type JournalEntry struct {
	Step   string
	State  string // started, done, failed
	At     time.Time
	Detail string
}

// BeginOperation records a new running operation and moves the migration to phase, in one
// transaction, so a crash leaves either neither or both.
func (s *Store) BeginOperation(ctx context.Context, op string, phase Phase) (*Operation, error) {
	o := &Operation{Op: op, Outcome: "running", StepSeconds: map[string]float64{}}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO _migrated.operations (migration, op) VALUES ($1, $2) RETURNING id, started_at`,
			s.name, op).Scan(&o.ID, &o.StartedAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE _migrated.migration SET phase = $2, error = '', phase_since = now() WHERE name = $1`, s.name, phase)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record the start of the %s: %w", op, err)
	}
	return o, nil
}

// Journal appends an entry to the operation's journal. When phase is not empty, the migration
// moves to it in the same transaction: that is how the point of no return is recorded.
func (s *Store) Journal(ctx context.Context, o *Operation, e JournalEntry, phase Phase) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO _migrated.journal (operation, seq, step, state, detail) VALUES ($1, $2, $3, $4, $5) RETURNING at`,
			o.ID, len(o.Journal), e.Step, e.State, e.Detail).Scan(&e.At); err != nil {
			return err
		}
		if phase != "" {
			_, err := tx.Exec(ctx, `UPDATE _migrated.migration SET phase = $2, error = '', phase_since = now() WHERE name = $1`, s.name, phase)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write the %s journal (%s %s): %w", o.Op, e.Step, e.State, err)
	}
	o.Journal = append(o.Journal, e)
	return nil
}

// SaveOperation writes the operation's facts (not its journal).
func (s *Store) SaveOperation(ctx context.Context, o *Operation) error {
	_, err := s.pool.Exec(ctx, `UPDATE _migrated.operations SET outcome = $2, finished_at = $3, fence_position = $4,
	    write_unavailable_seconds = $5, step_seconds = $6, error = $7, hook_error = $8 WHERE id = $1`,
		o.ID, o.Outcome, o.FinishedAt, o.FencePosition, o.WriteUnavailableSeconds, o.StepSeconds, o.Error, o.HookError)
	if err != nil {
		return fmt.Errorf("record the %s: %w", o.Op, err)
	}
	return nil
}

// FinishOperation records the operation's outcome and moves the migration to phase, in one
// transaction.
func (s *Store) FinishOperation(ctx context.Context, o *Operation, phase Phase) error {
	now := time.Now()
	o.FinishedAt = &now
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE _migrated.operations SET outcome = $2, finished_at = $3, fence_position = $4,
		    write_unavailable_seconds = $5, step_seconds = $6, error = $7, hook_error = $8 WHERE id = $1`,
			o.ID, o.Outcome, o.FinishedAt, o.FencePosition, o.WriteUnavailableSeconds, o.StepSeconds, o.Error, o.HookError); err != nil {
			return fmt.Errorf("record the end of the %s: %w", o.Op, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE _migrated.migration SET phase = $2, error = '', phase_since = now() WHERE name = $1`, s.name, phase); err != nil {
			return fmt.Errorf("record phase %s: %w", phase, err)
		}
		return nil
	})
}

// LastOperation returns the newest operation with its journal, or nil if there is none.
func (s *Store) LastOperation(ctx context.Context) (*Operation, error) {
	o := &Operation{}
	err := s.pool.QueryRow(ctx, `SELECT id, op, outcome, started_at, finished_at, fence_position, write_unavailable_seconds,
	    step_seconds, error, hook_error FROM _migrated.operations WHERE migration = $1 ORDER BY id DESC LIMIT 1`, s.name).
		Scan(&o.ID, &o.Op, &o.Outcome, &o.StartedAt, &o.FinishedAt, &o.FencePosition, &o.WriteUnavailableSeconds,
			&o.StepSeconds, &o.Error, &o.HookError)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the last operation: %w", err)
	}
	if o.StepSeconds == nil {
		o.StepSeconds = map[string]float64{}
	}
	rows, err := s.pool.Query(ctx, `SELECT step, state, at, detail FROM _migrated.journal WHERE operation = $1 ORDER BY seq`, o.ID)
	if err != nil {
		return nil, fmt.Errorf("read the %s journal: %w", o.Op, err)
	}
	o.Journal, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (JournalEntry, error) {
		var e JournalEntry
		err := r.Scan(&e.Step, &e.State, &e.At, &e.Detail)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the %s journal: %w", o.Op, err)
	}
	return o, nil
}

// SetPosition records a stream's position outside apply: where a new stream starts.
func (s *Store) SetPosition(ctx context.Context, stream, position string) error {
	if _, err := s.pool.Exec(ctx, CheckpointSQL, s.name, stream, position, nil); err != nil {
		return fmt.Errorf("record the start of the %s stream: %w", stream, err)
	}
	return nil
}

// ClearSkipBefore forgets the per-table snapshot positions once a fresh stream starts after them.
func (s *Store) ClearSkipBefore(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `UPDATE _migrated.tables SET skip_before = '' WHERE migration = $1`, s.name); err != nil {
		return fmt.Errorf("reset table positions: %w", err)
	}
	return nil
}

// DropPosition removes a stream's checkpoint, when the migration is over.
func (s *Store) DropPosition(ctx context.Context, stream string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM _migrated.progress WHERE migration = $1 AND stream = $2`, s.name, stream); err != nil {
		return fmt.Errorf("remove the %s stream's checkpoint: %w", stream, err)
	}
	return nil
}

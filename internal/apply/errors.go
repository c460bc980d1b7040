package apply

import (
	"errors"
	"fmt"

	"github.com/migrated/migrated/internal/cdc"
)

// ChangeError is a permanent failure to apply one change: a constraint, a type mismatch, a
// missing table. The stream stops on it; a change is never skipped.
type ChangeError struct {
	Table    string
	Op       string
	Key      string // the row's key as "col=value, ..."; values of key columns only
	SQLState string
	Err      error
}

func (e *ChangeError) Error() string {
	return fmt.Sprintf("apply %s on %s (%s) failed with SQLSTATE %s: %v; fix the target (or the data) and restart migrated, which resumes from the last checkpoint",
		e.Op, e.Table, e.Key, e.SQLState, e.Err)
}

func (e *ChangeError) Unwrap() error { return e.Err }

// TransientError marks a failure worth retrying from the last checkpoint: a dropped connection,
// a deadlock, a serialization failure, a server restart.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err, or an error it wraps, is a TransientError.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// CommitWhat names a target transaction for messages: the stream position it commits, or a
// snapshot chunk when pos is nil.
func CommitWhat(pos cdc.Position) string {
	if pos == nil {
		return "the target transaction of a snapshot chunk"
	}
	return "the target transaction at " + pos.String()
}

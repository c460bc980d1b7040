package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/postgres"
	"go.uber.org/zap"
)

// A row that changes faster than the stream settles (a counter that every source transaction
// updates) differs in every row-level diff, however long verify waits: the target is always a
// little behind. Such a key is compared once more with its source row locked FOR SHARE. While
// the lock is held no later change to the row can exist, and once the target has applied the
// WAL insert position read after the lock it has every earlier one, so that comparison is exact.
// The lock blocks the writers of that one row for about the stream's lag, one key at a time.
const (
	// maxLocked is how many keys of a chunk are compared under a lock. A chunk with more keys that
	// kept changing has more than a few hot rows, and a lock each would stall the source's writers
	// for too long: the rest are reported as different.
	maxLocked = 20
	// lockTimeout is how long the source row lock is waited for before the key is reported as
	// different, too hot to lock.
	lockTimeout = 2 * time.Second
)

var (
	// errRowBusy means the source row lock was not granted within lockTimeout.
	errRowBusy = errors.New("the source row could not be locked")
	// errLockDenied means the source user may not lock rows of the table (SELECT ... FOR SHARE
	// needs UPDATE privilege as well as SELECT).
	errLockDenied = errors.New("the source user may not lock the table's rows")
)

// settle returns the chunk's mismatched rows once the row-level diffs are over. A key that the
// last two diffs found with the same stable difference is reported as found. Any other key never
// held still while compared: it is compared under a lock (lockedCompare), for up to maxLocked
// keys per chunk, and reported as different when that is not possible.
func (r *runner) settle(ctx context.Context, q *queries, order []string, cur, prev map[string]verdict, log *zap.Logger) ([]Mismatch, error) {
	var bad, unlocked []Mismatch
	locked := 0
	denied := false
	for _, k := range order {
		v, p := cur[k], prev[k]
		if v.stable && p.stable && v.Kind == p.Kind {
			bad = append(bad, v.Mismatch)
			continue
		}
		if denied || locked == maxLocked {
			bad, unlocked = append(bad, v.Mismatch), append(unlocked, v.Mismatch)
			continue
		}
		locked++
		kind, err := r.lockedCompare(ctx, q, v.key)
		switch {
		case errors.Is(err, errRowBusy):
			log.Warn("row too hot to lock; reporting it as different", zap.String("key", v.Key),
				zap.Duration("lock_timeout", lockTimeout))
			bad = append(bad, v.Mismatch)
		case errors.Is(err, errLockDenied):
			log.Warn("the source user may not lock rows, so rows that kept changing are reported as different; "+
				"grant it UPDATE on the table (verify locks one row at a time, FOR SHARE, and writes nothing) and verify again",
				zap.String("key", v.Key), zap.Error(err))
			denied = true
			bad = append(bad, v.Mismatch)
		case err != nil:
			return nil, fmt.Errorf("compare %s with the source row locked: %w", v.Key, err)
		case kind != "":
			v.Kind = kind
			bad = append(bad, v.Mismatch)
		default:
			log.Debug("row matched with the source row locked", zap.String("key", v.Key))
		}
	}
	switch {
	case denied && len(unlocked) > 0:
		log.Warn("rows kept changing while compared; reporting them as different without a lock", zap.Any("rows", unlocked))
	case len(unlocked) > 0:
		log.Warn(fmt.Sprintf("more than %d rows kept changing while compared; reporting the rest as different without a lock", maxLocked),
			zap.Any("rows", unlocked))
	}
	return bad, nil
}

// lockedCompare compares the row with key, with the source row locked. It returns "" when the
// rows match, else the mismatch kind, and an error wrapping errRowBusy or errLockDenied when the
// row could not be locked.
func (r *runner) lockedCompare(ctx context.Context, q *queries, key []string) (string, error) {
	kind, err := r.lockedCompareOnce(ctx, q, key)
	if err == nil && kind == KindExtra {
		// A row absent from the source locks nothing: an insert of the key after the position
		// was read may be on the target already. Read the source once more, locking the row if
		// it exists now.
		kind, err = r.lockedCompareOnce(ctx, q, key)
	}
	return kind, err
}

// lockedCompareOnce locks the source row FOR SHARE, reads the source's WAL insert position,
// waits for the target to apply up to it, compares the row's hash on both sides, then commits,
// which releases the lock.
func (r *runner) lockedCompareOnce(ctx context.Context, q *queries, key []string) (string, error) {
	where, args := q.equal(key)
	sql := fmt.Sprintf("SELECT hashtextextended((t.*)::text, 0) FROM %s WHERE %s", q.from, where)
	// Read-write whatever the pool's default: a row lock is a write.
	tx, err := r.o.Source.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		return "", fmt.Errorf("lock the source row: %w", err)
	}
	defer tx.Rollback(ctx)
	settings := fmt.Sprintf("%s; SET LOCAL lock_timeout = %d", pinSettings, lockTimeout.Milliseconds())
	if _, err := tx.Exec(ctx, settings); err != nil {
		return "", fmt.Errorf("lock the source row: %w", err)
	}
	src, err := rowHash(ctx, tx, sql+" FOR SHARE", args)
	if err != nil {
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "55P03":
			return "", fmt.Errorf("%w within %s: %w", errRowBusy, lockTimeout, err)
		case errors.As(err, &pgErr) && pgErr.Code == "42501":
			return "", fmt.Errorf("%w: %w", errLockDenied, err)
		}
		return "", fmt.Errorf("lock the source row: %w", err)
	}
	// Read after the lock: every change to the row ends before this position.
	lsn, err := postgres.CurrentLSN(ctx, tx)
	if err != nil {
		return "", fmt.Errorf("read the source position: %w", err)
	}
	if err := r.waitApplied(ctx, lsn); err != nil {
		return "", err
	}
	var dst *int64
	if err := read(ctx, r.o.Target, nil, func(tx pgx.Tx) (err error) {
		dst, err = rowHash(ctx, tx, sql, args)
		return err
	}); err != nil {
		return "", fmt.Errorf("read the target row: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("release the source row lock: %w", err)
	}
	switch {
	case src == nil && dst == nil:
		return "", nil
	case dst == nil:
		return KindMissing, nil
	case src == nil:
		return KindExtra, nil
	case *src != *dst:
		return KindDifferent, nil
	}
	return "", nil
}

// rowHash returns the hash that sql reads, or nil when it finds no row.
func rowHash(ctx context.Context, tx pgx.Tx, sql string, args []any) (*int64, error) {
	var h int64
	err := tx.QueryRow(ctx, sql, args...).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// Package daemon runs one migration through its phases: preflight, schema, snapshot, post-data
// and streaming. It holds the state that status and metrics show. The stage packages do the work;
// this package orders it, and it is the only place that knows the PostgreSQL engine is in use.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/config"
	"github.com/migrated/migrated/internal/metrics"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/snapshot"
	"github.com/migrated/migrated/internal/state"
	"go.uber.org/zap"
)

// PreflightError lists the failed preflight checks. Nothing was changed on either side.
type PreflightError struct {
	Problems []postgres.Problem
}

func (e *PreflightError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  - " + p.String()
	}
	return fmt.Sprintf("preflight found %d problem(s); nothing was changed:\n%s", len(e.Problems), strings.Join(lines, "\n"))
}

// Daemon is one running migration.
type Daemon struct {
	cfg    *config.Config
	log    *zap.Logger
	m      *metrics.Metrics
	srcDSN string
	dstDSN string

	target *pgxpool.Pool
	store  *state.Store
	tables []*schema.Table

	mu     sync.Mutex
	status server.Status
	copier *snapshot.Copier
	ready  bool
}

// New prepares a daemon. It does not connect yet.
func New(cfg *config.Config, log *zap.Logger, m *metrics.Metrics) (*Daemon, error) {
	if cfg.Source.Engine != "postgres" || cfg.Target.Engine != "postgres" {
		return nil, fmt.Errorf("engines %s → %s: this version migrates PostgreSQL to PostgreSQL only", cfg.Source.Engine, cfg.Target.Engine)
	}
	src, err := cfg.Source.PostgresDSN()
	if err != nil {
		return nil, fmt.Errorf("source.dsn: %w", err)
	}
	dst, err := cfg.Target.PostgresDSN()
	if err != nil {
		return nil, fmt.Errorf("target.dsn: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log, m: m, srcDSN: src, dstDSN: dst}
	d.status = server.Status{
		Migration: cfg.Name,
		Phase:     "starting",
		Since:     time.Now(),
		Source:    server.Endpoint{Engine: cfg.Source.Engine, DSN: cfg.Source.Redacted()},
		Target:    server.Endpoint{Engine: cfg.Target.Engine, DSN: cfg.Target.Redacted()},
	}
	return d, nil
}

func (d *Daemon) slotName() string { return "migrated_" + d.cfg.Name }
func (d *Daemon) pubName() string  { return "migrated_" + d.cfg.Name }

// Check runs preflight on both sides and returns the problems found. It changes nothing.
func (d *Daemon) Check(ctx context.Context) ([]postgres.Problem, error) {
	probs, _, err := d.check(ctx)
	return probs, err
}

// check is Check that also returns the source tables it read, so Run need not read them again.
func (d *Daemon) check(ctx context.Context) ([]postgres.Problem, []*schema.Table, error) {
	src, err := pgx.Connect(ctx, d.srcDSN)
	if err != nil {
		return []postgres.Problem{{Check: "source", Message: fmt.Sprintf("cannot connect to the source %s: %v; check source.dsn, the network and pg_hba.conf", d.cfg.Source.Redacted(), redactErr(err, d.srcDSN))}}, nil, nil
	}
	defer src.Close(ctx)
	tables, err := postgres.Tables(ctx, src, d.cfg.Tables.Match)
	if err != nil {
		return nil, nil, err
	}
	probs, err := postgres.CheckSource(ctx, src, tables, d.slotName())
	if err != nil {
		return nil, nil, err
	}
	dst, err := pgx.Connect(ctx, d.dstDSN)
	if err != nil {
		return append(probs, postgres.Problem{Check: "target", Message: fmt.Sprintf("cannot connect to the target %s: %v; check target.dsn, the network and pg_hba.conf", d.cfg.Target.Redacted(), redactErr(err, d.dstDSN))}), tables, nil
	}
	defer dst.Close(ctx)
	fresh, err := d.freshTarget(ctx, dst)
	if err != nil {
		return nil, nil, err
	}
	tprobs, err := postgres.CheckTarget(ctx, dst, tables, fresh)
	if err != nil {
		return nil, nil, err
	}
	return append(probs, tprobs...), tables, nil
}

// freshTarget reports whether the target holds no state for this migration yet.
func (d *Daemon) freshTarget(ctx context.Context, dst *pgx.Conn) (bool, error) {
	var exists bool
	if err := dst.QueryRow(ctx, `SELECT to_regclass('_migrated.migration') IS NOT NULL`).Scan(&exists); err != nil {
		return false, fmt.Errorf("look for migration state on the target: %w", err)
	}
	if !exists {
		return true, nil
	}
	if err := dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM _migrated.migration WHERE name = $1)`, d.cfg.Name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look for migration state on the target: %w", err)
	}
	return !exists, nil
}

// Run drives the migration until ctx ends or a permanent error. It resumes from the state on the
// target, so running it again after any stop continues where the last run left off.
func (d *Daemon) Run(ctx context.Context) error {
	probs, tables, err := d.check(ctx)
	if err != nil {
		return err
	}
	if len(probs) > 0 {
		return &PreflightError{Problems: probs}
	}
	pool, err := pgxpool.New(ctx, d.dstDSN)
	if err != nil {
		return fmt.Errorf("connect to target: %w", redactErr(err, d.dstDSN))
	}
	defer pool.Close()
	d.target = pool
	store, err := state.Open(ctx, pool, d.cfg.Name)
	if err != nil {
		return err
	}
	d.mu.Lock() // Status reads the store from API goroutines
	d.store = store
	d.mu.Unlock()
	d.tables = tables

	mig, err := d.store.Load(ctx)
	if errors.Is(err, state.ErrNotFound) {
		if err := d.start(ctx); err != nil {
			// Once the migration is recorded, a copy cut short by the network resumes below.
			if _, lerr := d.store.Load(ctx); lerr != nil || !isConnectionError(err) {
				return d.fail(ctx, "snapshot", err)
			}
			d.log.Warn("snapshot interrupted; resuming", zap.Error(err))
		}
		mig, err = d.store.Load(ctx)
	}
	if err != nil {
		return err
	}
	switch mig.Phase {
	case state.PhaseSnapshotting, state.PhaseFailed:
		if mig.Phase == state.PhaseFailed {
			d.log.Warn("resuming a failed migration", zap.String("error", mig.Error))
		}
		if err := d.retry(ctx, "snapshot", func() error { return d.finishSnapshot(ctx, mig) }); err != nil {
			return d.fail(ctx, "snapshot", err)
		}
	case state.PhaseStreaming:
	default:
		return fmt.Errorf("migration %s is %s; nothing to run", d.cfg.Name, mig.Phase)
	}
	if err := d.setPhase(ctx, state.PhaseStreaming, ""); err != nil {
		return err
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	if err := d.stream(ctx, mig); err != nil {
		return d.fail(ctx, "apply", err)
	}
	return nil
}

// snapshotAttempts bounds how often a snapshot broken by a transient failure is resumed in-process
// before the daemon stops with the error.
const snapshotAttempts = 5

// retry runs a resumable step again after transient failures (a dropped connection, a restarting
// server), with backoff. Each attempt resumes from the state on the target.
func (d *Daemon) retry(ctx context.Context, component string, step func() error) error {
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		err := step()
		if err == nil || ctx.Err() != nil || attempt >= snapshotAttempts || !transientStream(err) || !isConnectionError(err) {
			return err
		}
		d.m.Errors.WithLabelValues(component).Inc()
		d.log.Warn(component+" interrupted; resuming", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, d.cfg.Stream.ReconnectMaxBackoff.Duration())
	}
}

// isConnectionError reports a failure below SQL, or a server going away: worth a retry.
func isConnectionError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe") ||
		strings.Contains(err.Error(), "conn closed")
}

// fail records a permanent error as the failed phase, unless the daemon is merely stopping.
func (d *Daemon) fail(ctx context.Context, component string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	d.m.Errors.WithLabelValues(component).Inc()
	if d.store != nil {
		if serr := d.setPhase(context.WithoutCancel(ctx), state.PhaseFailed, err.Error()); serr != nil {
			d.log.Error("record failed phase", zap.Error(serr))
		}
	}
	return err
}

func (d *Daemon) setPhase(ctx context.Context, phase state.Phase, reason string) error {
	if err := d.store.SetPhase(ctx, phase, reason); err != nil {
		return err
	}
	d.mu.Lock()
	changed := d.status.Phase != string(phase)
	d.status.Phase, d.status.Error = string(phase), reason
	if changed {
		d.status.Since = time.Now()
	}
	d.mu.Unlock()
	d.m.SetPhase(string(phase))
	if changed {
		d.log.Info("phase", zap.String("phase", string(phase)))
	}
	return nil
}

// Ready reports whether the migration is streaming.
func (d *Daemon) Ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Phase == string(state.PhaseFailed) {
		return fmt.Errorf("migration failed: %s", d.status.Error)
	}
	if !d.ready {
		return fmt.Errorf("phase is %s", d.status.Phase)
	}
	return nil
}

// Status returns a snapshot of the migration's state for the API. Table progress is read from
// the target state, plus the rows of chunks still in flight.
func (d *Daemon) Status() server.Status {
	d.mu.Lock()
	st := d.status
	copier := d.copier
	store := d.store
	d.mu.Unlock()
	if store == nil {
		return st
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	tables, err := store.Tables(ctx)
	if err != nil {
		return st
	}
	st.Snapshot = server.SnapshotState{TablesTotal: len(tables)}
	for _, t := range tables {
		ts := server.TableState{Table: t.Schema + "." + t.Name, State: t.State, RowsCopied: t.RowsCopied,
			RowsEstimate: t.RowsEstimate, ChunksTotal: t.ChunksTotal, ChunksDone: t.ChunksDone}
		if copier != nil && t.State != state.TableDone {
			if live := copier.Live(ts.Table); live > ts.RowsCopied {
				ts.RowsCopied = live
			}
		}
		if t.State == state.TableDone {
			st.Snapshot.TablesDone++
		}
		st.Snapshot.RowsCopied += ts.RowsCopied
		st.Snapshot.RowsEstimate += max(ts.RowsEstimate, ts.RowsCopied)
		st.Snapshot.Tables = append(st.Snapshot.Tables, ts)
	}
	if st.Phase == string(state.PhaseSnapshotting) && st.Snapshot.RowsCopied > 0 {
		elapsed := time.Since(st.Since).Seconds()
		left := st.Snapshot.RowsEstimate - st.Snapshot.RowsCopied
		if left > 0 {
			st.Snapshot.ETASeconds = elapsed / float64(st.Snapshot.RowsCopied) * float64(left)
		}
	}
	return st
}

// redactErr removes the password of dsn from an error's text, for errors that echo a DSN.
func redactErr(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	_, pw := postgres.SplitPassword(dsn)
	if pw != "" && strings.Contains(msg, pw) {
		return errors.New(strings.ReplaceAll(msg, pw, "xxxxx"))
	}
	return err
}

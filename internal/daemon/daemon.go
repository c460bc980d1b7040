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
	"github.com/migrated/migrated/internal/verify"
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
	source *pgxpool.Pool
	store  *state.Store
	tables []*schema.Table
	// fwd and rev are the two directions of replication.
	fwd, rev *leg
	// srcStore holds the reverse stream's checkpoint on the old source; opened at the cutover.
	srcStore *state.Store

	mu     sync.Mutex
	status server.Status
	copier *snapshot.Copier
	ready  bool
	// work is the phase's running work (snapshot or a stream); nil between works.
	work *work
	// op names the operator action running now; while set, no new work starts.
	op     string
	paused bool
	// wake is closed and replaced whenever op or paused changes.
	wake chan struct{}
	// verifying is set while a verify runs.
	verifying bool
	// runCtx is Run's context, for background work that actions start.
	runCtx context.Context
	// binlog is set when MySQL is on either side; the PostgreSQL fields above stay unused then.
	binlog *binlogRun
	// actionable is set once a binlog migration's state is readable, so actions may run.
	actionable bool
}

// New prepares a daemon. It does not connect yet.
func New(cfg *config.Config, log *zap.Logger, m *metrics.Metrics) (*Daemon, error) {
	if cfg.Source.Engine == "mysql" || cfg.Target.Engine == "mysql" {
		return newBinlog(cfg, log, m)
	}
	src, err := cfg.Source.PostgresDSN()
	if err != nil {
		return nil, fmt.Errorf("source.dsn: %w", err)
	}
	dst, err := cfg.Target.PostgresDSN()
	if err != nil {
		return nil, fmt.Errorf("target.dsn: %w", err)
	}
	if src, err = postgres.SessionDSN(src); err != nil {
		return nil, fmt.Errorf("source.dsn: %w", err)
	}
	if dst, err = postgres.SessionDSN(dst); err != nil {
		return nil, fmt.Errorf("target.dsn: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log, m: m, srcDSN: src, dstDSN: dst, wake: make(chan struct{})}
	d.initStatus()
	return d, nil
}

// newBinlog prepares a daemon for a migration with MySQL on either side, whose snapshot is
// reconciled with the stream by watermarks.
func newBinlog(cfg *config.Config, log *zap.Logger, m *metrics.Metrics) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, m: m, wake: make(chan struct{})}
	if err := d.setupBinlog(); err != nil {
		return nil, err
	}
	d.initStatus()
	return d, nil
}

func (d *Daemon) initStatus() {
	cfg := d.cfg
	d.status = server.Status{
		Migration: cfg.Name,
		Phase:     "starting",
		Since:     time.Now(),
		Source:    server.Endpoint{Engine: cfg.Source.Engine, DSN: cfg.Source.Redacted()},
		Target:    server.Endpoint{Engine: cfg.Target.Engine, DSN: cfg.Target.Redacted()},
	}
}

func (d *Daemon) slotName() string    { return "migrated_" + d.cfg.Name }
func (d *Daemon) pubName() string     { return "migrated_" + d.cfg.Name }
func (d *Daemon) reverseName() string { return "migrated_" + d.cfg.Name + "_reverse" }

// Check runs preflight on both sides and returns the problems found. It changes nothing.
func (d *Daemon) Check(ctx context.Context) ([]postgres.Problem, error) {
	if d.binlog != nil {
		probs, _, err := d.checkBinlog(ctx)
		return probs, err
	}
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
// target, so running it again after any stop continues where the last run left off: a snapshot
// goes on, a stream resumes from its checkpoint, a cutover or rollback cut short by a crash is
// finished or undone as its journal says.
func (d *Daemon) Run(ctx context.Context) error {
	if d.binlog != nil {
		return d.runBinlog(ctx)
	}
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
	srcPool, err := pgxpool.New(ctx, d.srcDSN)
	if err != nil {
		return fmt.Errorf("connect to source: %w", redactErr(err, d.srcDSN))
	}
	defer srcPool.Close()
	d.target, d.source = pool, srcPool
	store, err := state.Open(ctx, pool, d.cfg.Name)
	if err != nil {
		return err
	}
	if err := verify.Open(ctx, pool); err != nil {
		return err
	}
	// Actions may run once the store is published; everything they read is set before.
	d.tables = tables
	d.fwd = &leg{direction: forward, fromDSN: d.srcDSN, toDSN: d.dstDSN, slot: d.slotName(), pub: d.pubName(), store: store, status: &d.status.Stream}
	d.rev = &leg{direction: reverse, fromDSN: d.dstDSN, toDSN: d.srcDSN, slot: d.reverseName(), pub: d.reverseName(), status: &server.StreamState{}}
	d.mu.Lock() // Status reads the store from API goroutines
	d.store = store
	d.runCtx = ctx
	d.mu.Unlock()

	if _, err := d.store.Load(ctx); errors.Is(err, state.ErrNotFound) {
		// The first copy runs as the phase's work, so that cancel can stop it.
		if err := d.runWork(ctx, d.start); err != nil && !errors.Is(err, errStopped) {
			// Once the migration is recorded, a copy cut short by the network resumes below.
			if _, lerr := d.store.Load(ctx); lerr != nil || !isConnectionError(err) {
				return d.fail(ctx, state.PhaseSnapshotting, "snapshot", err)
			}
			d.log.Warn("snapshot interrupted; resuming", zap.Error(err))
		}
	} else if err != nil {
		return err
	}
	if err := d.loadOperation(ctx); err != nil {
		return err
	}
	d.resumeVerify(ctx)
	if err := d.supervise(ctx); err != nil {
		// Stay up with the connections open: status shows the failure, and complete or cancel
		// still work, until the operator restarts the daemon.
		d.log.Error("migration failed; fix the cause, then restart migrated to resume", zap.Error(err))
		<-ctx.Done()
		return err
	}
	return nil
}

// supervise runs the work of the current phase (the snapshot, the forward stream, the reverse
// stream) until ctx ends. Operator actions stop that work, change the phase and let supervise
// start the work of the new one.
func (d *Daemon) supervise(ctx context.Context) error {
	for {
		if err := d.waitTurn(ctx); err != nil {
			return nil
		}
		mig, err := d.store.Load(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// A cutover or rollback that a crash cut short is finished or undone before anything else.
		if last, err := d.store.LastOperation(ctx); err != nil {
			return err
		} else if last != nil && last.FinishedAt == nil {
			if err := d.recoverOperation(ctx); err != nil && ctx.Err() == nil {
				return d.fail(ctx, mig.Phase, "cutover", err)
			}
			continue
		}
		phase := mig.ResumePhase()
		if mig.Phase == state.PhaseFailed {
			d.log.Warn("resuming a failed migration", zap.String("phase", string(phase)), zap.String("error", mig.Error))
		}
		var work func(context.Context) error
		component := "apply"
		switch phase {
		case state.PhaseSnapshotting:
			component = "snapshot"
			work = func(ctx context.Context) error {
				if err := d.retry(ctx, "snapshot", func() error { return d.finishSnapshot(ctx, mig) }); err != nil || ctx.Err() != nil {
					return err
				}
				return d.setPhase(ctx, state.PhaseStreaming, "")
			}
		case state.PhaseStreaming:
			work = func(ctx context.Context) error { return d.runLeg(ctx, d.fwd, phase) }
		case state.PhaseSwitched:
			work = func(ctx context.Context) error { return d.runLeg(ctx, d.rev, phase) }
		case state.PhaseCuttingOver, state.PhaseRollingBack:
			return d.fail(ctx, phase, "cutover", fmt.Errorf("the migration is %s but no operation is recorded as running; the state on the target is inconsistent", phase))
		default: // completed, cancelled: nothing left to run; keep serving status
			if err := d.setPhase(ctx, phase, ""); err != nil {
				return err
			}
			d.log.Info("migration is over; nothing to run", zap.String("phase", string(phase)))
			<-ctx.Done()
			return nil
		}
		err = d.runWork(ctx, work)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errStopped) || err == nil {
			continue
		}
		// An operation running now (a cutover draining this stream) decides first; if it moved
		// the migration on, this error belongs to a stream that is over.
		if werr := d.waitTurn(ctx); werr != nil {
			return nil
		}
		if now, lerr := d.store.Load(ctx); lerr == nil && now.Phase != mig.Phase {
			d.log.Warn("a stream error after an operation moved the migration on; ignored", zap.Error(err))
			continue
		}
		return d.fail(ctx, phase, component, err)
	}
}

// runLeg streams one direction, with the phase recorded and the daemon ready.
func (d *Daemon) runLeg(ctx context.Context, l *leg, phase state.Phase) error {
	if l.direction == reverse {
		if _, err := d.legStore(ctx, l); err != nil {
			return err
		}
		d.mu.Lock()
		d.status.Reverse = l.status
		d.mu.Unlock()
	}
	if err := d.setPhase(ctx, phase, ""); err != nil {
		return err
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	return d.stream(ctx, l)
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

// fail records a permanent error as the failed phase, remembering the phase it happened in,
// unless the daemon is merely stopping.
func (d *Daemon) fail(ctx context.Context, in state.Phase, component string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	d.m.Errors.WithLabelValues(component).Inc()
	if d.store != nil {
		if serr := d.store.SetFailed(context.WithoutCancel(ctx), in, err.Error()); serr != nil {
			d.log.Error("record failed phase", zap.Error(serr))
		}
		d.showPhase(state.PhaseFailed, err.Error())
	}
	return err
}

func (d *Daemon) setPhase(ctx context.Context, phase state.Phase, reason string) error {
	if err := d.store.SetPhase(ctx, phase, reason); err != nil {
		return err
	}
	d.showPhase(phase, reason)
	return nil
}

// showPhase publishes a phase already recorded on the target to status, metrics and the log.
func (d *Daemon) showPhase(phase state.Phase, reason string) {
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
	// The pointed-to parts change under d.mu too: copy them.
	if st.Reverse != nil {
		r := *st.Reverse
		st.Reverse = &r
	}
	if st.Operation != nil {
		o := *st.Operation
		st.Operation = &o
	}
	if st.Verify != nil {
		v := *st.Verify
		st.Verify = &v
	}
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

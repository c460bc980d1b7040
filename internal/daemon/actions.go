package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/state"
	"github.com/migrated/migrated/internal/verify"
	"go.uber.org/zap"
)

// Actions returns the operator actions for the control API.
func (d *Daemon) Actions() map[string]server.ActionFunc {
	if d.binlog != nil {
		return d.binlogActions()
	}
	return map[string]server.ActionFunc{
		"cutover":  d.Cutover,
		"rollback": d.Rollback,
		"complete": d.Complete,
		"cancel":   d.Cancel,
		"pause":    d.Pause,
		"resume":   d.Resume,
		"verify":   d.Verify,
	}
}

func conflict(format string, args ...any) error {
	return &server.ActionError{Code: http.StatusConflict, Msg: fmt.Sprintf(format, args...)}
}

func (d *Daemon) result(action, msg string) server.ActionResult {
	d.log.Info(msg, zap.String("action", action))
	return server.ActionResult{Action: action, Phase: d.phase(), Message: msg}
}

// Pause stops the running stream at its checkpoint until Resume (or a restart).
func (d *Daemon) Pause(ctx context.Context, _ server.ActionRequest) (any, error) {
	if err := d.acquire("pause"); err != nil {
		return nil, err
	}
	defer d.release()
	if p := d.phase(); p != string(state.PhaseStreaming) && p != string(state.PhaseSwitched) {
		return nil, conflict("pause refused: phase is %s; only a running stream (streaming, switched) can be paused", p)
	}
	d.mu.Lock()
	already := d.paused
	d.paused = true
	d.status.Paused = true
	d.mu.Unlock()
	if already {
		return d.result("pause", "already paused"), nil
	}
	stop := d.stopWork
	if d.binlog != nil {
		stop = d.binlog.stopWork
	}
	if err := stop(ctx); err != nil {
		return nil, err
	}
	return d.result("pause", "paused at the last checkpoint; lag grows until `migrated resume` (a restart also resumes)"), nil
}

// Resume restarts a paused stream from its checkpoint.
func (d *Daemon) Resume(ctx context.Context, _ server.ActionRequest) (any, error) {
	d.mu.Lock()
	was := d.paused
	d.paused, d.status.Paused = false, false
	d.notify()
	d.mu.Unlock()
	if !was {
		return d.result("resume", "not paused; nothing to do"), nil
	}
	return d.result("resume", "resumed from the last checkpoint"), nil
}

// Cancel abandons a migration before its cutover: the stream stops and the slot and publication
// are dropped from the source. The target keeps what was copied.
func (d *Daemon) Cancel(ctx context.Context, req server.ActionRequest) (any, error) {
	if err := d.acquire("cancel"); err != nil {
		return nil, err
	}
	defer d.release()
	if req.Confirm != d.cfg.Name {
		return nil, conflict("cancel refused: pass --confirm %s", d.cfg.Name)
	}
	p, err := d.resumePhase(ctx)
	if err != nil {
		return nil, err
	}
	switch p {
	case state.PhaseSnapshotting, state.PhaseStreaming:
	default:
		return nil, conflict("cancel refused: phase is %s; cancel abandons a migration before its cutover (after it, use rollback, then cancel; or complete)", p)
	}
	if err := d.stopWork(ctx); err != nil {
		return nil, err
	}
	if err := d.dropLeg(ctx, d.fwd, true); err != nil {
		return nil, err
	}
	if err := d.setPhase(ctx, state.PhaseCancelled, ""); err != nil {
		return nil, err
	}
	return d.result("cancel", "cancelled: slot and publication dropped from the source, which takes writes as before; the target keeps the copied tables and _migrated, drop them when you no longer need them (after a rollback the target is still read-only: ALTER DATABASE ... RESET default_transaction_read_only)"), nil
}

// Complete ends the migration after a cutover: the reverse stream stops and every slot and
// publication is dropped. The old source stays read-only.
func (d *Daemon) Complete(ctx context.Context, req server.ActionRequest) (any, error) {
	if err := d.acquire("complete"); err != nil {
		return nil, err
	}
	defer d.release()
	if req.Confirm != d.cfg.Name {
		return nil, conflict("complete refused: pass --confirm %s", d.cfg.Name)
	}
	// A reverse stream that broke for good (failed in switched) can still be completed.
	if p, err := d.resumePhase(ctx); err != nil {
		return nil, err
	} else if p != state.PhaseSwitched {
		return nil, conflict("complete refused: phase is %s; complete ends the dual-write phase (switched) after a cutover", d.phase())
	}
	if last, err := d.store.LastOperation(ctx); err != nil {
		return nil, err
	} else if last != nil && last.FinishedAt == nil {
		return nil, conflict("complete refused: the %s is not finished (%s); restart migrated to finish it first", last.Op, last.Error)
	}
	if err := d.stopWork(ctx); err != nil {
		return nil, err
	}
	if err := d.dropLeg(ctx, d.rev, true); err != nil {
		return nil, err
	}
	if err := d.dropLeg(ctx, d.fwd, true); err != nil {
		return nil, err
	}
	// Only this migration's checkpoint: _migrated there may hold another migration's history.
	if _, err := d.source.Exec(ctx, "DELETE FROM _migrated.progress WHERE migration = $1", d.cfg.Name); err != nil {
		return nil, fmt.Errorf("drop the reverse stream's checkpoint from the source: %w", err)
	}
	if err := d.setPhase(ctx, state.PhaseCompleted, ""); err != nil {
		return nil, err
	}
	return d.result("complete", "completed: slots and publications dropped on both sides; the old source stays read-only (ALTER DATABASE ... RESET default_transaction_read_only to reopen it); _migrated on the target keeps the history, and _migrated on the old source can be dropped when no other migration uses it"), nil
}

// resumePhase is the phase whose work runs now or would after a restart (see
// state.Migration.ResumePhase).
func (d *Daemon) resumePhase(ctx context.Context) (state.Phase, error) {
	if p := state.Phase(d.phase()); p != state.PhaseFailed {
		return p, nil
	}
	mig, err := d.store.Load(ctx)
	if err != nil {
		return "", err
	}
	return mig.ResumePhase(), nil
}

// dropLeg drops a stream's slot and, with pub, its publication, on the side the stream reads.
func (d *Daemon) dropLeg(ctx context.Context, l *leg, pub bool) error {
	conn, err := d.connect(ctx, l.fromDSN)
	if err != nil {
		return fmt.Errorf("connect to the %s: %w", d.side(l.fromDSN), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := postgres.DropSlot(ctx, conn.Conn, l.slot); err != nil {
		return err
	}
	if !pub {
		return nil
	}
	return postgres.DropPublication(ctx, conn.Conn, l.pub)
}

// Verify starts an online verify in the background, or resumes the unfinished one.
func (d *Daemon) Verify(ctx context.Context, _ server.ActionRequest) (any, error) {
	if err := d.acquire("verify"); err != nil {
		return nil, err
	}
	defer d.release()
	if p := d.phase(); p != string(state.PhaseStreaming) {
		return nil, conflict("verify refused: phase is %s; verify compares the source with the target while streaming", p)
	}
	d.mu.Lock()
	running := d.verifying
	d.mu.Unlock()
	if running {
		return d.result("verify", "a verify is already running; follow it with `migrated status`"), nil
	}
	d.startVerify()
	return d.result("verify", "verify started; follow it with `migrated status` or `migrated verify --wait`"), nil
}

// resumeVerify restarts a verify that a restart interrupted, and shows the last result.
func (d *Daemon) resumeVerify(ctx context.Context) {
	res, ok, err := verify.Last(ctx, d.target, d.cfg.Name)
	if err != nil || !ok {
		return
	}
	d.showVerify(res, false)
	if res.FinishedAt.IsZero() && res.Error == "" {
		d.startVerify()
		return
	}
	if res.Error == "" {
		d.verifyMetrics(res) // the last finished run, so dashboards need not wait for the next
	}
}

// startVerify runs verify in the background for the daemon's lifetime.
func (d *Daemon) startVerify() {
	d.mu.Lock()
	d.verifying = true
	ctx := d.runCtx
	d.mu.Unlock()
	go func() {
		roots := postgres.Roots(d.tables)
		res, err := verify.Run(ctx, verify.Options{
			Migration: d.cfg.Name, Source: d.source, Target: d.target, Tables: roots,
			ChunkRows: d.cfg.Verify.ChunkRows, Log: d.log,
			Applied:  func(context.Context) (postgres.LSN, error) { return d.fwd.Applied(), nil },
			Progress: func(r verify.Result) { d.showVerify(r, true) },
		})
		d.finishVerify(ctx, res, err) // verify logs the finished run itself
	}()
}

// finishVerify publishes a verify run that ended, with its error unless the daemon is stopping.
func (d *Daemon) finishVerify(ctx context.Context, res verify.Result, err error) {
	if err != nil && ctx.Err() == nil {
		res.Error = err.Error()
		d.m.Errors.WithLabelValues("verify").Inc()
		d.log.Error("verify failed", zap.Error(err))
	}
	d.mu.Lock()
	d.verifying = false
	d.mu.Unlock()
	d.showVerify(res, false)
	if err == nil {
		d.verifyMetrics(res)
	}
}

// verifyMetrics publishes a finished run's result.
func (d *Daemon) verifyMetrics(r verify.Result) {
	at := r.FinishedAt
	if at.IsZero() {
		at = time.Now()
	}
	d.m.VerifyChunks.Set(float64(r.Chunks))
	d.m.VerifyMismatchedChunks.Set(float64(r.Mismatched))
	d.m.VerifyLastSuccess.Set(float64(at.Unix()))
}

func (d *Daemon) showVerify(r verify.Result, running bool) {
	st := &server.VerifyState{Run: r.Run, Running: running, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		Tables: r.Tables, TablesDone: r.TablesDone, Chunks: r.Chunks, Mismatched: r.Mismatched, Clean: r.Clean, Error: r.Error}
	for _, m := range r.Samples {
		st.Samples = append(st.Samples, server.Mismatch{Table: m.Table, Key: m.Key, Kind: m.Kind})
	}
	d.mu.Lock()
	d.status.Verify = st
	d.mu.Unlock()
}

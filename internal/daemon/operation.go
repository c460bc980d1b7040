package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/config"
	"github.com/migrated/migrated/internal/cutover"
	"github.com/migrated/migrated/internal/hooks"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/state"
	"github.com/migrated/migrated/internal/verify"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// FaultEnv names a test-only fault: "crash-before-done:<step>" kills the daemon with SIGKILL
// after the step's work succeeded and before its journal entry says done, the worst moment for a
// crash. It exists so the crash-recovery tests can hit every step.
const FaultEnv = "MIGRATED_FAULT"

// opStore keeps the operations and their journals, beside the migration's state on the target:
// a state.Store on PostgreSQL, a mysql.OpStore on MySQL.
type opStore interface {
	BeginOperation(ctx context.Context, op string, phase state.Phase) (*state.Operation, error)
	Journal(ctx context.Context, o *state.Operation, e state.JournalEntry, phase state.Phase) error
	SaveOperation(ctx context.Context, o *state.Operation) error
	FinishOperation(ctx context.Context, o *state.Operation, phase state.Phase) error
	LastOperation(ctx context.Context) (*state.Operation, error)
}

// ops is the operation store of this migration.
func (d *Daemon) ops() opStore {
	if d.binlog != nil {
		if d.binlog.ops != nil {
			return d.binlog.ops
		}
		if s, ok := d.binlog.sink.(*pgSink); ok && s.store != nil {
			return s.store
		}
		return nil
	}
	return d.store
}

// lastVerify is the newest verify result: kept on the target for PostgreSQL, in memory for a
// migration with MySQL on either side (a restart forgets it).
func (d *Daemon) lastVerify(ctx context.Context) (verify.Result, bool, error) {
	if d.binlog != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		r := d.binlog.verified
		return r, !r.FinishedAt.IsZero(), nil
	}
	return verify.Last(ctx, d.target, d.cfg.Name)
}

// opRun is one cutover or rollback being driven through its journal.
type opRun struct {
	*state.Operation
	op        cutover.Op
	fencedAt  time.Time
	fence     postgres.LSN
	aborting  bool
	committed bool
	routed    bool // the hooks ran in this process
}

func (o *opRun) journal() cutover.Journal {
	j := cutover.Journal{Op: o.op}
	for _, e := range o.Journal {
		j.Entries = append(j.Entries, cutover.Entry{Step: cutover.Step(e.Step), State: cutover.EntryState(e.State)})
	}
	return j
}

// Cutover is the cutover action: judge the preconditions, and unless it is a dry run or refused,
// move the writes to the target.
func (d *Daemon) Cutover(ctx context.Context, req server.ActionRequest) (any, error) {
	return d.operate(ctx, cutover.OpCutover, req)
}

// Rollback is the rollback action: move the writes back to the old source.
func (d *Daemon) Rollback(ctx context.Context, req server.ActionRequest) (any, error) {
	return d.operate(ctx, cutover.OpRollback, req)
}

func (d *Daemon) operate(ctx context.Context, op cutover.Op, req server.ActionRequest) (any, error) {
	if err := d.acquire(string(op)); err != nil {
		return nil, err
	}
	defer d.release()
	ctx = context.WithoutCancel(ctx) // once started, an operation finishes even if the caller goes away
	plan := server.CutoverPlan{Op: string(op), DryRun: req.DryRun}
	for _, s := range cutover.Plan[op] {
		plan.Steps = append(plan.Steps, string(s))
	}
	checks := d.preconditions(ctx, op, req)
	for _, c := range checks {
		plan.Checks = append(plan.Checks, server.Check{Name: c.Name, OK: c.OK, Detail: c.Detail})
	}
	if req.DryRun {
		return plan, nil
	}
	if last, err := d.ops().LastOperation(ctx); err != nil {
		return nil, err
	} else if last != nil && last.FinishedAt == nil {
		return nil, &server.ActionError{Code: http.StatusConflict, Msg: fmt.Sprintf("%s refused: the %s started at %s is not finished (%s); restart migrated, which finishes or undoes it, first",
			op, last.Op, last.StartedAt.Format(time.RFC3339), last.Error)}
	}
	if err := cutover.Allowed(checks); err != nil {
		msg := err.Error()
		if op == cutover.OpRollback {
			msg = strings.Replace(msg, "cutover refused", "rollback refused", 1)
		}
		return nil, &server.ActionError{Code: http.StatusConflict, Msg: msg}
	}
	phase := state.PhaseCuttingOver
	if op == cutover.OpRollback {
		phase = state.PhaseRollingBack
	}
	o, err := d.ops().BeginOperation(ctx, string(op), phase)
	if err != nil {
		return nil, err
	}
	d.showPhase(phase, "")
	run := &opRun{Operation: o, op: op}
	d.log.Info("operation started", zap.String("op", string(op)), zap.Int64("id", o.ID))
	err = d.drive(ctx, run)
	plan.Result = d.operationState(run.Operation, "")
	if err != nil {
		return plan, err
	}
	return plan, nil
}

// preconditions gathers the facts and judges them.
func (d *Daemon) preconditions(ctx context.Context, op cutover.Op, req server.ActionRequest) []cutover.Check {
	now := time.Now()
	d.mu.Lock()
	phase, paused, lag := d.status.Phase, d.paused, d.status.Stream.LagSeconds
	verifying, fwdUp := d.verifying, d.status.Stream.Connected
	revUp := d.status.Reverse != nil && d.status.Reverse.Connected
	d.mu.Unlock()
	if op == cutover.OpRollback {
		// A rollback is the way out of trouble: no window, lag or verify stands in its way.
		checks := []cutover.Check{confirmCheck(d.cfg.Name, req.Confirm)}
		checks = append(checks, cutover.Check{Name: "phase", OK: phase == string(state.PhaseSwitched),
			Detail: fmt.Sprintf("phase is %s; a rollback starts only in the dual-write phase (switched)", phase)})
		if paused {
			checks = append(checks, cutover.Check{Name: "paused", Detail: "the reverse stream is paused; run `migrated resume` first"})
		}
		if !revUp {
			checks = append(checks, cutover.Check{Name: "stream", Detail: "the reverse stream is not connected, so it could not drain the target's last writes; see migrated status and the log"})
		}
		return append(checks, d.fenceCheck(ctx))
	}
	f := cutover.Facts{
		Migration: d.cfg.Name, Confirm: req.Confirm, Phase: phase, Force: req.Force,
		Lag: time.Duration(lag * float64(time.Second)), MaxLag: d.cfg.Cutover.MaxLag.Duration(),
		VerifyAge: d.cfg.Cutover.VerifyMaxAge.Duration(), Now: now,
	}
	f.InWindow, f.WindowErr = d.cfg.Cutover.InWindow(now)
	if res, ok, err := d.lastVerify(ctx); err == nil && ok && !res.FinishedAt.IsZero() {
		f.VerifiedAt, f.VerifyClean, f.VerifyError = res.FinishedAt, res.Clean && res.Error == "", res.Error
	}
	f.ReverseErr = d.probeReverse(ctx)
	if d.binlog != nil {
		if _, ok := d.binlog.dstSide.(*mysqlSide); ok {
			f.ReverseOK = "the target's binary log can feed the reverse stream (ROW, FULL, GTIDs, retention, privileges)"
		}
	}
	checks := cutover.Preconditions(f)
	checks = append(checks, d.fenceCheck(ctx))
	if verifying {
		checks = append(checks, cutover.Check{Name: "verify", Detail: "a verify is running; wait for it to finish"})
	}
	if paused {
		checks = append(checks, cutover.Check{Name: "paused", Detail: "the stream is paused; run `migrated resume` and let it catch up first"})
	} else if !fwdUp && phase == string(state.PhaseStreaming) {
		// Lag is measured only while connected: a disconnected stream's last figure is stale.
		checks = append(checks, cutover.Check{Name: "stream", Detail: "the forward stream is not connected, so its lag is unknown; see migrated status and the log"})
	}
	return checks
}

func confirmCheck(name, confirm string) cutover.Check {
	switch confirm {
	case name:
		return cutover.Check{Name: "confirm", OK: true, Detail: "migration " + name}
	case "":
		return cutover.Check{Name: "confirm", Detail: "pass --confirm " + name}
	}
	return cutover.Check{Name: "confirm", Detail: fmt.Sprintf("--confirm %q does not name this migration (%s); check that you are talking to the right daemon", confirm, name)}
}

// fenceCheck tells whether migrated's roles can fence and unfence both sides: a cutover fences
// the source and opens the target, a rollback the other way round.
func (d *Daemon) fenceCheck(ctx context.Context) cutover.Check {
	if d.binlog != nil {
		return d.binlogFenceCheck(ctx)
	}
	var problems []string
	for _, dsn := range []string{d.srcDSN, d.dstDSN} {
		conn, err := d.connect(ctx, dsn)
		if err != nil {
			problems = append(problems, fmt.Sprintf("connect to the %s: %v", d.side(dsn), err))
			continue
		}
		if err := postgres.CheckFence(ctx, conn.Conn); err != nil {
			problems = append(problems, "on the "+d.side(dsn)+", "+err.Error())
		}
		conn.Close(ctx)
	}
	if len(problems) > 0 {
		return cutover.Check{Name: "fence", Detail: strings.Join(problems, "; ")}
	}
	return cutover.Check{Name: "fence", OK: true, Detail: "both sides can be fenced and opened"}
}

// probeReverse checks that the target can serve the reverse stream: logical WAL, a free slot and
// sender, and the privileges, as preflight checks the source.
func (d *Daemon) probeReverse(ctx context.Context) error {
	if d.binlog != nil {
		return d.binlogProbeReverse(ctx)
	}
	conn, err := d.connect(ctx, d.dstDSN)
	if err != nil {
		return fmt.Errorf("connect to the target: %w", err)
	}
	defer conn.Close(ctx)
	probs, err := postgres.CheckSource(ctx, conn.Conn, d.tables, d.reverseName())
	if err != nil {
		return err
	}
	if len(probs) > 0 {
		var msgs []string
		for _, p := range probs {
			// The checks are written for a source: here the target is the reverse stream's source.
			msgs = append(msgs, "target (as the reverse stream's source): "+p.String())
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// loadOperation shows the last operation in status after a restart.
func (d *Daemon) loadOperation(ctx context.Context) error {
	o, err := d.ops().LastOperation(ctx)
	if err != nil || o == nil {
		return err
	}
	st := d.operationState(o, "")
	d.mu.Lock()
	d.status.Operation = st
	d.mu.Unlock()
	return nil
}

// recoverOperation finishes or undoes an operation that a crash interrupted, as its journal says.
func (d *Daemon) recoverOperation(ctx context.Context) error {
	if err := d.acquire("recovery"); err != nil {
		return err
	}
	defer d.release()
	o, err := d.ops().LastOperation(ctx)
	if err != nil {
		return err
	}
	if o == nil || o.FinishedAt != nil {
		return nil
	}
	run := &opRun{Operation: o, op: cutover.Op(o.Op)}
	if d.binlog == nil {
		if run.fence, err = postgres.ParseLSN(o.FencePosition); err != nil && o.FencePosition != "" {
			return err
		}
	}
	if len(o.Journal) == 0 {
		// Recorded but never started: nothing was changed, and a restart must not start a
		// cutover nobody is watching.
		o.Error = "interrupted by a restart before its first step; nothing was changed"
		_ = d.finish(ctx, run, cutover.Action{Aborting: true, Finished: true}, nil)
		return nil
	}
	next, err := cutover.Next(run.journal())
	if err != nil {
		return err
	}
	d.log.Warn("resuming an interrupted operation", zap.String("op", o.Op), zap.Int64("id", o.ID), zap.Stringer("next", next))
	err = d.drive(context.WithoutCancel(ctx), run)
	if _, aborted := errors.AsType[*server.ActionError](err); err != nil && !aborted {
		return err
	}
	return nil
}

// undoTimeout bounds one attempt at undoing an operation, so that an unreachable side cannot
// hold the fence forever; the attempt is retried.
const undoTimeout = 30 * time.Second

// postCommitAttempts bounds the retries of a step after the point of no return before the daemon
// gives up and asks the operator to act. Restarting migrated retries again.
const postCommitAttempts = 5

// drive runs the operation's journal to its end: the next step, again and again, as
// cutover.Next decides. It returns the error that made the operation abort, if it did.
func (d *Daemon) drive(ctx context.Context, o *opRun) error {
	var cause error
	failures := 0
	for {
		next, err := cutover.Next(o.journal())
		if err != nil {
			return err
		}
		// A failure before the commit aborts, even when the journal could not record it.
		if cause != nil && !next.Committed && !next.Aborting {
			next = cutover.Action{Step: cutover.Undo(o.op), Aborting: true}
		}
		o.aborting, o.committed = next.Aborting, next.Committed
		d.publishOperation(o, string(next.Step))
		if next.Finished {
			return d.finish(ctx, o, next, cause)
		}
		var budget context.Context
		var cancel context.CancelFunc
		switch {
		case next.Aborting:
			budget, cancel = context.WithTimeout(ctx, undoTimeout)
		case !next.Committed && !o.fencedAt.IsZero():
			// Before the commit, the whole write pause is bounded by cutover.timeout.
			budget, cancel = context.WithDeadline(ctx, o.fencedAt.Add(d.cfg.Cutover.Timeout.Duration()))
		default:
			budget, cancel = context.WithCancel(ctx)
		}
		err = d.runStep(budget, o, next.Step, next.Aborting)
		cancel()
		if err == nil {
			failures = 0
			continue
		}
		d.m.Errors.WithLabelValues("cutover").Inc()
		if !next.Committed && !next.Aborting {
			cause = err
			d.log.Warn("operation step failed; undoing the operation", zap.String("step", string(next.Step)), zap.Error(err))
			continue
		}
		failures++
		if failures >= postCommitAttempts {
			o.Outcome, o.Error = "failed", fmt.Sprintf("%s failed %d times: %v; fix the cause and restart migrated, which retries it", next.Step, failures, err)
			fencedEngine := d.cfg.Source.Engine
			if o.op == cutover.OpRollback {
				fencedEngine = d.cfg.Target.Engine
			}
			if next.Aborting && fencedEngine == "mysql" {
				o.Error += fmt.Sprintf("; until then the %s may still be read-only: check with SELECT @@GLOBAL.read_only, and lift it with SET GLOBAL read_only = OFF", o.op.Fenced())
			} else if next.Aborting {
				o.Error += fmt.Sprintf("; until then the %s may still be read-only: check with SHOW default_transaction_read_only in a new session, and lift it with ALTER DATABASE ... RESET default_transaction_read_only", o.op.Fenced())
			}
			_ = d.ops().SaveOperation(ctx, o.Operation)
			d.publishOperation(o, string(next.Step))
			return errors.New(o.Error)
		}
		d.log.Warn("operation step failed; retrying", zap.String("step", string(next.Step)), zap.Int("attempt", failures), zap.Error(err))
		time.Sleep(time.Duration(failures) * time.Second)
	}
}

// finish records the end of an operation and the phase it leaves the migration in.
func (d *Daemon) finish(ctx context.Context, o *opRun, next cutover.Action, cause error) error {
	phase := o.phaseAfter(next.Aborting)
	o.Outcome = "done"
	if next.Aborting {
		o.Outcome = "aborted"
		if cause != nil {
			o.Error = cause.Error()
		} else if o.Error == "" {
			o.Error = "interrupted by a restart before its commit; undone"
		}
		if !o.fencedAt.IsZero() {
			o.WriteUnavailableSeconds = time.Since(o.fencedAt).Seconds()
		}
	}
	if err := d.ops().FinishOperation(ctx, o.Operation, phase); err != nil {
		return err
	}
	d.showPhase(phase, "")
	d.publishOperation(o, "")
	d.log.Info("operation finished", zap.String("op", string(o.op)), zap.String("outcome", o.Outcome),
		zap.Float64("write_unavailable_seconds", o.WriteUnavailableSeconds), zap.String("error", o.Error))
	if next.Aborting {
		return &server.ActionError{Code: http.StatusConflict, Msg: fmt.Sprintf("%s aborted: %s; the %s takes writes again and the migration is %s. Nothing was lost.",
			o.op, o.Error, o.op.Fenced(), phase)}
	}
	return nil
}

// runStep journals one step around its work. An undo step does its work even when the journal
// cannot be written (the target may be the side that is down): lifting the fence comes first.
func (d *Daemon) runStep(ctx context.Context, o *opRun, step cutover.Step, undoing bool) error {
	if !undoing {
		if _, err := cutover.Record(o.journal(), cutover.Entry{Step: step, State: cutover.Started}); err != nil {
			return err
		}
	}
	if err := d.writeJournal(ctx, o, state.JournalEntry{Step: string(step), State: string(cutover.Started)}, ""); err != nil {
		if !undoing {
			return err
		}
		d.log.Error("cannot write the journal; undoing anyway", zap.String("step", string(step)), zap.Error(err))
	}
	d.publishOperation(o, string(step))
	started := time.Now()
	detail, err := d.stepFunc(step)(ctx, o)
	secs := time.Since(started).Seconds()
	o.StepSeconds[string(step)] = secs
	d.m.CutoverPhaseDuration.WithLabelValues(string(step)).Set(secs)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%s did not finish within cutover.timeout (%s) of the fence: %w", step, d.cfg.Cutover.Timeout, err)
		}
		if jerr := d.writeJournal(ctx, o, state.JournalEntry{Step: string(step), State: string(cutover.Failed), Detail: err.Error()}, ""); jerr != nil {
			return errors.Join(err, jerr)
		}
		return err
	}
	if f := os.Getenv(FaultEnv); f == "crash-before-done:"+string(step) {
		d.log.Warn("fault injection: killing the daemon", zap.String("step", string(step)))
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	var phase state.Phase // the commit's done record moves the migration to its new phase
	if step == cutover.CommitStep(o.op) {
		phase = o.phaseAfter(false)
	}
	if err := d.ops().SaveOperation(context.WithoutCancel(ctx), o.Operation); err != nil {
		return err
	}
	if err := d.writeJournal(ctx, o, state.JournalEntry{Step: string(step), State: string(cutover.Done), Detail: detail}, phase); err != nil {
		return err
	}
	if phase != "" {
		d.showPhase(phase, "")
	}
	d.log.Info("step done", zap.String("op", string(o.op)), zap.String("step", string(step)), zap.Float64("seconds", secs), zap.String("detail", detail))
	return nil
}

// writeJournal appends to the journal, past any deadline of the step (a step that ran out of time
// must still record that). When the write fails, the journal is read back: the commit may have
// landed even though the client saw an error, and the next entry must follow what is durable.
func (d *Daemon) writeJournal(ctx context.Context, o *opRun, e state.JournalEntry, phase state.Phase) error {
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := d.ops().Journal(jctx, o.Operation, e, phase)
	if err == nil {
		return nil
	}
	if last, lerr := d.ops().LastOperation(jctx); lerr == nil && last != nil && last.ID == o.ID {
		o.Journal = last.Journal
	}
	return err
}

// publishOperation shows the operation in status.
func (d *Daemon) publishOperation(o *opRun, step string) {
	st := d.operationState(o.Operation, step)
	d.mu.Lock()
	d.status.Operation = st
	d.mu.Unlock()
}

func (d *Daemon) operationState(o *state.Operation, step string) *server.OperationState {
	st := &server.OperationState{Op: o.Op, Step: step, Outcome: o.Outcome, StartedAt: o.StartedAt,
		FencePosition: o.FencePosition, WriteUnavailableSeconds: o.WriteUnavailableSeconds,
		StepSeconds: map[string]float64{}, Error: o.Error, HookError: o.HookError}
	for k, v := range o.StepSeconds {
		st.StepSeconds[k] = v
	}
	for _, e := range o.Journal {
		if e.State == string(cutover.Failed) {
			st.FailedStep = e.Step
		}
	}
	if o.FinishedAt != nil {
		st.FinishedAt = *o.FinishedAt
		st.Step = ""
	}
	return st
}

type stepFunc func(ctx context.Context, o *opRun) (detail string, err error)

// stepSet is the engine work of the steps: the PostgreSQL → PostgreSQL bodies, or those of a
// migration with MySQL on a side (binlogop.go).
type stepSet struct {
	fence, drain, finalCheck, counters, startLeg, commit, writable, route, undo stepFunc
}

// stepFunc is the work of a step. A rollback's steps are a cutover's with the two streams
// swapped, so most share one implementation that reads the sides from the operation's legs.
func (d *Daemon) stepFunc(s cutover.Step) stepFunc {
	set := stepSet{fence: d.fence, drain: d.drain, finalCheck: d.finalCheck, counters: d.sequences,
		startLeg: d.startLeg, commit: d.commit, writable: d.writable, route: d.route, undo: d.undo}
	if d.binlog != nil {
		set = stepSet{fence: d.fenceMy, drain: d.drainMy, finalCheck: d.finalCheckMy, counters: d.countersMy,
			startLeg: d.startLegMy, commit: d.commitMy, writable: d.writableMy, route: d.routeMy, undo: d.undoMy}
	}
	switch s {
	case cutover.StepFence, cutover.StepFenceTarget:
		return set.fence
	case cutover.StepDrain, cutover.StepDrainReverse:
		return set.drain
	case cutover.StepFinalCheck:
		return set.finalCheck
	case cutover.StepSequences, cutover.StepSequencesBack:
		return set.counters
	case cutover.StepReverse, cutover.StepForward:
		return set.startLeg
	case cutover.StepCommit, cutover.StepRollbackCommit:
		return set.commit
	case cutover.StepWritable, cutover.StepSourceWritable:
		return set.writable
	case cutover.StepRoute, cutover.StepRouteBack:
		return set.route
	case cutover.StepUnfence, cutover.StepUnfenceTarget:
		return set.undo
	}
	return func(context.Context, *opRun) (string, error) {
		return "", fmt.Errorf("no implementation of step %s", s)
	}
}

// legs returns the stream that runs before the operation, whose origin it fences, and the one
// that runs after it, whose origin takes the writes.
func (d *Daemon) legs(op cutover.Op) (before, after *leg) {
	if op == cutover.OpRollback {
		return d.rev, d.fwd
	}
	return d.fwd, d.rev
}

// phaseAfter is the phase an operation leaves the migration in: the new direction's when it
// commits, the old one's when it is undone.
func (o *opRun) phaseAfter(undone bool) state.Phase {
	if (o.op == cutover.OpCutover) != undone {
		return state.PhaseSwitched
	}
	return state.PhaseStreaming
}

// connect takes a session to one side from the daemon's pool: no connection setup inside the write
// pause. Close gives it back.
func (d *Daemon) connect(ctx context.Context, dsn string) (*pooledConn, error) {
	pool := d.target
	if dsn == d.srcDSN {
		pool = d.source
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return nil, redactErr(redactErr(err, d.srcDSN), d.dstDSN)
	}
	return &pooledConn{Conn: pc.Conn(), pc: pc}, nil
}

// pooledConn is a pool session that reads like a plain connection.
type pooledConn struct {
	*pgx.Conn
	pc *pgxpool.Conn
}

// Close returns the session to the pool.
func (c *pooledConn) Close(context.Context) error {
	c.pc.Release()
	return nil
}

func (d *Daemon) side(dsn string) string {
	if dsn == d.srcDSN {
		return "source"
	}
	return "target"
}

// fence makes the side that takes writes now read-only, and pushes a heartbeat through its
// stream so that the stream passes the fence position at once.
func (d *Daemon) fence(ctx context.Context, o *opRun) (string, error) {
	l, _ := d.legs(o.op)
	dsn := l.fromDSN
	conn, err := d.connect(ctx, dsn)
	if err != nil {
		return "", fmt.Errorf("connect to the %s: %w", d.side(dsn), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	o.fencedAt = time.Now()
	lsn, killed, err := postgres.Fence(ctx, conn.Conn, 5*time.Second)
	if err != nil {
		return "", err
	}
	o.fence, o.FencePosition = lsn, lsn.String()
	if _, err := postgres.Heartbeat(ctx, conn.Conn, l.slot); err != nil {
		return "", err
	}
	if err := postgres.FlushMark(ctx, conn.Conn); err != nil {
		return "", fmt.Errorf("flush the WAL after the fence: %w", err)
	}
	return fmt.Sprintf("%s fenced at %s; %d application session(s) terminated", d.side(dsn), lsn, killed), nil
}

// drain waits until the leg has durably applied everything up to the fence, then stops it.
func (d *Daemon) drain(ctx context.Context, o *opRun) (string, error) {
	l, _ := d.legs(o.op)
	if o.fence == 0 {
		return "", errors.New("no fence position recorded")
	}
	w := d.currentWork()
	var done chan struct{} // nil, never ready, when no work runs
	if w != nil {
		done = w.done
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for l.Applied() < o.fence {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the %s stream did not reach the fence position %s in time (applied %s); find what slows apply (migrated status, the target's locks) and try again: %w",
				l.direction, o.fence, l.Applied(), ctx.Err())
		case <-done:
			return "", fmt.Errorf("the %s stream stopped before reaching the fence position %s: %v", l.direction, o.fence, w.err)
		case <-tick.C:
		}
	}
	if err := d.stopWork(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("applied %s ≥ fence %s", l.Applied(), o.fence), nil
}

// finalCheck compares exact row counts on both sides, now that nothing moves, of the tables small
// enough to count within the write pause (cutover.final-check-max-rows).
func (d *Daemon) finalCheck(ctx context.Context, o *opRun) (string, error) {
	var counted []*schema.Table
	skipped := 0
	for _, t := range postgres.Roots(d.tables) {
		if rows := d.treeRows(t); rows <= d.cfg.Cutover.FinalCheckMaxRows {
			counted = append(counted, t)
		} else {
			skipped++
		}
	}
	var counts [2]map[string]int64 // source, target
	g, gctx := errgroup.WithContext(ctx)
	for i, dsn := range []string{d.srcDSN, d.dstDSN} {
		g.Go(func() error {
			conn, err := d.connect(gctx, dsn)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(gctx))
			counts[i], err = postgres.CountRows(gctx, conn.Conn, counted)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	src, dst := counts[0], counts[1]
	var diffs []string
	var rows int64
	for t, n := range src {
		rows += n
		if dst[t] != n {
			diffs = append(diffs, fmt.Sprintf("%s: source %d rows, target %d", t, n, dst[t]))
		}
	}
	if len(diffs) > 0 {
		return "", fmt.Errorf("row counts differ after the drain: %s; run `migrated verify` to find the rows", strings.Join(diffs, "; "))
	}
	return fmt.Sprintf("%d tables, %d rows, equal on both sides; %d larger table(s) not counted", len(src), rows, skipped), nil
}

// treeRows is the estimated row count of a root table with all its partitions.
func (d *Daemon) treeRows(root *schema.Table) int64 {
	var n int64
	for _, t := range d.tables {
		if t.Root == root.ID {
			n += max(t.EstimatedRows, 0)
		}
	}
	return n
}

// sequences moves every sequence on the side taking writes next past the other side's values.
func (d *Daemon) sequences(ctx context.Context, o *opRun) (string, error) {
	l, _ := d.legs(o.op)
	fromDSN, toDSN := l.fromDSN, l.toDSN
	from, err := d.connect(ctx, fromDSN)
	if err != nil {
		return "", err
	}
	defer from.Close(context.WithoutCancel(ctx))
	to, err := d.connect(ctx, toDSN)
	if err != nil {
		return "", err
	}
	defer to.Close(context.WithoutCancel(ctx))
	set, err := postgres.SyncSequences(ctx, from.Conn, to.Conn, d.cfg.Cutover.SequenceGap)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d sequence(s) moved past the %s's values", len(set), d.side(fromDSN)), nil
}

// startLeg creates the slot (and publication) of the stream that runs after the operation, on
// the side that is fenced and drained now, before that side takes any write; and records where
// the stream starts. A cutover starts the reverse stream, a rollback a fresh forward one.
func (d *Daemon) startLeg(ctx context.Context, o *opRun) (string, error) {
	_, l := d.legs(o.op)
	store, err := d.legStore(ctx, l)
	if err != nil {
		return "", err
	}
	conn, err := d.connect(ctx, l.fromDSN)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := postgres.DropSlot(ctx, conn.Conn, l.slot); err != nil {
		return "", err
	}
	if err := postgres.EnsurePublication(ctx, conn.Conn, l.pub, d.tables); err != nil {
		return "", err
	}
	start, err := postgres.CreateStreamSlot(ctx, l.fromDSN, l.slot)
	if err != nil {
		return "", redactErr(err, l.fromDSN)
	}
	if err := store.SetPosition(ctx, l.direction, start.String()); err != nil {
		return "", err
	}
	if l.direction == forward {
		// The per-table snapshot positions belong to the old slot's stream.
		if err := store.ClearSkipBefore(ctx); err != nil {
			return "", err
		}
	}
	l.applied.Store(uint64(start))
	return fmt.Sprintf("%s slot %s starts at %s", l.direction, l.slot, start), nil
}

// legStore is the store that holds a stream's checkpoint, on the side it writes to: the target
// for the forward stream, the old source for the reverse one.
func (d *Daemon) legStore(ctx context.Context, l *leg) (*state.Store, error) {
	if l.direction == forward {
		return d.store, nil
	}
	store, err := d.sourceStore(ctx)
	if err != nil {
		return nil, err
	}
	l.store = store
	return store, nil
}

// commit is the point of no return; runStep records it together with the new phase. A rollback
// also invalidates the last verify: rows moved both ways since.
func (d *Daemon) commit(ctx context.Context, o *opRun) (string, error) {
	if o.op == cutover.OpRollback {
		if err := verify.Invalidate(ctx, d.target, d.cfg.Name, "rolled back; verify again before the next cutover"); err != nil {
			return "", err
		}
	}
	return "committed", nil
}

// writable lifts the fence on the side that takes writes from now on, and closes the write pause.
func (d *Daemon) writable(ctx context.Context, o *opRun) (string, error) {
	_, l := d.legs(o.op)
	dsn := l.fromDSN
	conn, err := d.connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := postgres.Unfence(ctx, conn.Conn); err != nil {
		return "", err
	}
	if !o.fencedAt.IsZero() {
		o.WriteUnavailableSeconds = time.Since(o.fencedAt).Seconds()
		d.m.CutoverWriteUnavailable.Set(o.WriteUnavailableSeconds)
	}
	return fmt.Sprintf("%s writable", d.side(dsn)), nil
}

// route drops the stream that no longer runs, so the side it reads from stops retaining WAL,
// and runs the routing hooks. A hook failure does not undo anything: the switch is done, and
// the operator is told to route by hand.
func (d *Daemon) route(ctx context.Context, o *opRun) (string, error) {
	old, now := d.legs(o.op)
	detail := d.runHooks(ctx, o, d.side(now.fromDSN), d.endpoint(now.fromDSN), d.endpoint(old.fromDSN))
	// The old stream's slot goes after the hooks: an unreachable old side must not keep the
	// application from being routed; a failed drop is retried. The forward publication stays,
	// since a rollback streams forward again through it.
	if err := d.dropLeg(ctx, old, old.direction == reverse); err != nil {
		return "", err
	}
	if old.direction == forward {
		d.m.SourceSlotRetainedBytes.Set(0) // the forward slot is gone
	}
	return detail, nil
}

// runHooks runs the routing hooks once per operation, and returns the step's detail. A hook
// failure is recorded and shown, never undone.
func (d *Daemon) runHooks(ctx context.Context, o *opRun, writable string, now, old config.Endpoint) string {
	if o.routed { // a retry after a failed later part does not route twice
		return "routed"
	}
	f := hooks.Facts{Migration: d.cfg.Name, Op: string(o.op), Writable: writable,
		WritableEngine: now.Engine, WritableDSN: now.Redacted(),
		FencedDSN: old.Redacted(), FencePosition: o.FencePosition,
		WriteUnavailableSeconds: o.WriteUnavailableSeconds, At: time.Now()}
	detail := "routed"
	if err := hooks.Run(ctx, d.cfg.Cutover.Hooks, f); err != nil {
		o.HookError = err.Error()
		d.log.Error("routing hook failed; route the application by hand", zap.Error(err))
		detail = "hook failed: " + err.Error()
	}
	o.routed = true
	return detail
}

// undo returns the system to where it was before an operation that aborted before its commit:
// the stream prepared for the other direction is dropped and the fenced side is writable again.
func (d *Daemon) undo(ctx context.Context, o *opRun) (string, error) {
	before, after := d.legs(o.op)
	fenced := before.fromDSN
	// Writes first: the fenced side opens before anything on the other side is touched.
	fc, err := d.connect(ctx, fenced)
	if err != nil {
		return "", err
	}
	defer fc.Close(context.WithoutCancel(ctx))
	if err := postgres.Unfence(ctx, fc.Conn); err != nil {
		return "", err
	}
	if err := d.dropLeg(ctx, after, after.direction == reverse); err != nil {
		return "", fmt.Errorf("the %s is writable again, but %w", d.side(fenced), err)
	}
	return fmt.Sprintf("%s unfenced", d.side(fenced)), nil
}

// endpoint is the configured endpoint of the side at dsn.
func (d *Daemon) endpoint(dsn string) config.Endpoint {
	if dsn == d.srcDSN {
		return d.cfg.Source
	}
	return d.cfg.Target
}

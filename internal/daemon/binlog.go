package daemon

// The migration from a MySQL or MariaDB source into a MySQL or MariaDB target: preflight, the
// target schema, a snapshot reconciled with the running binlog stream by watermarks, the
// secondary keys after the copy, then streaming. Its state lives in the `_migrated` database
// of the target, written in the same transactions as the data.

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"

	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/mysql"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/snapshot"
	"github.com/migrated/migrated/internal/state"
	"github.com/migrated/migrated/internal/verify"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// binlogRun is the state of a migration with MySQL on either side.
type binlogRun struct {
	source reconSource
	sink   binlogSink
	rec    *snapshot.Reconciler
	// fwd streams the source into the target; rev streams the target back into the old
	// source in the dual-write phase.
	fwd, rev *binlogLeg
	// ops keeps the cutover and rollback journal on a MySQL target; a PostgreSQL target's
	// state store keeps it there.
	ops *mysql.OpStore
	// srcSide and dstSide do the engine work of a cutover and a rollback.
	srcSide, dstSide opSide
	// src is the source when it is MySQL; dst the target when it is MySQL.
	src, dst mysql.Addr
	// verified is the newest finished verify; guarded by Daemon.mu.
	verified verify.Result

	// mu guards the running work: stop ends it, done is closed when it has ended.
	mu   sync.Mutex
	stop context.CancelFunc
	done chan struct{}
}

// stopWork ends the running snapshot or stream, if any, and waits for it.
func (b *binlogRun) stopWork(ctx context.Context) error {
	b.mu.Lock()
	stop, done := b.stop, b.done
	b.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setupBinlog prepares the run of a migration with MySQL on either side: the source and target,
// the two streams, and the engine work of a cutover on each server.
func (d *Daemon) setupBinlog() error {
	var source reconSource
	switch d.cfg.Source.Engine {
	case "mysql":
		src, err := mysql.ParseDSN(d.cfg.Source.DSN, d.cfg.Source.Password)
		if err != nil {
			return fmt.Errorf("source.dsn: %w", err)
		}
		source = &mysqlSource{d: d, addr: src}
	default:
		src, err := d.cfg.Source.PostgresDSN()
		if err != nil {
			return fmt.Errorf("source.dsn: %w", err)
		}
		if src, err = postgres.SessionDSN(src); err != nil {
			return fmt.Errorf("source.dsn: %w", err)
		}
		source = &pgSource{d: d, dsn: src}
	}
	var sink binlogSink
	switch d.cfg.Target.Engine {
	case "mysql":
		dst, err := mysql.ParseDSN(d.cfg.Target.DSN, d.cfg.Target.Password)
		if err != nil {
			return fmt.Errorf("target.dsn: %w", err)
		}
		sink = &mysqlSink{d: d, addr: dst}
	default:
		dst, err := d.cfg.Target.PostgresDSN()
		if err != nil {
			return fmt.Errorf("target.dsn: %w", err)
		}
		if dst, err = postgres.SessionDSN(dst); err != nil {
			return fmt.Errorf("target.dsn: %w", err)
		}
		sink = &pgSink{d: d, dsn: dst}
	}
	b := &binlogRun{source: source, sink: sink, rec: &snapshot.Reconciler{
		Migration:      d.cfg.Name,
		WatermarkTable: source.watermarkTable(),
		Log:            d.log.Named("snapshot"),
	}}
	b.fwd = &binlogLeg{direction: forward, source: source, sink: sink, rec: b.rec, status: &d.status.Stream}
	// The cutover, the reverse stream into the old source and the rollback.
	var rsrc reconSource
	var rsink binlogSink
	switch src := source.(type) {
	case *mysqlSource:
		b.src = src.addr
		b.srcSide = &mysqlSide{d: d, name: "source", addr: src.addr}
		rsink = &mysqlSink{d: d, addr: src.addr, stream: reverse}
		switch dst := sink.(type) {
		case *mysqlSink:
			b.dst = dst.addr
			b.ops = &mysql.OpStore{Do: dst.state, Migration: d.cfg.Name}
			b.dstSide = &mysqlSide{d: d, name: "target", addr: dst.addr}
			rsrc = &mysqlSource{d: d, addr: dst.addr, direction: reverse}
		case *pgSink:
			b.dstSide = &pgSide{d: d, name: "target", dsn: dst.dsn, slot: d.reverseName(), pub: d.reverseName()}
			rsrc = &pgSource{d: d, dsn: dst.dsn, slot: d.reverseName(), pub: d.reverseName(), direction: reverse}
		}
	case *pgSource:
		// The forward stream's slot is dropped at the cutover and made again at a rollback.
		b.srcSide = &pgSide{d: d, name: "source", dsn: src.dsn, slot: d.slotName(), pub: d.pubName()}
		rsink = &pgSink{d: d, dsn: src.dsn, stream: reverse}
		dst := sink.(*mysqlSink)
		b.dst = dst.addr
		b.ops = &mysql.OpStore{Do: dst.state, Migration: d.cfg.Name}
		b.dstSide = &mysqlSide{d: d, name: "target", addr: dst.addr}
		rsrc = &mysqlSource{d: d, addr: dst.addr, direction: reverse}
	}
	b.rev = &binlogLeg{direction: reverse, source: rsrc, sink: rsink,
		status: &server.StreamState{}, rec: &snapshot.Reconciler{
			Migration:      d.cfg.Name,
			WatermarkTable: rsrc.watermarkTable(),
			Log:            d.log.Named("reverse"),
		}}
	d.binlog = b
	return nil
}

// serverID is the replica id the stream registers with: stable for a migration, so a restart
// replaces its own earlier connection, and far from the small ids servers usually have.
func (d *Daemon) serverID() uint32 {
	h := fnv.New32a()
	h.Write([]byte(d.cfg.Name))
	return h.Sum32()%(1<<30) + 1<<30
}

func (d *Daemon) checkBinlog(ctx context.Context) ([]schema.Problem, []*schema.Table, error) {
	b := d.binlog
	probs, tables, err := b.source.check(ctx)
	if err != nil || tables == nil {
		return probs, tables, err
	}
	tprobs, err := b.sink.check(ctx, tables)
	if err != nil {
		return nil, nil, err
	}
	return append(probs, tprobs...), tables, nil
}

// runBinlog is Run for a MySQL source.
func (d *Daemon) runBinlog(ctx context.Context) error {
	probs, tables, err := d.checkBinlog(ctx)
	if err != nil {
		return err
	}
	if len(probs) > 0 {
		return &PreflightError{Problems: probs}
	}
	d.tables = tables
	b := d.binlog
	if err := b.sink.open(ctx); err != nil {
		return err
	}
	defer b.sink.close()
	mig, exists, err := b.sink.load(ctx)
	if err != nil {
		return err
	}
	if !exists {
		if mig, err = d.startBinlog(ctx); err != nil {
			return d.failBinlog(ctx, "snapshotting", err)
		}
	}
	d.showTables(nil)
	if r, ok, err := b.sink.loadVerify(ctx); err != nil {
		return err
	} else if ok {
		d.mu.Lock()
		b.verified = r
		d.mu.Unlock()
		d.showVerify(r, false)
	}
	if b.ops != nil {
		if err := b.sink.(*mysqlSink).state(mysql.EnsureOperations); err != nil {
			return err
		}
	}
	cutoverable := b.srcSide != nil
	d.mu.Lock()
	d.actionable = true
	d.runCtx = ctx
	d.mu.Unlock()
	if cutoverable {
		// A cutover or rollback cut short by a crash is finished or undone first.
		if err := d.loadOperation(ctx); err != nil {
			return err
		}
		if err := d.recoverOperation(ctx); err != nil {
			return err
		}
		if mig, _, err = b.sink.load(ctx); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		phase := mig.ResumePhase()
		var err error
		switch phase {
		case "snapshotting", "streaming", "switched":
			wctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			// Register the work under the lock acquire takes: an action either sees it and
			// stops it, or holds the turn already, and then the phase is read again after it.
			d.mu.Lock()
			if d.op != "" || d.paused {
				d.mu.Unlock()
				stop()
				if d.waitTurn(ctx) != nil {
					return nil
				}
				if mig, _, err = b.sink.load(ctx); err != nil {
					return err
				}
				continue
			}
			b.mu.Lock()
			b.stop, b.done = stop, done
			b.mu.Unlock()
			d.mu.Unlock()
			if phase == "switched" {
				err = d.streamReverse(wctx)
			} else {
				err = d.streamBinlog(wctx, mig, phase == "snapshotting")
			}
			// Whether an action stopped it must be read before the work's own context is
			// cancelled below.
			stoppedByAction := wctx.Err() != nil && ctx.Err() == nil
			b.mu.Lock()
			b.stop, b.done = nil, nil
			b.mu.Unlock()
			stop()
			close(done)
			if stoppedByAction {
				err = nil // the action records the next phase
			}
		case string(state.PhaseCuttingOver), string(state.PhaseRollingBack):
			// Recovery gave up on the operation: its error says what to fix.
			op := "cutover"
			if phase == string(state.PhaseRollingBack) {
				op = "rollback"
			}
			msg := "the " + op + " did not finish; fix the cause shown in migrated status, then restart migrated, which finishes or undoes it"
			d.showPhase(state.Phase(phase), msg)
			d.log.Error(msg, zap.String("phase", phase))
			<-ctx.Done()
			return nil
		default:
			d.showPhase(state.Phase(phase), mig.Error)
			d.log.Info("migration is over; nothing to run", zap.String("phase", phase))
			<-ctx.Done()
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		d.mu.Lock()
		during := d.op
		d.mu.Unlock()
		if err != nil && during != "" {
			// An operation holds the turn: its drain sees the stream end and aborts, or it has
			// committed; either way it records the phase, and the work starts again after it.
			d.log.Warn("the stream stopped during an operator action; the action decides what follows", zap.String("action", during), zap.Error(err))
			err = nil
		}
		if err != nil {
			err = d.failBinlog(ctx, phase, err)
			d.log.Error("migration failed; fix the cause, then restart migrated to resume", zap.Error(err))
			<-ctx.Done()
			return err
		}
		// An action that stopped the work records the next phase before it lets go.
		if err := d.waitTurn(ctx); err != nil {
			return nil
		}
		if mig, _, err = b.sink.load(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startBinlog records a new migration: the stream's start position is read before the target
// schema exists and before any row is copied, so every change after it reaches the target
// either through the copy or through the stream.
func (d *Daemon) startBinlog(ctx context.Context) (*mysql.Migration, error) {
	b := d.binlog
	start, err := b.source.prepare(ctx)
	if err != nil {
		return nil, err
	}
	mig, err := b.sink.create(ctx, b.source, d.tables, start)
	if err != nil {
		return nil, err
	}
	d.log.Info("target schema created; snapshot starts", zap.String("from", start), zap.Int("post_data_statements", len(mig.PostData)))
	return mig, nil
}

func (d *Daemon) failBinlog(ctx context.Context, in string, err error) error {
	d.m.Errors.WithLabelValues("apply").Inc()
	if serr := d.binlog.sink.setPhase(context.WithoutCancel(ctx), "failed", in, err.Error()); serr != nil {
		d.log.Error("record failed phase", zap.Error(serr))
	}
	d.showPhase(state.PhaseFailed, err.Error())
	return err
}

func (d *Daemon) setBinlogPhase(ctx context.Context, phase string) error {
	if err := d.binlog.sink.setPhase(ctx, phase, "", ""); err != nil {
		return err
	}
	d.showPhase(state.Phase(phase), "")
	return nil
}

// streamBinlog runs the stream, reconnecting from the target's checkpoint after transient
// failures, and alongside it, while snapshotting, the copy and then the post-data statements.
// It returns when the phase changes or on a permanent failure.
func (d *Daemon) streamBinlog(ctx context.Context, mig *mysql.Migration, snapshotting bool) error {
	b := d.binlog
	if err := d.setBinlogPhase(ctx, mig.ResumePhase()); err != nil {
		return err
	}
	if snapshotting {
		// Before the stream starts, so that every change not yet durable is known to the copy.
		b.rec.Track()
	}
	g, gctx := errgroup.WithContext(ctx)
	copied := make(chan struct{})
	g.Go(func() error {
		err := d.reconnect(gctx, forward, &d.status.Stream, func(ctx context.Context) error { return d.streamLeg(ctx, b.fwd) })
		if err == nil && ctx.Err() == nil && gctx.Err() != nil {
			return nil
		}
		return err
	})
	if snapshotting {
		g.Go(func() error {
			// A copy broken by the network resumes from the marks on the target.
			if err := d.retry(gctx, "snapshot", func() error { return d.copyBinlog(gctx) }); err != nil {
				return err
			}
			if err := d.postDataBinlog(gctx, mig); err != nil {
				return err
			}
			if err := d.setBinlogPhase(gctx, "streaming"); err != nil {
				return err
			}
			close(copied)
			return nil
		})
	} else {
		d.mu.Lock()
		d.ready = true
		d.mu.Unlock()
	}
	if snapshotting {
		// The stream goes on across the phase change; only its failure ends this.
		g.Go(func() error {
			select {
			case <-copied:
				d.mu.Lock()
				d.ready = true
				d.mu.Unlock()
			case <-gctx.Done():
			}
			return nil
		})
	}
	return g.Wait()
}

// streamLeg runs one connection's worth of a leg's stream: from the checkpoint on the side it
// writes to, until ctx ends or an error.
func (d *Daemon) streamLeg(ctx context.Context, l *binlogLeg) error {
	posText, commitTime, ok, err := l.sink.position(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the %s stream checkpoint of migration %s is missing from %s.progress; cancel the migration and start again", l.direction, d.cfg.Name, mysql.StateDB)
	}
	stream, err := l.source.stream(ctx, posText)
	if err != nil {
		return err
	}
	defer stream.close()
	target, closeTarget, err := l.sink.writer(ctx, l.source, l.source.tableList(), d.cfg.Apply.Workers)
	if err != nil {
		return err
	}
	defer closeTarget()
	raw := make(chan cdc.Event, 8192)
	events := make(chan cdc.Event, 8192)
	lastCommit := commitTime
	var lastApplied cdc.Position // under d.mu
	durable := func(pos cdc.Position, commitTime time.Time, st apply.BatchStats) {
		l.rec.Durable(pos)
		stream.durable(pos)
		d.countApplied(l.direction, l.status, st)
		d.mu.Lock()
		defer d.mu.Unlock()
		if !commitTime.IsZero() {
			lastCommit = commitTime
		}
		s := l.status
		s.AppliedPosition = snapshot.Unwrap(pos).String()
		lastApplied = pos
		if stream.behind(s.SourcePosition, pos) {
			// The source was last read before this commit; it has reached it at least.
			s.SourcePosition = s.AppliedPosition
		}
		s.LastCommitTime = lastCommit
		seconds := 0.0
		if len(raw)+len(events) > 0 && !lastCommit.IsZero() {
			seconds = max(0, time.Since(lastCommit).Seconds())
		}
		s.LagSeconds = seconds
		d.m.LagSeconds.WithLabelValues(l.direction).Set(seconds)
		if !lastCommit.IsZero() {
			d.m.LastApplyTimestamp.WithLabelValues(l.direction).Set(float64(lastCommit.Unix()))
		}
	}
	applier := apply.New(target, apply.Options{
		MaxChanges: d.cfg.Apply.BatchChanges, MaxDelay: d.cfg.Apply.BatchDelay.Duration(),
		HeartbeatEvery: d.cfg.Stream.HeartbeatInterval.Duration(),
	}, durable, d.log)
	d.m.StreamConnected.WithLabelValues(l.direction).Set(1)
	d.mu.Lock()
	l.status.Connected = true
	d.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return stream.run(gctx, raw) })
	g.Go(func() error { return l.rec.Filter(gctx, raw, events) })
	g.Go(func() error { return applier.Run(gctx, events) })
	g.Go(func() error {
		// A heartbeat keeps lag true on an idle source, and shows the source's position.
		return d.everyBeat(gctx, func() error {
			pos, err := stream.beat(gctx)
			if err != nil {
				return err
			}
			n, known := stream.lagBytes(gctx)
			d.mu.Lock()
			if lastApplied == nil || !stream.behind(pos, lastApplied) {
				// A commit applied since pos was read has moved the shown position past it.
				l.status.SourcePosition = pos
			}
			if known {
				l.status.LagBytes = n
				d.m.LagBytes.WithLabelValues(l.direction).Set(float64(n))
			}
			if len(raw)+len(events) == 0 && l.status.LagSeconds > 0 {
				l.status.LagSeconds = 0
				d.m.LagSeconds.WithLabelValues(l.direction).Set(0)
			}
			d.mu.Unlock()
			return nil
		})
	})
	return g.Wait()
}

// copyBinlog copies every table not yet done, reconciled with the stream by watermarks.
func (d *Daemon) copyBinlog(ctx context.Context) error {
	b := d.binlog
	marks, err := b.sink.marks(ctx)
	if err != nil {
		return err
	}
	if err := d.noUniqueWhileCopying(ctx, marks); err != nil {
		return err
	}
	var tables []snapshot.Table
	for _, t := range d.tables {
		d.m.SnapshotRowsEstimated.WithLabelValues(t.ID.String()).Set(float64(t.EstimatedRows))
		tables = append(tables, snapshot.Table{Relation: mysql.Relation(t), From: marks[t.ID]})
	}
	d.m.SnapshotTablesTotal.Set(float64(len(d.tables)))
	d.showTables(marks)
	chunkRows := int(min(d.cfg.Snapshot.SplitRows, 20000))
	d.log.Info("snapshot copy", zap.Int("tables", len(tables)), zap.Int("chunk_rows", chunkRows))
	err = b.rec.CopyTables(ctx, tables, d.cfg.Snapshot.Workers, chunkRows,
		b.source.openSnapshot,
		// Each worker writes its chunks on a target session of its own, beside the stream's.
		func(ctx context.Context) (apply.Writer, func(), error) {
			// One session each: the copy workers are the parallelism there.
			return b.sink.writer(ctx, b.source, b.source.tableList(), 1)
		},
		func(rel *cdc.Relation, m cdc.SnapshotMark) {
			d.mu.Lock()
			d.m.SnapshotRowsCopied.WithLabelValues(rel.Table.String()).Add(float64(m.Rows - marks[rel.Table].Rows))
			marks[rel.Table] = m
			d.mu.Unlock()
			d.showTables(marks)
		})
	if err != nil {
		return err
	}
	d.log.Info("snapshot copy done")
	return nil
}

// noUniqueWhileCopying refuses a copy into target tables that hold a unique key besides the row
// key. Chunks are written beside the stream, so the target passes through states that mix older
// and newer rows (docs/design-notes.md, "Snapshot chunks written beside the stream"); such a key
// could refuse one although the source never held it, or make a chunk and the stream wait on
// each other. migrated builds those keys after the copy; one is there only if someone added it.
func (d *Daemon) noUniqueWhileCopying(ctx context.Context, marks map[cdc.TableID]cdc.SnapshotMark) error {
	var copying []*schema.Table
	for _, t := range d.tables {
		if !marks[t.ID].Done {
			copying = append(copying, t)
		}
	}
	if len(copying) == 0 {
		return nil
	}
	keys, err := d.binlog.sink.extraUnique(ctx, copying)
	if err != nil {
		return err
	}
	var found []string
	for _, t := range copying {
		if k := keys[t.ID]; len(k) > 0 {
			found = append(found, fmt.Sprintf("%s (%s)", t.ID, strings.Join(k, ", ")))
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("the target has unique keys besides the primary key on tables not yet copied: %s; "+
		"the copy writes beside the change stream, and such a key can refuse a mix of older and newer rows the source never held. "+
		"Drop them on the target (migrated builds the source's unique keys itself after the copy), then restart migrated",
		strings.Join(found, "; "))
}

// showTables publishes snapshot progress from the marks.
func (d *Daemon) showTables(marks map[cdc.TableID]cdc.SnapshotMark) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := server.SnapshotState{TablesTotal: len(d.tables)}
	done := 0
	for _, t := range d.tables {
		m := marks[t.ID]
		ts := server.TableState{Table: t.ID.String(), State: state.TablePending, RowsCopied: m.Rows, RowsEstimate: t.EstimatedRows}
		switch {
		case m.Done:
			ts.State = state.TableDone
			done++
		case m.Rows > 0:
			ts.State = "copying"
		}
		st.RowsCopied += m.Rows
		st.RowsEstimate += max(t.EstimatedRows, m.Rows)
		st.Tables = append(st.Tables, ts)
	}
	st.TablesDone = done
	d.m.SnapshotTablesDone.Set(float64(done))
	d.status.Snapshot = st
}

// postDataBinlog builds what the target tables left out until after the copy.
func (d *Daemon) postDataBinlog(ctx context.Context, mig *mysql.Migration) error {
	if mig.PostDone >= len(mig.PostData) {
		return nil
	}
	d.log.Info("building secondary keys and foreign keys", zap.Int("statements", len(mig.PostData)-mig.PostDone))
	if err := d.binlog.sink.post(ctx, mig); err != nil {
		return err
	}
	d.log.Info("secondary keys and foreign keys built")
	return nil
}

func firstWords(q string) string {
	if len(q) > 120 {
		return q[:120] + "…"
	}
	return strings.TrimSpace(q)
}

// binlogActions are the operator actions of a migration with MySQL on either side.
func (d *Daemon) binlogActions() map[string]server.ActionFunc {
	out := map[string]server.ActionFunc{"pause": d.Pause, "resume": d.Resume, "verify": d.verifyBinlog,
		"cutover": d.Cutover, "rollback": d.Rollback}
	out["cancel"] = func(ctx context.Context, req server.ActionRequest) (any, error) {
		return d.endBinlog(ctx, req, "cancel", "cancelled",
			"cancelled: the stream stopped and its slot, publication or watermark rows are gone from the source, which takes writes as before; the target keeps the copied tables and _migrated, drop them when you no longer need them (after a rollback a MySQL target is still read-only: SET GLOBAL read_only = OFF on it)")
	}
	out["complete"] = func(ctx context.Context, req server.ActionRequest) (any, error) {
		return d.endBinlog(ctx, req, "complete", "completed",
			"completed: the stream stopped and its slot, publication or watermark rows are gone from the source; the target keeps every row it applied. Nothing was fenced or routed: the application writes where it wrote before (to move it without losing a write, a cutover does that: `migrated cutover`, where the engines allow it)")
	}
	return out
}

// endBinlog stops the migration for good: the running work ends, what the stream held on the
// source is released, and the phase is recorded.
func (d *Daemon) endBinlog(ctx context.Context, req server.ActionRequest, action, phase, msg string) (any, error) {
	if err := d.acquire(action); err != nil {
		return nil, err
	}
	defer d.release()
	if req.Confirm != d.cfg.Name {
		return nil, conflict("%s refused: pass --confirm %s", action, d.cfg.Name)
	}
	b := d.binlog
	mig, ok, err := b.sink.load(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, conflict("%s refused: the migration has not started yet", action)
	}
	p := mig.ResumePhase()
	switch {
	case p == "snapshotting" && action == "complete":
		return nil, conflict("complete refused: the snapshot is not finished, so the target lacks rows; wait for phase streaming, or cancel")
	case p == "switched" && action == "cancel":
		return nil, conflict("cancel refused: phase is switched, the target takes the writes; cancel abandons a migration before its cutover (after it, use rollback, then cancel; or complete)")
	case p != "snapshotting" && p != "streaming" && p != "switched":
		return nil, conflict("%s refused: phase is %s", action, mig.Phase)
	}
	if last, err := d.ops().LastOperation(ctx); err != nil {
		return nil, err
	} else if last != nil && last.FinishedAt == nil {
		return nil, conflict("%s refused: the %s is not finished (%s); restart migrated to finish it first", action, last.Op, last.Error)
	}
	if err := b.stopWork(ctx); err != nil {
		return nil, err
	}
	if err := b.source.release(ctx); err != nil {
		return nil, err
	}
	if action == "complete" && p == "streaming" {
		// The application moves to the target by hand after this: its first insert there
		// must get an id past every id the source handed out.
		next, err := b.srcSide.counters(ctx)
		if err != nil {
			return nil, err
		}
		n, err := b.dstSide.raise(ctx, next)
		if err != nil {
			return nil, err
		}
		msg += fmt.Sprintf("; %d id counter(s) (AUTO_INCREMENT, identity) on the target moved past the source's", n)
	}
	if p == "switched" {
		// The reverse stream's checkpoint on the old source, and what it held on the target.
		if err := b.rev.sink.dropPosition(ctx); err != nil {
			return nil, err
		}
		if err := b.dstSide.dropStream(ctx); err != nil {
			return nil, err
		}
		if _, ok := b.dstSide.(*mysqlSide); ok {
			if err := withMy(ctx, b.dst, func(c *client.Conn) error { return mysql.DropWatermarks(c, d.cfg.Name) }); err != nil {
				return nil, err
			}
		}
		msg = "completed: the reverse stream stopped and its checkpoint is gone from the old source, which stays read-only (" + b.srcSide.reopenHint() + " to reopen it); the target takes the writes; _migrated on the target keeps the history"
	}
	if err := b.sink.setPhase(ctx, phase, "", ""); err != nil {
		return nil, err
	}
	d.showPhase(state.Phase(phase), "")
	d.mu.Lock()
	d.ready = false
	d.mu.Unlock()
	return d.result(action, msg), nil
}

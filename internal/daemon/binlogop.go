package daemon

// The cutover and rollback of a migration with MySQL on a side (MySQL → MySQL, MySQL →
// PostgreSQL, PostgreSQL → MySQL). The state machine, the journal and the recovery are the
// PostgreSQL ones (operation.go, internal/cutover); this file has the step bodies, and the
// engine work of each server is its opSide (opside.go): on MySQL the fence is the server's
// read_only, the fence position its GTID set, the id counters AUTO_INCREMENT; on PostgreSQL the
// database fence, an LSN and identity sequences. The stream after the switch reads the side
// that takes the writes and is checkpointed on the other.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cutover"
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

// binlogLeg is one direction of a migration with MySQL on a side: forward (source into target),
// or reverse (target back into the old source, in the dual-write phase).
type binlogLeg struct {
	direction string
	source    reconSource
	sink      binlogSink
	rec       *snapshot.Reconciler
	// status is the leg's part of the status document; guarded by Daemon.mu.
	status *server.StreamState
}

// sides returns, for an operation, the server it fences, the one that takes the writes once it
// commits, and the legs that run before and after it.
func (b *binlogRun) sides(op cutover.Op) (fenced, writable opSide, before, after *binlogLeg) {
	if op == cutover.OpRollback {
		return b.dstSide, b.srcSide, b.rev, b.fwd
	}
	return b.srcSide, b.dstSide, b.fwd, b.rev
}

// withMy runs fn on a new session to the server at a.
func withMy(ctx context.Context, a mysql.Addr, fn func(c *client.Conn) error) error {
	c, err := mysql.Connect(ctx, a)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// fenceMy makes the side that takes writes now read-only, ends the application's sessions, and
// writes a heartbeat that the stream reading that side carries past the fence position.
func (d *Daemon) fenceMy(ctx context.Context, o *opRun) (string, error) {
	fenced, _, _, _ := d.binlog.sides(o.op)
	o.fencedAt = time.Now()
	pos, killed, err := fenced.fence(ctx)
	if err != nil {
		return "", err
	}
	o.FencePosition = pos
	return fmt.Sprintf("%s fenced at %s; %d application session(s) ended", fenced.label(), pos, killed), nil
}

// drainMy waits until the leg that runs now has durably applied the fence position, then stops it.
func (d *Daemon) drainMy(ctx context.Context, o *opRun) (string, error) {
	b := d.binlog
	fenced, _, before, _ := b.sides(o.op)
	if o.FencePosition == "" {
		return "", errors.New("no fence position recorded")
	}
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done == nil {
		return "", fmt.Errorf("the %s stream is not running, so it cannot drain; see migrated status and the log", before.direction)
	}
	passed, err := fenced.passed(ctx, o.FencePosition)
	if err != nil {
		return "", err
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		d.mu.Lock()
		applied := before.status.AppliedPosition
		d.mu.Unlock()
		if passed(applied) {
			if err := b.stopWork(ctx); err != nil {
				return "", err
			}
			return fmt.Sprintf("applied %s, past the fence %s", applied, o.FencePosition), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the %s stream did not reach the fence position %s in time (applied %s); find what slows apply (migrated status, the locks on the side it writes to) and try again: %w",
				before.direction, o.FencePosition, applied, ctx.Err())
		case <-done:
			return "", fmt.Errorf("the %s stream stopped before reaching the fence position %s; see migrated status and the log", before.direction, o.FencePosition)
		case <-tick.C:
		}
	}
}

// finalCheckMy compares exact row counts on both sides of the tables small enough to count in
// the write pause.
func (d *Daemon) finalCheckMy(ctx context.Context, _ *opRun) (string, error) {
	b := d.binlog
	var counted []string
	for _, t := range d.tables {
		if max(t.EstimatedRows, 0) <= d.cfg.Cutover.FinalCheckMaxRows {
			counted = append(counted, t.ID.Name)
		}
	}
	var counts [2]map[string]int64
	g, gctx := errgroup.WithContext(ctx)
	for i, side := range []opSide{b.srcSide, b.dstSide} {
		g.Go(func() (err error) {
			counts[i], err = side.count(gctx, counted)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	var diffs []string
	var rows int64
	for _, t := range counted {
		rows += counts[0][t]
		if counts[0][t] != counts[1][t] {
			diffs = append(diffs, fmt.Sprintf("%s: source %d rows, target %d", t, counts[0][t], counts[1][t]))
		}
	}
	if len(diffs) > 0 {
		return "", fmt.Errorf("row counts differ after the drain: %s; run `migrated verify` to find the rows", strings.Join(diffs, "; "))
	}
	return fmt.Sprintf("%d tables, %d rows, equal on both sides; %d larger table(s) not counted", len(counted), rows, len(d.tables)-len(counted)), nil
}

// countersMy moves every id counter (AUTO_INCREMENT, identity) on the side taking writes next
// past the other side's, by cutover.sequence-gap.
func (d *Daemon) countersMy(ctx context.Context, o *opRun) (string, error) {
	fenced, writable, _, _ := d.binlog.sides(o.op)
	next, err := fenced.counters(ctx)
	if err != nil {
		return "", err
	}
	for t := range next {
		next[t] += d.cfg.Cutover.SequenceGap
	}
	n, err := writable.raise(ctx, next)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d id counter(s) moved past the %s's values", n, fenced.label()), nil
}

// startLegMy records where the stream after the operation starts: the position of the side
// that takes writes next, read while nothing writes to it, on the side that stream writes to.
func (d *Daemon) startLegMy(ctx context.Context, o *opRun) (string, error) {
	_, writable, _, after := d.binlog.sides(o.op)
	pos, err := writable.startStream(ctx)
	if err != nil {
		return "", err
	}
	if err := after.sink.setPosition(ctx, pos); err != nil {
		return "", err
	}
	d.mu.Lock()
	after.status.AppliedPosition, after.status.LagSeconds = pos, 0
	d.mu.Unlock()
	return fmt.Sprintf("%s stream starts at %s on the %s", after.direction, pos, writable.label()), nil
}

// commitMy is the point of no return; runStep records it with the new phase. A rollback also
// marks the last verify stale: rows moved both ways since.
func (d *Daemon) commitMy(ctx context.Context, o *opRun) (string, error) {
	if o.op == cutover.OpRollback {
		d.mu.Lock()
		r := d.binlog.verified
		d.mu.Unlock()
		r.Clean, r.Error = false, "rolled back; verify again before the next cutover"
		if err := d.keepVerify(ctx, r); err != nil {
			return "", err
		}
		d.showVerify(r, false)
	}
	return "committed", nil
}

// keepVerify records the newest verify result on the target, and for the preconditions.
func (d *Daemon) keepVerify(ctx context.Context, r verify.Result) error {
	d.mu.Lock()
	d.binlog.verified = r
	d.mu.Unlock()
	if err := d.binlog.sink.saveVerify(ctx, r); err != nil {
		d.log.Error("record the verify result", zap.Error(err))
		return err
	}
	return nil
}

// writableMy lifts the fence on the side that takes writes from now on.
func (d *Daemon) writableMy(ctx context.Context, o *opRun) (string, error) {
	_, writable, _, _ := d.binlog.sides(o.op)
	if err := writable.unfence(ctx); err != nil {
		return "", err
	}
	if !o.fencedAt.IsZero() {
		o.WriteUnavailableSeconds = time.Since(o.fencedAt).Seconds()
		d.m.CutoverWriteUnavailable.Set(o.WriteUnavailableSeconds)
	}
	return writable.label() + " writable", nil
}

// routeMy runs the routing hooks, then releases what the stream that no longer runs held on the
// fenced side (a PostgreSQL slot; a binlog reader holds nothing). The fenced side stays
// read-only.
func (d *Daemon) routeMy(ctx context.Context, o *opRun) (string, error) {
	fenced, writable, _, _ := d.binlog.sides(o.op)
	now, old := d.cfg.Target, d.cfg.Source
	if o.op == cutover.OpRollback {
		now, old = old, now
	}
	detail := d.runHooks(ctx, o, writable.label(), now, old)
	if err := fenced.dropStream(ctx); err != nil {
		return "", err
	}
	return detail + "; " + fenced.label() + " stays read-only", nil
}

// undoMy lifts the fence of an operation undone before its commit, and drops what was made
// for the stream that would have run after it.
func (d *Daemon) undoMy(ctx context.Context, o *opRun) (string, error) {
	fenced, writable, _, _ := d.binlog.sides(o.op)
	if err := fenced.unfence(ctx); err != nil {
		return "", err
	}
	if err := writable.dropStream(ctx); err != nil {
		return "", fmt.Errorf("the %s is writable again, but %w", fenced.label(), err)
	}
	return fenced.label() + " unfenced", nil
}

// binlogFenceCheck tells whether migrated's accounts can fence and open both servers, and that
// they are two servers: a MySQL fence makes a whole server read-only.
func (d *Daemon) binlogFenceCheck(ctx context.Context) cutover.Check {
	b := d.binlog
	var problems []string
	var ids [2]string
	for i, side := range []opSide{b.srcSide, b.dstSide} {
		var err error
		if ids[i], err = side.identity(ctx); err == nil {
			err = side.checkFence(ctx)
		}
		if err != nil {
			problems = append(problems, "on the "+side.label()+", "+err.Error())
		}
	}
	if len(problems) == 0 && ids[0] == ids[1] {
		problems = append(problems, "the source and the target are databases of one server, and a fence (read_only) covers the whole server; a cutover needs them on two servers")
	}
	if len(problems) > 0 {
		return cutover.Check{Name: "fence", Detail: strings.Join(problems, "; ")}
	}
	return cutover.Check{Name: "fence", OK: true, Detail: "both servers can be fenced and opened; a MySQL fence (read_only) covers every database of its server"}
}

// binlogProbeReverse checks that the target can serve the reverse stream, as preflight checks a
// source.
func (d *Daemon) binlogProbeReverse(ctx context.Context) error {
	if err := d.binlog.dstSide.probeSource(ctx); err != nil {
		return err
	}
	// The reverse stream writes into a PostgreSQL source as the forward one writes a target:
	// without the right to turn its triggers off it would stop right after the cutover, when
	// the rollback needs it.
	if sink, ok := d.binlog.rev.sink.(*pgSink); ok {
		c, err := pgx.Connect(ctx, sink.dsn)
		if err != nil {
			return fmt.Errorf("connect to the source: %w", redactErr(err, sink.dsn))
		}
		defer c.Close(context.WithoutCancel(ctx))
		if err := postgres.CheckReplicationRole(ctx, c); err != nil {
			return fmt.Errorf("on the source, which the reverse stream writes to: %w", err)
		}
	}
	return nil
}

// reverseTables reads the migrated tables from database db of a MySQL target, as the reverse
// stream sees them.
func (d *Daemon) reverseTables(c *client.Conn, db string) ([]*schema.Table, error) {
	want := map[string]bool{}
	for _, t := range d.tables {
		want[t.ID.Name] = true
	}
	tables, err := mysql.Tables(c, db, func(_, name string) bool { return want[name] })
	if err != nil {
		return nil, err
	}
	if len(tables) != len(want) {
		return nil, fmt.Errorf("the target has %d of the %d migrated tables; the reverse stream needs them all", len(tables), len(want))
	}
	return tables, nil
}

// streamReverse runs the reverse stream of the dual-write phase, reconnecting after transient
// failures, until ctx ends or it fails for good.
func (d *Daemon) streamReverse(ctx context.Context) error {
	b := d.binlog
	if b.rev == nil {
		return errors.New("no reverse stream for this pair of engines")
	}
	if err := d.setBinlogPhase(ctx, string(state.PhaseSwitched)); err != nil {
		return err
	}
	switch src := b.rev.source.(type) {
	case *mysqlSource:
		if src.tables == nil {
			if err := withMy(ctx, b.dst, func(c *client.Conn) (err error) {
				src.tables, err = d.reverseTables(c, b.dst.DB)
				return err
			}); err != nil {
				return err
			}
		}
	case *pgSource:
		if src.tables == nil {
			c, err := pgx.Connect(ctx, src.dsn)
			if err != nil {
				return fmt.Errorf("connect to the target: %w", redactErr(err, src.dsn))
			}
			src.tables, err = pgTablesOf(ctx, c, d.tables)
			c.Close(context.WithoutCancel(ctx))
			if err != nil {
				return err
			}
		}
	}
	if !b.rev.sink.isOpen() {
		if err := b.rev.sink.open(ctx); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.status.Reverse = b.rev.status
	d.ready = true
	d.mu.Unlock()
	return d.reconnect(ctx, reverse, b.rev.status, func(ctx context.Context) error { return d.streamLeg(ctx, b.rev) })
}

package daemon

// The cutover and rollback of a MySQL → MySQL migration. The state machine, the journal and the
// recovery are the PostgreSQL ones (operation.go, internal/cutover); this file does the engine
// work of each step: the fence is the server's read_only, the fence position its GTID set, the
// sequences are AUTO_INCREMENT counters, and the stream after the switch is a binlog stream of
// the target into the old source, checkpointed there.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cutover"
	"github.com/migrated/migrated/internal/mysql"
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
func (b *binlogRun) sides(op cutover.Op) (fenced, writable mysql.Addr, before, after *binlogLeg) {
	if op == cutover.OpRollback {
		return b.dst, b.src, b.rev, b.fwd
	}
	return b.src, b.dst, b.fwd, b.rev
}

// sideName names the side at a.
func (b *binlogRun) sideName(a mysql.Addr) string {
	if a == b.src {
		return "source"
	}
	return "target"
}

// binlogStep is the work of a step for a MySQL → MySQL migration.
func (d *Daemon) binlogStep(s cutover.Step) stepFunc {
	switch s {
	case cutover.StepFence, cutover.StepFenceTarget:
		return d.fenceMy
	case cutover.StepDrain, cutover.StepDrainReverse:
		return d.drainMy
	case cutover.StepFinalCheck:
		return d.finalCheckMy
	case cutover.StepSequences, cutover.StepSequencesBack:
		return d.autoIncrementMy
	case cutover.StepReverse, cutover.StepForward:
		return d.startLegMy
	case cutover.StepCommit, cutover.StepRollbackCommit:
		return d.commitMy
	case cutover.StepWritable, cutover.StepSourceWritable:
		return d.writableMy
	case cutover.StepRoute, cutover.StepRouteBack:
		return d.routeMy
	case cutover.StepUnfence, cutover.StepUnfenceTarget:
		return d.undoMy
	}
	return func(context.Context, *opRun) (string, error) {
		return "", fmt.Errorf("no implementation of step %s", s)
	}
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
	b := d.binlog
	fenced, _, _, _ := b.sides(o.op)
	c, err := mysql.Connect(ctx, fenced)
	if err != nil {
		return "", fmt.Errorf("connect to the %s: %w", b.sideName(fenced), err)
	}
	defer c.Close()
	o.fencedAt = time.Now()
	killed, err := mysql.Fence(ctx, c, fenced, 5*time.Second)
	if err != nil {
		return "", err
	}
	if err := mysql.Heartbeat(c, d.cfg.Name); err != nil {
		return "", err
	}
	pos, err := mysql.CurrentPosition(c)
	if err != nil {
		return "", err
	}
	o.FencePosition = pos.String()
	return fmt.Sprintf("%s fenced (read_only) at %s; %d application session(s) killed", b.sideName(fenced), pos, killed), nil
}

// drainMy waits until the leg that runs now has durably applied the fence position, then stops it.
func (d *Daemon) drainMy(ctx context.Context, o *opRun) (string, error) {
	b := d.binlog
	fenced, _, before, _ := b.sides(o.op)
	flavor, err := serverFlavor(ctx, fenced)
	if err != nil {
		return "", err
	}
	want, err := gomysql.ParseGTIDSet(flavor, o.FencePosition)
	if err != nil {
		return "", fmt.Errorf("no usable fence position recorded (%q): %w", o.FencePosition, err)
	}
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done == nil {
		return "", fmt.Errorf("the %s stream is not running, so it cannot drain; see migrated status and the log", before.direction)
	}
	reached := func() (bool, string) {
		d.mu.Lock()
		applied := before.status.AppliedPosition
		d.mu.Unlock()
		have, err := gomysql.ParseGTIDSet(flavor, applied)
		return err == nil && applied != "" && have.Contain(want), applied
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, applied := reached()
		if ok {
			if err := b.stopWork(ctx); err != nil {
				return "", err
			}
			return fmt.Sprintf("applied %s ⊇ fence %s", applied, o.FencePosition), nil
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

func serverFlavor(ctx context.Context, a mysql.Addr) (flavor string, err error) {
	err = withMy(ctx, a, func(c *client.Conn) error {
		flavor = mysql.Flavor(c.GetServerVersion())
		return nil
	})
	return flavor, err
}

// tableNames lists the migrated tables by name; both sides name them alike.
func (d *Daemon) tableNames() []string {
	out := make([]string, len(d.tables))
	for i, t := range d.tables {
		out[i] = t.ID.Name
	}
	return out
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
	for i, a := range []mysql.Addr{b.src, b.dst} {
		g.Go(func() error {
			return withMy(gctx, a, func(c *client.Conn) (err error) {
				counts[i], err = mysql.CountRows(c, a.DB, counted)
				return err
			})
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

// autoIncrementMy moves every AUTO_INCREMENT counter on the side taking writes next past the
// other side's, by cutover.sequence-gap.
func (d *Daemon) autoIncrementMy(ctx context.Context, o *opRun) (string, error) {
	b := d.binlog
	fenced, writable, _, _ := b.sides(o.op)
	var moved []mysql.AutoIncrement
	err := withMy(ctx, fenced, func(from *client.Conn) error {
		return withMy(ctx, writable, func(to *client.Conn) (err error) {
			moved, err = mysql.SyncAutoIncrement(from, fenced.DB, to, writable.DB, d.tableNames(), d.cfg.Cutover.SequenceGap)
			return err
		})
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d AUTO_INCREMENT counter(s) moved past the %s's values", len(moved), b.sideName(fenced)), nil
}

// startLegMy records where the stream after the operation starts: the position of the side
// that takes writes next, read while nothing writes to it, on the side that stream writes to.
func (d *Daemon) startLegMy(ctx context.Context, o *opRun) (string, error) {
	b := d.binlog
	_, writable, _, after := b.sides(o.op)
	var pos mysql.Position
	err := withMy(ctx, writable, func(c *client.Conn) (err error) {
		// The stream's heartbeats go into this table; it is created before the start position.
		if err := mysql.EnsureWatermarkTable(c); err != nil {
			return err
		}
		pos, err = mysql.CurrentPosition(c)
		return err
	})
	if err != nil {
		return "", err
	}
	if after.direction == reverse {
		err = withMy(ctx, b.src, func(c *client.Conn) error { return mysql.SetPosition(c, d.cfg.Name, reverse, pos.String()) })
	} else {
		err = b.sink.(*mysqlSink).state(func(c *client.Conn) error { return mysql.SetPosition(c, d.cfg.Name, forward, pos.String()) })
	}
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	after.status.AppliedPosition, after.status.LagSeconds = pos.String(), 0
	d.mu.Unlock()
	return fmt.Sprintf("%s stream starts at %s on the %s", after.direction, pos, b.sideName(writable)), nil
}

// commitMy is the point of no return; runStep records it with the new phase. A rollback also
// forgets the last verify: rows moved both ways since.
func (d *Daemon) commitMy(_ context.Context, o *opRun) (string, error) {
	if o.op == cutover.OpRollback {
		d.mu.Lock()
		r := d.binlog.verified
		d.mu.Unlock()
		r.Clean, r.Error = false, "rolled back; verify again before the next cutover"
		if err := d.keepVerify(context.Background(), r); err != nil {
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
	b := d.binlog
	_, writable, _, _ := b.sides(o.op)
	if err := withMy(ctx, writable, mysql.Unfence); err != nil {
		return "", err
	}
	if !o.fencedAt.IsZero() {
		o.WriteUnavailableSeconds = time.Since(o.fencedAt).Seconds()
		d.m.CutoverWriteUnavailable.Set(o.WriteUnavailableSeconds)
	}
	return fmt.Sprintf("%s writable (read_only OFF)", b.sideName(writable)), nil
}

// routeMy runs the routing hooks. Nothing is held on the fenced side to drop: a binlog stream
// keeps no slot, only the binlog's own retention.
func (d *Daemon) routeMy(ctx context.Context, o *opRun) (string, error) {
	b := d.binlog
	fenced, writable, _, _ := b.sides(o.op)
	now, old := d.cfg.Target, d.cfg.Source
	if o.op == cutover.OpRollback {
		now, old = old, now
	}
	return d.runHooks(ctx, o, b.sideName(writable), now, old) + "; " + b.sideName(fenced) + " stays read-only", nil
}

// undoMy lifts the fence of an operation undone before its commit.
func (d *Daemon) undoMy(ctx context.Context, o *opRun) (string, error) {
	b := d.binlog
	fenced, _, _, _ := b.sides(o.op)
	if err := withMy(ctx, fenced, mysql.Unfence); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s unfenced (read_only OFF)", b.sideName(fenced)), nil
}

// binlogFenceCheck tells whether migrated's account can fence and open both servers, and that
// they are two servers: a fence makes a whole server read-only.
func (d *Daemon) binlogFenceCheck(ctx context.Context) cutover.Check {
	b := d.binlog
	var problems []string
	var ids [2]string
	for i, a := range []mysql.Addr{b.src, b.dst} {
		err := withMy(ctx, a, func(c *client.Conn) (err error) {
			if ids[i], err = mysql.ServerIdentity(c); err != nil {
				return err
			}
			return mysql.CheckFence(c)
		})
		if err != nil {
			problems = append(problems, "on the "+b.sideName(a)+", "+err.Error())
		}
	}
	if len(problems) == 0 && ids[0] == ids[1] {
		problems = append(problems, "the source and the target are databases of one server, and a fence (read_only) covers the whole server; a cutover needs them on two servers")
	}
	if len(problems) > 0 {
		return cutover.Check{Name: "fence", Detail: strings.Join(problems, "; ")}
	}
	return cutover.Check{Name: "fence", OK: true, Detail: "both servers can be fenced (read_only) and opened; a fence covers every database of its server"}
}

// binlogProbeReverse checks that the target can serve the reverse stream: its binary log
// settings and the account's grants, as preflight checks a source.
func (d *Daemon) binlogProbeReverse(ctx context.Context) error {
	b := d.binlog
	return withMy(ctx, b.dst, func(c *client.Conn) error {
		tables, err := d.reverseTables(c)
		if err != nil {
			return err
		}
		probs, err := mysql.CheckSource(c, tables, 10*time.Minute)
		if err != nil {
			return err
		}
		if len(probs) > 0 {
			var msgs []string
			for _, p := range probs {
				msgs = append(msgs, "target (as the reverse stream's source): "+p.String())
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		return nil
	})
}

// reverseTables reads the migrated tables from the target, as the reverse stream sees them.
func (d *Daemon) reverseTables(c *client.Conn) ([]*schema.Table, error) {
	want := map[string]bool{}
	for _, t := range d.tables {
		want[t.ID.Name] = true
	}
	tables, err := mysql.Tables(c, d.binlog.dst.DB, func(_, name string) bool { return want[name] })
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
	src := b.rev.source.(*mysqlSource)
	if src.tables == nil {
		if err := withMy(ctx, b.dst, func(c *client.Conn) (err error) {
			src.tables, err = d.reverseTables(c)
			return err
		}); err != nil {
			return err
		}
	}
	sink := b.rev.sink.(*mysqlSink)
	sink.mu.Lock()
	opened := sink.conn != nil
	sink.mu.Unlock()
	if !opened {
		if err := sink.open(ctx); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.status.Reverse = b.rev.status
	d.ready = true
	d.mu.Unlock()
	return d.reconnect(ctx, reverse, b.rev.status, func(ctx context.Context) error { return d.streamLeg(ctx, b.rev) })
}

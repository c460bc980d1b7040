package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/snapshot"
	"github.com/migrated/migrated/internal/state"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// start begins a new migration: publication, slot with an exported snapshot, the target schema
// (pre-data) and the copy of every table under that snapshot.
func (d *Daemon) start(ctx context.Context) error {
	src, err := pgx.Connect(ctx, d.srcDSN)
	if err != nil {
		return fmt.Errorf("connect to source: %w", redactErr(err, d.srcDSN))
	}
	defer src.Close(context.WithoutCancel(ctx))
	// The publication must exist before the slot: pgoutput reads it as of each change's time.
	if err := postgres.EnsurePublication(ctx, src, d.pubName(), d.tables); err != nil {
		return err
	}
	// A slot without state on the target is left from a start that died before recording it.
	if exists, err := postgres.SlotExists(ctx, src, d.slotName()); err != nil {
		return err
	} else if exists {
		d.log.Info("dropping slot left by an unfinished start", zap.String("slot", d.slotName()))
		if err := postgres.DropSlot(ctx, src, d.slotName()); err != nil {
			return err
		}
	}
	repl, err := postgres.ConnectReplication(ctx, d.srcDSN)
	if err != nil {
		return err
	}
	defer repl.Close(context.WithoutCancel(ctx))
	slot, err := postgres.CreateSlot(ctx, repl, d.slotName(), false)
	if err != nil {
		return err
	}
	d.log.Info("slot created", zap.String("slot", d.slotName()), zap.Stringer("consistent_point", slot.ConsistentPoint))

	dump := postgres.DumpOptions{DSN: d.srcDSN, Snapshot: slot.Snapshot, Tables: d.tables, AllTables: d.allTables(ctx, src)}
	dump.Section = "pre-data"
	pre, err := postgres.Dump(ctx, dump)
	if err != nil {
		return err
	}
	dump.Section = "post-data"
	post, err := postgres.Dump(ctx, dump)
	if err != nil {
		return err
	}
	var progress []state.TableProgress
	for _, t := range d.leaves() {
		progress = append(progress, state.TableProgress{Schema: t.ID.Schema, Name: t.ID.Name, RowsEstimate: t.EstimatedRows})
	}
	err = d.store.Create(ctx, slot.ConsistentPoint.String(), post, progress, func(tx pgx.Tx) error {
		if _, err := tx.Conn().PgConn().Exec(ctx, postgres.Script(pre)).ReadAll(); err != nil {
			return fmt.Errorf("create the schema on the target (pg_dump pre-data): %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := d.setPhase(ctx, state.PhaseSnapshotting, ""); err != nil {
		return err
	}
	d.log.Info("target schema created")
	return d.copyTables(ctx, slot.Snapshot, d.leaves(), "")
}

// allTables lists every source table, so pg_dump can leave out the ones not moving.
func (d *Daemon) allTables(ctx context.Context, src *pgx.Conn) []*schema.Table {
	all, err := postgres.Tables(ctx, src, nil)
	if err != nil {
		return d.tables
	}
	return all
}

func (d *Daemon) leaves() []*schema.Table {
	var out []*schema.Table
	for _, t := range d.tables {
		if t.IsLeaf() {
			out = append(out, t)
		}
	}
	return out
}

// finishSnapshot completes a snapshot that a stop interrupted. Finished tables stay. The others
// are copied again from a fresh snapshot, taken by a temporary slot; the stream then skips their
// changes committed before that snapshot. A partitioned table is re-copied whole, as its changes
// stream under one name.
func (d *Daemon) finishSnapshot(ctx context.Context, mig *state.Migration) error {
	progress, err := d.store.Tables(ctx)
	if err != nil {
		return err
	}
	byName := postgres.ByName(d.tables)
	pendingRoots := map[cdc.TableID]bool{}
	for _, p := range progress {
		if p.State == state.TableDone {
			continue
		}
		t, ok := byName[cdc.TableID{Schema: p.Schema, Name: p.Name}]
		if !ok {
			return fmt.Errorf("table %s.%s is in the migration but no longer on the source; it was dropped or renamed during the snapshot: cancel the migration and start again", p.Schema, p.Name)
		}
		pendingRoots[t.Root] = true
	}
	if len(pendingRoots) > 0 {
		if err := d.setPhase(ctx, state.PhaseSnapshotting, ""); err != nil {
			return err
		}
		var pending []*schema.Table
		for _, t := range d.leaves() {
			if pendingRoots[t.Root] {
				pending = append(pending, t)
			}
		}
		if err := d.recopy(ctx, pending); err != nil {
			return err
		}
	}
	return d.postData(ctx, mig.PostData)
}

func (d *Daemon) recopy(ctx context.Context, tables []*schema.Table) error {
	src, err := pgx.Connect(ctx, d.srcDSN)
	if err != nil {
		return fmt.Errorf("connect to source: %w", redactErr(err, d.srcDSN))
	}
	exists, err := postgres.SlotExists(ctx, src, d.slotName())
	src.Close(ctx)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("replication slot %s is gone from the source, so changes since the snapshot are lost to the stream; cancel the migration and start again", d.slotName())
	}
	repl, err := postgres.ConnectReplication(ctx, d.srcDSN)
	if err != nil {
		return err
	}
	defer repl.Close(context.WithoutCancel(ctx))
	tmp, err := postgres.CreateSlot(ctx, repl, d.slotName()+"_resync", true)
	if err != nil {
		return err
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.ID.String()
	}
	d.log.Info("copying unfinished tables again from a new snapshot", zap.Strings("tables", names), zap.Stringer("snapshot_point", tmp.ConsistentPoint))
	for _, t := range tables {
		if _, err := d.target.Exec(ctx, "TRUNCATE ONLY "+pgx.Identifier{t.ID.Schema, t.ID.Name}.Sanitize()); err != nil {
			return fmt.Errorf("empty %s on the target before copying it again: %w", t.ID, err)
		}
	}
	return d.copyTables(ctx, tmp.Snapshot, tables, tmp.ConsistentPoint.String())
}

// copyTables copies tables under an exported snapshot. The snapshot's exporter must stay open
// until this returns.
func (d *Daemon) copyTables(ctx context.Context, snap string, tables []*schema.Table, skipBefore string) error {
	var chunks []snapshot.Chunk
	var rowsTotal int64
	for _, t := range tables {
		planned := postgres.PlanChunks(t, d.cfg.Snapshot.SplitRows, d.cfg.Snapshot.Workers)
		if err := d.store.ResetTable(ctx, t.ID.Schema, t.ID.Name, len(planned), skipBefore); err != nil {
			return err
		}
		d.m.SnapshotRowsEstimated.WithLabelValues(t.ID.String()).Set(float64(t.EstimatedRows))
		rowsTotal += t.EstimatedRows
		for _, c := range planned {
			chunks = append(chunks, snapshot.Chunk{Table: t.ID.String(), Index: c.Index, Count: c.Count,
				EstimatedRows: max(t.EstimatedRows/int64(c.Count), t.Bytes/int64(c.Count)/100), Ref: c})
		}
	}
	d.m.SnapshotTablesTotal.Set(float64(len(d.leaves())))
	var done atomic.Int64
	copier := &snapshot.Copier{
		Workers: d.cfg.Snapshot.Workers,
		Log:     d.log.Named("snapshot"),
		Open: func(ctx context.Context) (snapshot.Session, error) {
			src, err := postgres.SnapshotReader(ctx, d.srcDSN, snap)
			if err != nil {
				return nil, err
			}
			dst, err := postgres.CopyWriter(ctx, d.dstDSN)
			if err != nil {
				src.Close(ctx)
				return nil, err
			}
			return &copySession{src: src, dst: dst, migration: d.cfg.Name}, nil
		},
		Done: func(c snapshot.Chunk, rows int64) {
			d.m.SnapshotRowsCopied.WithLabelValues(c.Table).Add(float64(rows))
			done.Add(1)
		},
	}
	// Like pg_dump, hold ACCESS SHARE on every table under the snapshot until the copy ends: a
	// table rewrite (ALTER COLUMN TYPE, VACUUM FULL) committed later would otherwise show the
	// snapshot an empty table, and a rewrite is not in the change stream.
	guard, err := postgres.SnapshotReader(ctx, d.srcDSN, snap)
	if err != nil {
		return err
	}
	defer guard.Close(context.WithoutCancel(ctx))
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.ID.Schema, t.ID.Name}.Sanitize()
	}
	if len(names) > 0 {
		if _, err := guard.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN ACCESS SHARE MODE"); err != nil {
			return fmt.Errorf("lock the source tables for the copy: %w", err)
		}
	}
	d.mu.Lock()
	d.copier = copier
	d.mu.Unlock()
	d.log.Info("snapshot copy", zap.Int("tables", len(tables)), zap.Int("chunks", len(chunks)), zap.Int64("rows_estimated", rowsTotal))
	if err := copier.Run(ctx, chunks); err != nil {
		return err
	}
	progress, err := d.store.Tables(ctx)
	if err == nil {
		n := 0
		for _, p := range progress {
			if p.State == state.TableDone {
				n++
			}
		}
		d.m.SnapshotTablesDone.Set(float64(n))
	}
	d.log.Info("snapshot copy done", zap.Int64("chunks", done.Load()))
	return nil
}

type copySession struct {
	src, dst  *pgx.Conn
	migration string
}

func (s *copySession) Copy(ctx context.Context, c snapshot.Chunk, rows *atomic.Int64) (int64, error) {
	return postgres.CopyChunk(ctx, s.src, s.dst, c.Ref.(postgres.Chunk), s.migration, rows)
}

func (s *copySession) Close(ctx context.Context) {
	s.src.Close(ctx)
	s.dst.Close(ctx)
}

// postData builds indexes, constraints, foreign keys and triggers after the copy. Each step
// commits with its "done" mark, so a restart runs only what is left. Index and key builds run
// several at once (see postSteps); the rest follows in pg_dump's order.
func (d *Daemon) postData(ctx context.Context, script string) error {
	preamble, steps := postgres.SplitDump(script)
	done, err := d.store.StepsDone(ctx)
	if err != nil {
		return err
	}
	type job struct {
		key  string
		step postgres.Step
	}
	var parallel, serial []job
	for i, s := range steps {
		j := job{key: fmt.Sprintf("post-data/%04d %s", i, s.Name), step: s}
		if done[j.key] {
			continue
		}
		if s.Parallel() {
			parallel = append(parallel, j)
		} else {
			serial = append(serial, j)
		}
	}
	if len(parallel)+len(serial) == 0 {
		return nil
	}
	d.log.Info("building indexes and constraints", zap.Int("parallel", len(parallel)), zap.Int("serial", len(serial)))
	jobs := append(parallel, serial...)
	groups := make([][]int, len(parallel))
	for i := range parallel {
		groups[i] = []int{i}
	}
	var after []int
	for i := len(parallel); i < len(jobs); i++ {
		after = append(after, i)
	}
	open := func(ctx context.Context) (func(ctx context.Context, i int) error, func(), error) {
		conn, err := pgx.Connect(ctx, d.dstDSN)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to target: %w", redactErr(err, d.dstDSN))
		}
		if _, err := conn.PgConn().Exec(ctx, preamble).ReadAll(); err != nil {
			conn.Close(ctx)
			return nil, nil, fmt.Errorf("post-data preamble: %w", err)
		}
		run := func(ctx context.Context, i int) error {
			j := jobs[i]
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Conn().PgConn().Exec(ctx, j.step.SQL).ReadAll(); err != nil {
					return fmt.Errorf("post-data step %s on the target: %w", j.step.Name, err)
				}
				_, err := tx.Exec(ctx, state.StepDoneSQL, d.cfg.Name, j.key)
				return err
			})
		}
		return run, func() { conn.Close(context.WithoutCancel(ctx)) }, nil
	}
	if err := postSteps(ctx, groups, after, d.cfg.Snapshot.Workers, open); err != nil {
		return err
	}
	d.log.Info("indexes and constraints built")
	return nil
}

// maxPostSessions bounds the post-data builds at once, each with its own sort memory
// (PostgreSQL's maintenance_work_mem, InnoDB's sort buffers), whatever snapshot.workers is.
const maxPostSessions = 4

// postSteps runs post-data steps: the groups at once on up to workers sessions (at most
// maxPostSessions), each group's steps in order on one session, then the serial steps in order
// on one session. open opens a session and returns how to run a step on it and how to close it.
func postSteps(ctx context.Context, groups [][]int, serial []int, workers int, open func(ctx context.Context) (run func(ctx context.Context, i int) error, close func(), err error)) error {
	work := make(chan []int)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		for _, steps := range groups {
			select {
			case work <- steps:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range min(max(workers, 1), maxPostSessions, len(groups)) {
		g.Go(func() error {
			run, done, err := open(gctx)
			if err != nil {
				return err
			}
			defer done()
			for steps := range work {
				for _, i := range steps {
					if err := run(gctx, i); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil || len(serial) == 0 {
		return err
	}
	run, done, err := open(ctx)
	if err != nil {
		return err
	}
	defer done()
	for _, i := range serial {
		if err := run(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

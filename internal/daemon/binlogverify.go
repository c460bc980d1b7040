package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/mysql"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/state"
	"github.com/migrated/migrated/internal/verify"
	"go.uber.org/zap"
)

// verifyBinlog starts an online verify of a migration with MySQL on either side: every row
// of the source, in the target's form, against the target's row of the same key.
func (d *Daemon) verifyBinlog(ctx context.Context, _ server.ActionRequest) (any, error) {
	if err := d.acquire("verify"); err != nil {
		return nil, err
	}
	defer d.release()
	if p := d.phase(); p != string(state.PhaseStreaming) {
		return nil, conflict("verify refused: phase is %s; verify compares the source with the target while streaming", p)
	}
	d.mu.Lock()
	running, runCtx := d.verifying, d.runCtx
	if !running {
		d.verifying = true
	}
	d.mu.Unlock()
	if running {
		return d.result("verify", "a verify is already running; follow it with `migrated status`"), nil
	}
	go func() {
		res, err := d.runCross(runCtx)
		sum := res.Summary()
		d.finishVerify(runCtx, sum, err)
		if err == nil {
			d.keepVerify(runCtx, sum)
		}
		if err == nil {
			d.log.Info("verify finished", zap.Bool("clean", sum.Clean), zap.Int64("chunks", sum.Chunks), zap.Int64("mismatched_chunks", sum.Mismatched))
		}
	}()
	return d.result("verify", "verify started; follow it with `migrated status` (or `migrated verify --wait`)"), nil
}

// runCross runs one cross-engine verify with the sides, tables and converters of this migration.
func (d *Daemon) runCross(ctx context.Context) (verify.CrossResult, error) {
	b := d.binlog
	c := &verify.Cross{ChunkRows: d.cfg.Verify.ChunkRows, Log: d.log.Named("verify")}
	var srcPos func(context.Context) (func(string) (bool, error), error)
	switch s := b.source.(type) {
	case *mysqlSource:
		v := mysql.NewVerifyRows(s.addr)
		defer v.Close()
		c.Source = v
		srcPos = func(ctx context.Context) (func(string) (bool, error), error) {
			conn, err := mysql.Connect(ctx, s.addr)
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			now, err := mysql.CurrentPosition(conn)
			if err != nil {
				return nil, err
			}
			want, err := gomysql.ParseGTIDSet(now.Flavor, now.GTID)
			if err != nil {
				return nil, err
			}
			return func(applied string) (bool, error) {
				have, err := gomysql.ParseGTIDSet(now.Flavor, applied)
				return err == nil && have.Contain(want), err
			}, nil
		}
	case *pgSource:
		v, err := postgres.NewVerifyRows(ctx, s.dsn)
		if err != nil {
			return verify.CrossResult{}, err
		}
		defer v.Close()
		c.Source = v
		srcPos = func(ctx context.Context) (func(string) (bool, error), error) {
			conn, err := pgx.Connect(ctx, s.dsn)
			if err != nil {
				return nil, fmt.Errorf("connect to source: %w", redactErr(err, s.dsn))
			}
			defer conn.Close(context.WithoutCancel(ctx))
			want, err := postgres.CurrentLSN(ctx, conn)
			if err != nil {
				return nil, err
			}
			return func(applied string) (bool, error) {
				have, err := postgres.ParseLSN(applied)
				return err == nil && have >= want, err
			}, nil
		}
	}
	targets, err := d.crossTarget(ctx, c)
	if err != nil {
		return verify.CrossResult{}, err
	}
	if closer, ok := c.Target.(interface{ Close() }); ok {
		defer closer.Close()
	}
	c.WaitCaughtUp = func(ctx context.Context) error {
		reached, err := srcPos(ctx)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			pos, _, ok, err := b.sink.position(ctx)
			if err != nil {
				return err
			}
			if ok {
				if done, err := reached(pos); err != nil || done {
					return err
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: the target did not apply the source's position within 5 minutes", verify.ErrStreamBehind)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	var tables []verify.CrossTable
	for _, t := range d.tables {
		tt := targets[t.ID.Name]
		if tt == nil {
			return verify.CrossResult{}, fmt.Errorf("table %s is missing on the target", t.ID)
		}
		tables = append(tables, verify.CrossTable{Source: t, Target: tt})
	}
	started := time.Now()
	so := map[string]verify.CrossTableResult{}
	c.Progress = func(r verify.CrossTableResult) {
		r.Mismatches = nil // counted in r; the samples are shown when the run ends
		so[r.Table] = r
		var all verify.CrossResult
		for _, t := range so {
			all.Tables = append(all.Tables, t)
		}
		sum := all.Summary()
		sum.StartedAt, sum.Tables = started, len(tables)
		d.showVerify(sum, true)
	}
	d.showVerify(verify.Result{StartedAt: started, Tables: len(tables)}, true)
	return c.Run(ctx, tables)
}

// crossTarget sets the target side of a verify, with the converters the migration writes with,
// and returns the target's tables by name.
func (d *Daemon) crossTarget(ctx context.Context, c *verify.Cross) (map[string]*schema.Table, error) {
	b := d.binlog
	byName := map[string]*schema.Table{}
	switch s := b.sink.(type) {
	case *mysqlSink:
		var mine []*schema.Table
		if err := s.state(func(conn *client.Conn) (err error) {
			mine, err = mysql.Tables(conn, s.addr.DB, nil)
			return err
		}); err != nil {
			return nil, err
		}
		for _, t := range mine {
			byName[t.ID.Name] = t
		}
		c.Target = mysql.NewVerifyRows(s.addr)
		if _, ok := b.source.(*pgSource); ok {
			tm := s.typeMap()
			conv := map[cdc.TableID]*mysql.PGConverter{}
			for _, t := range d.tables {
				pc, err := mysql.NewPGConverter(t, tm)
				if err != nil {
					return nil, err
				}
				conv[t.ID] = pc
			}
			c.Convert = func(t *schema.Table, row []cdc.Value) ([]cdc.Value, error) { return conv[t.ID].Row(row) }
			c.KeyToSource = postgres.KeyFromMySQL
		}
	case *pgSink:
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		srcDB := ""
		if len(d.tables) > 0 {
			srcDB = d.tables[0].ID.Schema
		}
		theirs, err := postgres.Tables(ctx, conn.Conn(), func(schema, _ string) bool { return schema == srcDB })
		conn.Release()
		if err != nil {
			return nil, err
		}
		for _, t := range theirs {
			byName[t.ID.Name] = t
		}
		v, err := postgres.NewVerifyRows(ctx, s.dsn)
		if err != nil {
			return nil, err
		}
		c.Target = v
		binary := binaryColumns(d.tables)
		c.Convert = func(t *schema.Table, row []cdc.Value) ([]cdc.Value, error) { return toBytea(row, binary[t.ID]), nil }
		c.KeyToSource = mysql.KeyFromPostgres
	default:
		return nil, errors.New("verify: unknown target")
	}
	return byName, nil
}

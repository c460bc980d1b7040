package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// applyResults are the figures of the apply comparison: how fast a backlog of TPC-B
// transactions that piled up while the tool was stopped is applied to the target.
type applyResults struct {
	scale   int
	backlog int // transactions in each backlog
	clients int // pgbench clients that produced it
	native  applyRun
	mig     applyRun
	decode  result        // the source decoding the backlog for a client that applies nothing
	migRSS  int64         // bytes, the catching-up migrated process
	migCPU  time.Duration // user + system CPU of the catching-up migrated process
}

// applyRun is one tool's catch-up.
type applyRun struct {
	result               // time until the tool confirmed the backlog's end LSN
	rows   time.Duration // time until the target held every backlog transaction
	wal    int64         // bytes of source WAL the backlog took
}

// txnPerSec is the backlog applied per second of catch-up.
func (a *applyResults) txnPerSec(r applyRun) float64 { return float64(a.backlog) / r.d.Seconds() }

// apply compares native logical replication with migrated applying the same backlog. Each tool
// gets its own freshly initialised source database (same scale, same data) and target database,
// and runs alone: the other tool's slot is gone before its backlog is written, so neither
// decodes WAL it does not need.
func (b *bench) apply(ctx context.Context) (*applyResults, error) {
	a := &applyResults{scale: b.applyScale, clients: 4}
	a.backlog = b.backlog / a.clients * a.clients
	if err := b.applyMigrated(ctx, a); err != nil {
		a.mig.err = err
		b.logf("apply: migrated: FAILED: %v", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := b.applyNative(ctx, a); err != nil {
		a.native.err = err
		b.logf("apply: native: FAILED: %v", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := b.applyDecode(ctx, a); err != nil {
		a.decode.err = err
		b.logf("apply: decode only: FAILED: %v", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return a, nil
}

// freshPair creates a source database with pgbench data and an empty target database.
func (b *bench) freshPair(ctx context.Context, name string, scale int) (src, dst string, err error) {
	if src, err = b.srcPG.CreateDB(ctx, name+"_src"); err != nil {
		return "", "", err
	}
	if err := initPgbench(ctx, src, scale); err != nil {
		return "", "", err
	}
	if dst, err = b.dstPG.CreateDB(ctx, name+"_dst"); err != nil {
		return "", "", err
	}
	return src, dst, nil
}

// backlog runs `pgbench -n -t N -c 4 -j 2 -b tpcb-like` on src while the tool is stopped and
// returns the source's WAL end LSN afterwards and the WAL bytes written.
func (b *bench) runBacklog(ctx context.Context, src string, a *applyResults) (end string, wal int64, err error) {
	var start string
	if err := queryRow(ctx, src, "SELECT pg_current_wal_insert_lsn()::text", nil, &start); err != nil {
		return "", 0, err
	}
	b.logf("apply: backlog of %d transactions", a.backlog)
	d, err := timed(func() error {
		return runTool(ctx, "pgbench", "-n", "-t", fmt.Sprint(a.backlog/a.clients), "-c", fmt.Sprint(a.clients),
			"-j", "2", "-b", "tpcb-like", src)
	})
	if err != nil {
		return "", 0, err
	}
	if err := queryRow(ctx, src, "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_insert_lsn() - $1::pg_lsn",
		[]any{start}, &end, &wal); err != nil {
		return "", 0, err
	}
	b.logf("apply: backlog written in %.1f s, %s of WAL, end LSN %s", d.Seconds(), mb(wal), end)
	return end, wal, nil
}

// poller keeps one connection for frequent boolean queries, reconnecting after an error.
type poller struct {
	dsn  string
	conn *pgx.Conn
}

// check runs a query returning one boolean; an error or NULL counts as false.
func (p *poller) check(ctx context.Context, q string, args ...any) bool {
	if p.conn == nil {
		c, err := pgx.Connect(ctx, p.dsn)
		if err != nil {
			return false
		}
		p.conn = c
	}
	var ok *bool
	if err := p.conn.QueryRow(ctx, q, args...).Scan(&ok); err != nil {
		p.conn.Close(context.WithoutCancel(ctx))
		p.conn = nil
		return false
	}
	return ok != nil && *ok
}

func (p *poller) close() {
	if p.conn != nil {
		p.conn.Close(context.Background())
	}
}

// catchUp waits, from t0, until the target holds the whole backlog (every transaction inserts
// one pgbench_history row and is applied in commit order, so the row count says when the last
// one is visible) and until confirmed(end) holds. It records both times in r.
func catchUp(ctx context.Context, t0 time.Time, dst string, rows int64, abort func() error,
	confirmed func() bool, r *applyRun) error {
	target := &poller{dsn: dst}
	defer target.close()
	return waitUntil(ctx, "the target to catch up", 2*time.Hour, abort, func() bool {
		if r.rows == 0 && target.check(ctx, "SELECT count(*) >= $1 FROM pgbench_history", rows) {
			r.rows = time.Since(t0)
		}
		if r.d == 0 && confirmed() {
			r.d = time.Since(t0)
		}
		return r.rows > 0 && r.d > 0
	})
}

// applyMigrated starts migrated on a fresh pair and lets it reach streaming, stops it, writes
// the backlog, and times a new `migrated run` from process start until the target's checkpoint
// (_migrated.progress.position, committed with the data) passes the backlog's end LSN.
func (b *bench) applyMigrated(ctx context.Context, a *applyResults) error {
	defer b.dropDB(b.srcPG, "apply_mig_src")
	defer b.dropDB(b.dstPG, "apply_mig_dst")
	b.logf("apply: migrated: pgbench -i -s %d", a.scale)
	src, dst, err := b.freshPair(ctx, "apply_mig", a.scale)
	if err != nil {
		return err
	}
	m, err := newMigration(b.tmp, b.logDir, "apply", src, dst, b.jobs)
	if err != nil {
		return err
	}
	defer b.cleanupSource(m)
	d, err := startDaemon(b.bin, m)
	if err != nil {
		return err
	}
	defer d.kill()
	if _, err := d.waitStreaming(ctx, time.Hour); err != nil {
		return err
	}
	if _, err := d.stop(); err != nil {
		return err
	}
	end, wal, err := b.runBacklog(ctx, src, a)
	if err != nil {
		return err
	}
	a.mig.wal = wal
	var rows int64
	if err := queryRow(ctx, src, "SELECT count(*) FROM pgbench_history", nil, &rows); err != nil {
		return err
	}
	b.logf("apply: migrated: catching up")
	d2, err := startDaemon(b.bin, m)
	if err != nil {
		return err
	}
	defer d2.kill()
	target := &poller{dsn: dst}
	defer target.close()
	confirmed := func() bool {
		return target.check(ctx, `SELECT position::pg_lsn >= $1::pg_lsn FROM _migrated.progress
			WHERE migration = $2 AND stream = 'forward'`, end, m.name)
	}
	if err := catchUp(ctx, d2.start, dst, rows, d2.exited, confirmed, &a.mig); err != nil {
		return err
	}
	rss, err := d2.stop()
	a.migRSS = rss
	if err != nil {
		return err
	}
	a.migCPU = d2.cpu
	b.logf("apply: migrated: %.1f s (rows visible at %.1f s), peak RSS %s, CPU %.1f s", a.mig.d.Seconds(), a.mig.rows.Seconds(), mb(rss), d2.cpu.Seconds())
	return nil
}

// applyNative subscribes a fresh target (schema from pg_dump -s) to a FOR ALL TABLES
// publication, waits for the initial copy, disables the subscription, writes the backlog and
// times from ALTER SUBSCRIPTION ... ENABLE until the subscription's slot on the source has
// confirmed_flush_lsn at or past the backlog's end LSN.
func (b *bench) applyNative(ctx context.Context, a *applyResults) error {
	defer b.dropDB(b.srcPG, "apply_nat_src")
	defer b.dropDB(b.dstPG, "apply_nat_dst")
	b.logf("apply: native: pgbench -i -s %d", a.scale)
	src, dst, err := b.freshPair(ctx, "apply_nat", a.scale)
	if err != nil {
		return err
	}
	if err := dumpRestore(ctx, src, dst, "-s"); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if err := execSQL(ctx, src, "CREATE PUBLICATION bench_pub FOR ALL TABLES"); err != nil {
		return err
	}
	conninfo := fmt.Sprintf("host=%s port=%d user=postgres dbname=apply_nat_src", b.srcPG.Host(), b.srcPG.Port())
	if err := execSQL(ctx, dst, fmt.Sprintf(
		"CREATE SUBSCRIPTION bench_sub CONNECTION '%s' PUBLICATION bench_pub WITH (copy_data = true)", conninfo)); err != nil {
		return err
	}
	defer b.dropSubscription(dst)
	target := &poller{dsn: dst}
	defer target.close()
	source := &poller{dsn: src}
	defer source.close()
	err = waitUntil(ctx, "the initial table copy (all tables in state r)", time.Hour, nil, func() bool {
		return target.check(ctx, "SELECT count(*) = $1 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel", len(pgbenchTables))
	})
	if err != nil {
		return err
	}
	if err := execSQL(ctx, dst, "ALTER SUBSCRIPTION bench_sub DISABLE"); err != nil {
		return err
	}
	err = waitUntil(ctx, "the subscription's walsender to stop", time.Minute, nil, func() bool {
		return source.check(ctx, "SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'bench_sub'")
	})
	if err != nil {
		return err
	}
	disabled := time.Now()
	end, wal, err := b.runBacklog(ctx, src, a)
	if err != nil {
		return err
	}
	a.native.wal = wal
	// The launcher starts apply workers at most once per wal_retrieve_retry_interval and last
	// looked when the worker exited on DISABLE. Let that pass (a short backlog takes less), so
	// that the clock does not include a throttle our own quick DISABLE/ENABLE caused.
	var retryMS int64
	if err := queryRow(ctx, dst, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'", nil, &retryMS); err != nil {
		return err
	}
	if wait := time.Until(disabled.Add(time.Duration(retryMS)*time.Millisecond + time.Second)); wait > 0 {
		b.logf("apply: native: waiting %.1f s for the launcher's wal_retrieve_retry_interval", wait.Seconds())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	var rows int64
	if err := queryRow(ctx, src, "SELECT count(*) FROM pgbench_history", nil, &rows); err != nil {
		return err
	}
	b.logf("apply: native: catching up")
	confirmed := func() bool {
		return source.check(ctx, "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'bench_sub'", end)
	}
	t0 := time.Now()
	if err := execSQL(ctx, dst, "ALTER SUBSCRIPTION bench_sub ENABLE"); err != nil {
		return err
	}
	if err := catchUp(ctx, t0, dst, rows, nil, confirmed, &a.native); err != nil {
		return err
	}
	b.logf("apply: native: %.1f s (rows visible at %.1f s)", a.native.d.Seconds(), a.native.rows.Seconds())
	return nil
}

// dropSubscription removes bench_sub and its slot; if the source cannot be reached it detaches
// the slot first so that the target database can still be dropped.
func (b *bench) dropSubscription(dst string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if execSQL(ctx, dst, "DROP SUBSCRIPTION IF EXISTS bench_sub") == nil {
		return
	}
	execSQL(ctx, dst, "ALTER SUBSCRIPTION bench_sub DISABLE", "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)",
		"DROP SUBSCRIPTION IF EXISTS bench_sub")
}

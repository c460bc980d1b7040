// Package demo runs a complete, self-checking migration on one machine: it starts two throwaway
// PostgreSQL clusters, generates a shop database in the source and keeps a writer busy on it.
// With the daemon in-process it copies and streams, verifies, cuts over with the writer following
// the routing hook to the target, writes there for a while with the reverse stream running, and
// rolls back. Then it checks both sides independently of the daemon's code: every table byte for
// byte, and every write the writer saw acknowledged, on the target and on the source. It is what
// `migrated demo` and `make demo` run.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/testenv"
	"golang.org/x/sync/errgroup"
)

// ErrNoPostgres means the PostgreSQL server binaries the demo needs are not installed.
var ErrNoPostgres = errors.New("the PostgreSQL 15 server binaries (initdb, postgres, pg_dump) are not installed; " +
	"install them with `sudo apt-get install postgresql-15` and run the demo again")

// Options configures Run. The zero value runs the default demo quietly.
type Options struct {
	// SizeMB is the approximate size of the generated dataset on disk. Default 300.
	SizeMB int
	// Stream is how long the writer keeps writing once the daemon is streaming, with lag shown
	// live, before the verify starts. Default 10s; negative means not at all.
	Stream time.Duration
	// DualWrite is how long the writer writes to the target after the cutover, with the reverse
	// stream carrying its writes back to the source, before the rollback. Default 5s; negative
	// means the rollback follows at once.
	DualWrite time.Duration
	// Keep leaves the clusters and the daemon running after the report, with their DSNs printed,
	// until ctx ends. The clusters cannot outlive the process: they die with it.
	Keep bool
	// Out receives the progress display and the report. Default io.Discard.
	Out io.Writer
	// TTY redraws the status in place every 500ms, with colours; otherwise a one-line summary is
	// printed every 2s.
	TTY bool
	// Width is the terminal width for the status view. Default 100.
	Width int
	// WriterPause is the pause between two transactions on each writer connection. Default 2ms.
	WriterPause time.Duration
	// LogLevel is the daemon log's level: debug, info, warn or error. Default info.
	LogLevel string
	// Version is reported in the daemon's build info metric.
	Version string
}

func (o Options) withDefaults() Options {
	if o.SizeMB == 0 {
		o.SizeMB = 300
	}
	if o.Stream == 0 {
		o.Stream = 10 * time.Second
	}
	o.Stream = max(o.Stream, 0)
	if o.DualWrite == 0 {
		o.DualWrite = 5 * time.Second
	}
	o.DualWrite = max(o.DualWrite, 0)
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Width <= 0 {
		o.Width = 100
	}
	if o.WriterPause == 0 {
		o.WriterPause = 2 * time.Millisecond
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return o
}

// Report is the outcome of a demo run.
type Report struct {
	// Tables has one entry per table, a partitioned table with its partitions summed.
	Tables []TableResult
	// GeneratedBytes is the size of the generated dataset on the source before the migration.
	GeneratedBytes int64
	// SetupTime covers starting the clusters and generating the data; LoadTime is the latter.
	SetupTime, LoadTime time.Duration
	// SnapshotTime runs from the daemon's start to the streaming phase: preflight, schema, the
	// copy, and the indexes and keys built after it.
	SnapshotTime time.Duration
	// StreamTime is how long the writer ran once the daemon streamed, through the verify, the
	// cutover, the dual-write phase and the rollback; CatchUpTime is how long the target then
	// took to pass the source's last WAL position.
	StreamTime, CatchUpTime time.Duration
	// Verify is migrated's own online verify, run while the writer wrote.
	Verify VerifyResult
	// Cutover moved the writes to the target, Rollback back to the source. Both are zero when
	// an earlier stage failed.
	Cutover, Rollback SwitchResult
	// DualWriteTime is how long the writer wrote to the target between the two.
	DualWriteTime time.Duration
	// ReverseChanges is what the reverse stream applied to the source in that time, and
	// ReverseMaxLagSeconds its highest lag.
	ReverseChanges       int64
	ReverseMaxLagSeconds float64
	// Routes lists the sides the routing hook sent the writer to, in order.
	Routes []string
	// VerifyTime is the independent comparison; TotalTime is the whole run.
	VerifyTime, TotalTime time.Duration
	// ChangesStreamed and TxnsStreamed are what the daemon applied from the forward stream.
	ChangesStreamed, TxnsStreamed int64
	// FinalLagSeconds and FinalLagBytes are the daemon's lag once caught up.
	FinalLagSeconds float64
	FinalLagBytes   int64
	// WritesAcked and TxnsAcked count the rows written by the writer's committed transactions;
	// WritesOnSource and WritesOnTarget split WritesAcked by the side that acknowledged them.
	WritesAcked, TxnsAcked         int64
	WritesOnSource, WritesOnTarget int64
	// KeysChecked is how many distinct acknowledged keys were looked up on each side;
	// KeysExcluded were left out because the writer deleted them later.
	KeysChecked, KeysExcluded int
	// WritesLost is how many acknowledged keys either side lacks, listed by table in
	// MissingOnTarget and MissingOnSource.
	WritesLost                       int
	MissingOnTarget, MissingOnSource map[string][]string
	// Mismatched lists the tables whose contents differ between the two sides.
	Mismatched []string
}

// VerifyResult is the outcome of migrated's online verify.
type VerifyResult struct {
	// Ran is false when the demo stopped before the verify.
	Ran bool
	// Clean is true when every chunk of every table matched.
	Clean bool
	// Tables and Chunks are what was compared; Mismatched counts the chunks that differ.
	Tables             int
	Chunks, Mismatched int64
	// Samples are some of the rows that differ.
	Samples []server.Mismatch
	// Error is why the verify stopped, if it did.
	Error string
	// Time is how long it took.
	Time time.Duration
}

// SwitchResult is the outcome of a cutover or a rollback under the writer's load.
type SwitchResult struct {
	// Outcome is the daemon's: "done", "aborted" or "failed", or "refused" when the
	// preconditions did not hold. Empty when the switch was not attempted.
	Outcome string
	// Error says why it did not complete.
	Error string
	// Took is the whole action, preconditions included.
	Took time.Duration
	// WriteUnavailable is migrated's figure: from the fence on the old side to the new side
	// writable.
	WriteUnavailable time.Duration
	// LongestGap is the writer's figure: the longest time between two of its acknowledged
	// writes around the switch, which adds the routing hook and the reconnect to the new side.
	LongestGap time.Duration
	// Refused counts the writer's transactions the fence turned away; each was retried.
	Refused int64
	// FencePosition is the old side's WAL position at the fence.
	FencePosition string
}

// Done reports whether the switch completed.
func (s SwitchResult) Done() bool { return s.Outcome == "done" }

func (s SwitchResult) problem(name string) string {
	if s.Outcome == "" {
		return "the " + name + " did not run"
	}
	return fmt.Sprintf("the %s was %s: %s", name, s.Outcome, s.Error)
}

// OK reports whether the online verify was clean, the cutover and the rollback completed, no
// acknowledged write was lost on either side and every table verified equal.
func (r *Report) OK() bool { return r.Err() == nil }

// Err describes what went wrong, or returns nil when OK.
func (r *Report) Err() error {
	var problems []string
	switch v := r.Verify; {
	case !v.Ran:
		problems = append(problems, "the online verify did not run")
	case v.Error != "":
		problems = append(problems, "the online verify failed: "+v.Error)
	case !v.Clean:
		problems = append(problems, fmt.Sprintf("the online verify found %d mismatched chunks (%s)", v.Mismatched, mismatches(v.Samples)))
	}
	if r.Verify.Clean {
		// A switch that did not complete stops the demo's switches there: report the first.
		switch {
		case !r.Cutover.Done():
			problems = append(problems, r.Cutover.problem("cutover"))
		case !r.Rollback.Done():
			problems = append(problems, r.Rollback.problem("rollback"))
		}
	}
	if r.WritesLost > 0 {
		problems = append(problems, fmt.Sprintf("%d acknowledged writes are missing (on the target: %s; on the source: %s)",
			r.WritesLost, sample(r.MissingOnTarget), sample(r.MissingOnSource)))
	}
	if len(r.Mismatched) > 0 {
		problems = append(problems, fmt.Sprintf("%d tables differ between source and target (%s)", len(r.Mismatched), strings.Join(r.Mismatched, ", ")))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("demo failed: %s", strings.Join(problems, "; "))
}

// Run runs the demo and returns its report, which the caller should check with OK; the report
// has already been written to Out. An error means the demo could not run to the end. Everything
// it started is stopped and its temp files removed before it returns, also when ctx is cancelled,
// except the daemon log after a failure, whose path it prints.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	start := time.Now()
	con := &console{w: opts.Out, tty: opts.TTY, width: opts.Width, color: opts.TTY && os.Getenv("NO_COLOR") == ""}
	if _, err := exec.LookPath("pg_dump"); err != nil {
		return nil, fmt.Errorf("%w (pg_dump is not on PATH)", ErrNoPostgres)
	}
	dir, err := os.MkdirTemp("", "migrated-demo-")
	if err != nil {
		return nil, fmt.Errorf("create a temp dir: %w", err)
	}
	keepLog := false
	defer func() {
		if !keepLog {
			os.RemoveAll(dir)
		}
	}()

	con.printf("starting two throwaway PostgreSQL clusters …\n")
	src, dst, err := startClusters(ctx)
	if err != nil {
		return nil, err
	}
	defer dst.stop()
	defer src.stop()
	con.printf("source  %s\ntarget  %s\n", src.dsn, dst.dsn)

	ds := NewDataset(opts.SizeMB)
	rep := &Report{}
	loadStart := time.Now()
	if rep.GeneratedBytes, err = load(ctx, con, ds, src.dsn, opts.SizeMB); err != nil {
		return nil, err
	}
	rep.LoadTime, rep.SetupTime = time.Since(loadStart), time.Since(start)

	m := &migration{opts: opts, con: con, ds: ds, src: src.dsn, dst: dst.dsn, logPath: filepath.Join(dir, "daemon.log"), rep: rep, start: start}
	if err := m.run(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		keepLog = true
		return nil, fmt.Errorf("%w\nthe daemon log is kept at %s", err, m.logPath)
	}
	if !rep.OK() {
		keepLog = true
		con.printf("\nthe daemon log is kept at %s\n", m.logPath)
	}
	return rep, nil
}

// cluster is one side of the demo: a throwaway server and the database in it.
type cluster struct {
	pg   *testenv.Postgres
	db   string
	dsn  string
	once sync.Once
}

// startClusters starts the source and target clusters in parallel, each with an empty database.
func startClusters(ctx context.Context) (src, dst *cluster, err error) {
	src, dst = &cluster{db: "shop"}, &cluster{db: "shop"}
	if os.Getenv(testenv.PostgresURLEnv) != "" {
		// Both sides are databases of the one server named there; keep their names apart.
		src.db, dst.db = "migrated_demo_source", "migrated_demo_target"
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range []*cluster{src, dst} {
		g.Go(func() error {
			pg, err := testenv.StartPostgres(testenv.PostgresOptions{})
			if errors.Is(err, testenv.ErrNotInstalled) {
				return fmt.Errorf("%w\n(%v)", ErrNoPostgres, err)
			}
			if err != nil {
				return fmt.Errorf("start a PostgreSQL cluster: %w", err)
			}
			c.pg = pg
			c.dsn, err = pg.CreateDB(gctx, c.db)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		src.stop()
		dst.stop()
		return nil, nil, err
	}
	return src, dst, nil
}

// stop shuts the cluster down and deletes it, or drops the database on an external server.
func (c *cluster) stop() {
	c.once.Do(func() {
		if c.pg == nil {
			return
		}
		if c.pg.External() && c.dsn != "" {
			dropDatabase(c.pg.DSN("postgres"), c.db)
		}
		c.pg.Stop()
	})
}

// dropDatabase removes a demo database and the replication slots in it from an external server.
func dropDatabase(adminDSN, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, db)
	time.Sleep(200 * time.Millisecond)
	conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
	conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
}

// load generates the dataset with a spinner and returns its size.
func load(ctx context.Context, con *console, ds Dataset, dsn string, sizeMB int) (int64, error) {
	con.printf("generating a ~%d MB shop database: customers, products, orders, order_items, events (%d monthly partitions), documents (TOAST) …\n", sizeMB, ds.Months+1)
	var mu sync.Mutex
	state := map[string]string{}
	var order []string
	progress := func(table string, done bool) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := state[table]; !ok {
			order = append(order, table)
		}
		state[table] = "…"
		if done {
			state[table] = "✓"
		}
	}
	label := func() string {
		mu.Lock()
		defer mu.Unlock()
		parts := make([]string, len(order))
		for i, t := range order {
			parts[i] = t + " " + state[t]
		}
		return "loading " + strings.Join(parts, "  ")
	}
	t0 := time.Now()
	stop := con.spinner(label)
	err := ds.Load(ctx, dsn, progress)
	stop()
	if err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var size int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'`).Scan(&size); err != nil {
		return 0, err
	}
	con.printf("generated %s in %s: %s customers, %s products, %s orders, ~%s order items, %s events, %s documents\n",
		iec(size), dur(time.Since(t0)), count(ds.Customers), count(ds.Products), count(ds.Orders), count(ds.Orders*5/2),
		count(ds.Events), count(ds.Documents))
	return size, nil
}

// snapshotRows sums the rows the daemon copied per table, partitions into their root.
func snapshotRows(ctx context.Context, dsn string, copied map[string]int64) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, rootOf, err := tables(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for t, n := range copied {
		root, ok := rootOf[t]
		if !ok {
			root = t
		}
		out[root] += n
	}
	return out, nil
}

// newWriterPool opens the writer's pool of two connections.
func newWriterPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 2
	return pgxpool.NewWithConfig(ctx, cfg)
}

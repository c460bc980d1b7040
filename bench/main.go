// Command bench measures migrated beside the tools it competes with, in one run, on the same
// data and the same server settings, and prints the figures as ratios. It is a report, not a
// test: nothing fails on a missed goal.
//
//	make bench                        # go run ./bench after make build
//	make bench BENCHFLAGS=-quick      # a smoke run on tiny data
//	go run ./bench -only apply -backlog 100000
//
// Two throwaway PostgreSQL clusters (internal/testenv) act as source and target. The snapshot
// part copies a `pgbench -i` database with pg_dump|psql, pgcopydb clone and migrated, each into
// a fresh target database, and times each to a complete, indexed target. The apply part writes
// a TPC-B backlog while native logical replication or migrated is stopped and times how fast
// each catches up. The cutover part cuts over and rolls back repeatedly under a steady TPC-B
// load, measures the write pause of each switch, and checks that no acknowledged write is lost.
// Peak RSS of migrated comes from the kernel's rusage of the process.
//
// The MariaDB parts (mysql.go; -only mysql, or mysql-snapshot, mysql-apply, mysql-pg) start
// their own MariaDB servers: a sysbench database copied by mariadb-dump|mariadb and by migrated,
// a sysbench backlog applied by a native replica and by migrated, and MariaDB → PostgreSQL by
// pgloader and by migrated (whose row says "not built yet" if the binary refuses that pair).
//
// The summary goes to stdout and to bench/results/latest.txt, with migrated's logs beside it;
// progress goes to stderr. Clusters and temp dirs are removed at the end, also after Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/migrated/migrated/internal/testenv"
)

// serverSettings apply to both clusters on top of testenv's defaults (fsync, synchronous_commit
// and full_page_writes off, wal_level logical), so every tool meets identical servers.
var serverSettings = map[string]string{
	"shared_buffers":       "1GB",
	"maintenance_work_mem": "512MB",
	"max_wal_size":         "8GB",
	"checkpoint_timeout":   "30min",
}

// bench holds what every part of the run shares.
type bench struct {
	bin        string // the migrated binary
	scale      int    // pgbench scale of the snapshot part
	applyScale int    // pgbench scale of the apply part
	backlog    int    // TPC-B transactions in the apply backlog
	cutovers   int    // cutover-and-rollback cycles of the cutover part
	myTables   int    // sysbench tables of the MariaDB parts
	myRows     int    // rows per sysbench table
	myBacklog  int    // sysbench oltp_write_only transactions in the MariaDB apply backlog
	jobs       int    // parallelism given to every tool
	srcPG      *testenv.Postgres
	dstPG      *testenv.Postgres
	tmp        string // configs and pgcopydb work dirs, removed at the end
	logDir     string // migrated's logs, kept beside the results
	started    time.Time
	load       string // 1-minute load average when the run began: other work skews the figures
}

func main() { os.Exit(run()) }

func run() int {
	var (
		scale   = flag.Int("scale", 40, "pgbench scale of the snapshot database (40 ≈ 600 MB)")
		backlog = flag.Int("backlog", 40000, "TPC-B transactions in the apply backlog")
		cycles  = flag.Int("cutovers", 10, "cutover-and-rollback cycles of the cutover part")
		quick   = flag.Bool("quick", false, "smoke run: scale 2, backlog 2000, 3 cutovers, sysbench 4 × 20000 rows")
		only    = flag.String("only", "", "run only some parts: snapshot, apply, cutover, mysql (all MariaDB parts), mysql-snapshot, mysql-apply or mysql-pg")
		myTabs  = flag.Int("mysql-tables", 4, "sysbench tables of the MariaDB parts")
		myRows  = flag.Int("mysql-rows", 1_000_000, "rows per sysbench table of the MariaDB parts")
		myBack  = flag.Int("mysql-backlog", 40000, "sysbench oltp_write_only transactions in the MariaDB apply backlog")
		bin     = flag.String("bin", "bin/migrated", "the migrated binary (make build)")
		results = flag.String("results", "bench/results", "directory for latest.txt and migrated's logs")
		jobs    = flag.Int("jobs", 2, "parallel jobs for every tool (pgcopydb --table-jobs/--index-jobs, migrated snapshot.workers)")
	)
	flag.Parse()
	if *only != "" && !pgPart(*only) && !partsFor(*only).any() {
		fmt.Fprintln(os.Stderr, "bench: -only must be snapshot, apply, cutover, mysql, mysql-snapshot, mysql-apply or mysql-pg")
		return 2
	}
	b := &bench{scale: *scale, applyScale: 10, backlog: *backlog, cutovers: *cycles, jobs: *jobs, started: time.Now(), load: "?",
		myTables: *myTabs, myRows: *myRows, myBacklog: *myBack}
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.load, _, _ = strings.Cut(string(l), " ")
	}
	if *quick {
		b.scale, b.applyScale, b.backlog = 2, 1, 2000
		b.myTables, b.myRows, b.myBacklog = 4, 20000, 2000
		b.cutovers = min(b.cutovers, 3)
	}
	b.applyScale = min(b.applyScale, b.scale)
	var err error
	if b.bin, err = filepath.Abs(*bin); err == nil {
		_, err = os.Stat(b.bin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v (run make build first)\n", err)
		return 1
	}
	for _, tool := range []string{"pgbench", "pg_dump", "psql"} {
		if _, err := exec.LookPath(tool); err != nil && (*only == "" || pgPart(*only)) {
			fmt.Fprintf(os.Stderr, "bench: %s not found: %v\n", tool, err)
			return 1
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
			stop() // a second Ctrl-C kills at once; the servers die with us (parent-death signal)
			fmt.Fprintln(os.Stderr, "bench: interrupted, cleaning up")
		case <-finished:
		}
	}()

	report, err := b.run(ctx, *only, *results)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bench: interrupted; nothing written")
		return 130
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if report == "" {
			return 1
		}
	}
	fmt.Print(report)
	if werr := os.WriteFile(filepath.Join(*results, "latest.txt"), []byte(report), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "bench:", werr)
		return 1
	}
	if err != nil {
		return 1
	}
	return 0
}

// pgPart reports whether -only names a PostgreSQL part.
func pgPart(only string) bool { return only == "snapshot" || only == "apply" || only == "cutover" }

// run runs the selected parts and returns the summary: the PostgreSQL parts, then the MariaDB
// parts. The servers and the temp dir are gone when it returns.
func (b *bench) run(ctx context.Context, only, results string) (string, error) {
	b.logDir = results
	if err := os.MkdirAll(results, 0o755); err != nil {
		return "", err
	}
	var err error
	if b.tmp, err = os.MkdirTemp("", "migrated-bench-"); err != nil {
		return "", err
	}
	defer os.RemoveAll(b.tmp)
	var report string
	if only == "" || pgPart(only) {
		if report, err = b.runPostgres(ctx, only); err != nil {
			return "", err
		}
	}
	if parts := partsFor(only); parts.any() {
		my, err := b.runMySQL(ctx, parts)
		if my != nil {
			report += reportMySQL(my)
		}
		if err != nil {
			return report, err
		}
	}
	b.logf("done")
	return report, nil
}

// runPostgres starts the clusters, runs the selected PostgreSQL parts and returns their summary.
// The clusters are gone when it returns.
func (b *bench) runPostgres(ctx context.Context, only string) (string, error) {
	var err error
	opts := testenv.PostgresOptions{Settings: serverSettings}
	b.logf("starting source and target clusters")
	if b.srcPG, err = testenv.StartPostgres(opts); err != nil {
		return "", err
	}
	defer b.srcPG.Stop()
	if b.dstPG, err = testenv.StartPostgres(opts); err != nil {
		return "", err
	}
	defer b.dstPG.Stop()
	var version string
	if err := queryRow(ctx, b.srcPG.DSN("postgres"), "SELECT current_setting('server_version')", nil, &version); err != nil {
		return "", err
	}

	var snap *snapshotResults
	var app *applyResults
	var cut *cutoverResults
	if only == "" || only == "snapshot" {
		if snap, err = b.snapshot(ctx); err != nil {
			return "", fmt.Errorf("snapshot: %w", err)
		}
	}
	if only == "" || only == "apply" {
		if app, err = b.apply(ctx); err != nil {
			return "", fmt.Errorf("apply: %w", err)
		}
	}
	if only == "" || only == "cutover" {
		if cut, err = b.cutover(ctx); err != nil {
			return "", fmt.Errorf("cutover: %w", err)
		}
	}
	return b.report(version, snap, app) + reportCutover(cut), nil
}

// logf prints a progress line to stderr, stamped with the time since the start.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// dropDB drops a database and its replication slots; errors are only logged.
func (b *bench) dropDB(pg *testenv.Postgres, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := pg.DSN("postgres")
	err := execSQL(ctx, dsn,
		fmt.Sprintf(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '%s' AND active_pid IS NOT NULL`, name))
	if err == nil {
		time.Sleep(200 * time.Millisecond)
		err = execSQL(ctx, dsn,
			fmt.Sprintf(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '%s'`, name),
			fmt.Sprintf(`DROP DATABASE IF EXISTS "%s" WITH (FORCE)`, name))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		b.logf("cleanup: drop database %s: %v", name, err)
	}
}

// cleanupSource drops a migration's slot and publication on the source; errors are only logged.
func (b *bench) cleanupSource(m *migration) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.dropSourceObjects(ctx); err != nil {
		b.logf("cleanup: migration %s: %v", m.name, err)
	}
}

// settingsText lists the server settings the bench adds, for the report header.
func settingsText() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(serverSettings)) {
		parts = append(parts, k+"="+serverSettings[k])
	}
	return "fsync=off synchronous_commit=off full_page_writes=off " + strings.Join(parts, " ")
}

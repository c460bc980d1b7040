package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/migrated/migrated/internal/config"
)

// result is one timed run: how long it took, or why there is no figure.
type result struct {
	d       time.Duration
	err     error  // the run failed
	skipped string // the run did not happen, e.g. the tool is not installed
}

// ok reports whether the run produced a figure.
func (r result) ok() bool { return r.err == nil && r.skipped == "" && r.d > 0 }

// snapshotResults are the figures of the snapshot comparison: the time from nothing on the
// target to a complete, indexed copy.
type snapshotResults struct {
	scale   int
	bytes   int64 // pg_database_size of the source
	jobs    int   // parallelism given to every tool
	pgdump  result
	pgcopy  result
	split   result // pgcopydb with same-table concurrency like migrated's chunks
	splitAt int64  // --split-tables-larger-than, bytes; 0 when no table is big enough to split
	parts   int64  // chunks of pgbench_accounts in migrated and in the split pgcopydb run

	migrated    result
	migratedRSS int64 // bytes
	best        result
	bestWorkers int // migrated's default worker count, tried for information
}

// snapshot compares pg_dump|psql, pgcopydb clone and migrated copying one pgbench database.
// Each tool gets a freshly created target database on the same target cluster, and every run
// is checked for completeness (row and index counts) after its clock stops.
func (b *bench) snapshot(ctx context.Context) (*snapshotResults, error) {
	r := &snapshotResults{scale: b.scale, jobs: b.jobs, bestWorkers: config.DefaultWorkers}
	b.logf("snapshot: pgbench -i -s %d on the source", b.scale)
	src, err := b.srcPG.CreateDB(ctx, "snap_src")
	if err != nil {
		return nil, err
	}
	defer b.dropDB(b.srcPG, "snap_src")
	if err := initPgbench(ctx, src, b.scale); err != nil {
		return nil, err
	}
	var tuples float64
	var relBytes int64
	if err := queryRow(ctx, src, `SELECT pg_database_size(current_database()), c.reltuples::float8, pg_relation_size(c.oid)
		FROM pg_class c WHERE c.oid = 'pgbench_accounts'::regclass`, nil, &r.bytes, &tuples, &relBytes); err != nil {
		return nil, err
	}
	// pgcopydb splits a table into ceil(size/threshold) parts; choose the threshold that gives
	// the number of chunks migrated plans (config.DefaultSplitRows rows each).
	r.parts = (int64(tuples) + config.DefaultSplitRows - 1) / config.DefaultSplitRows
	if r.parts > 1 {
		r.splitAt = relBytes/r.parts + 1<<20
	}
	b.logf("snapshot: source is %s", mb(r.bytes))

	havePgcopydb := true
	if _, err := exec.LookPath("pgcopydb"); err != nil {
		havePgcopydb = false
	}
	runs := []struct {
		label string
		res   *result
		skip  string
		fn    func(dst string) (time.Duration, error)
	}{
		{"pg_dump|psql", &r.pgdump, "", func(dst string) (time.Duration, error) {
			return timed(func() error { return dumpRestore(ctx, src, dst) })
		}},
		{"pgcopydb clone", &r.pgcopy, missing(havePgcopydb), func(dst string) (time.Duration, error) {
			return b.pgcopydb(ctx, src, dst, 0)
		}},
		{"pgcopydb clone --split-tables-larger-than", &r.split, firstOf(missing(havePgcopydb), noSplit(r.splitAt)), func(dst string) (time.Duration, error) {
			return b.pgcopydb(ctx, src, dst, r.splitAt)
		}},
		{fmt.Sprintf("migrated (%d workers)", b.jobs), &r.migrated, "", func(dst string) (time.Duration, error) {
			d, rss, err := b.snapMigrated(ctx, src, dst, b.jobs)
			r.migratedRSS = rss
			return d, err
		}},
		{fmt.Sprintf("migrated (%d workers)", r.bestWorkers), &r.best, sameAs(b.jobs, r.bestWorkers), func(dst string) (time.Duration, error) {
			d, _, err := b.snapMigrated(ctx, src, dst, r.bestWorkers)
			return d, err
		}},
	}
	for _, run := range runs {
		if run.skip != "" {
			run.res.skipped = run.skip
			b.logf("snapshot: %s: skipped, %s", run.label, run.skip)
			continue
		}
		dst, err := b.dstPG.CreateDB(ctx, "snap_dst")
		if err != nil {
			return nil, err
		}
		if err := execSQL(ctx, src, "CHECKPOINT"); err != nil {
			return nil, err
		}
		if err := execSQL(ctx, dst, "CHECKPOINT"); err != nil {
			return nil, err
		}
		b.logf("snapshot: %s ...", run.label)
		d, err := run.fn(dst)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			err = verifyCopy(ctx, src, dst)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		*run.res = result{d: d, err: err}
		if err != nil {
			b.logf("snapshot: %s: FAILED: %v", run.label, err)
		} else {
			b.logf("snapshot: %s: %.1f s", run.label, d.Seconds())
		}
	}
	b.dropDB(b.dstPG, "snap_dst")
	return r, nil
}

// pgcopydb runs `pgcopydb clone` with as many table and index jobs as the other tools get.
// splitAt > 0 adds --split-tables-larger-than, pgcopydb's same-table concurrency.
func (b *bench) pgcopydb(ctx context.Context, src, dst string, splitAt int64) (time.Duration, error) {
	dir, err := os.MkdirTemp(b.tmp, "pgcopydb-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	jobs := fmt.Sprint(b.jobs)
	args := []string{"clone", "--source", src, "--target", dst, "--table-jobs", jobs, "--index-jobs", jobs,
		"--no-owner", "--no-acl", "--skip-extensions", "--dir", filepath.Join(dir, "work")}
	if splitAt > 0 {
		args = append(args, "--split-tables-larger-than", fmt.Sprintf("%dkB", splitAt/1024))
	}
	return timed(func() error { return runTool(ctx, "pgcopydb", args...) })
}

// snapMigrated runs `migrated run` until it reports phase "streaming", which it enters once
// the schema, every row and every index are on the target, then stops it with SIGTERM. The time
// is from process start to the first status answer saying "streaming".
func (b *bench) snapMigrated(ctx context.Context, src, dst string, workers int) (time.Duration, int64, error) {
	m, err := newMigration(b.tmp, b.logDir, fmt.Sprintf("snap_w%d", workers), src, dst, workers)
	if err != nil {
		return 0, 0, err
	}
	defer b.cleanupSource(m)
	d, err := startDaemon(b.bin, m)
	if err != nil {
		return 0, 0, err
	}
	defer d.kill()
	elapsed, err := d.waitStreaming(ctx, 2*time.Hour)
	if err != nil {
		return 0, 0, err
	}
	rss, err := d.stop()
	return elapsed, rss, err
}

// timed runs fn and returns its wall-clock duration.
func timed(fn func() error) (time.Duration, error) {
	start := time.Now()
	err := fn()
	return time.Since(start), err
}

func missing(installed bool) string {
	if installed {
		return ""
	}
	return "not installed (run bench/install.sh)"
}

// firstOf returns the first non-empty reason.
func firstOf(reasons ...string) string {
	for _, r := range reasons {
		if r != "" {
			return r
		}
	}
	return ""
}

func noSplit(splitAt int64) string {
	if splitAt > 0 {
		return ""
	}
	return "no table is big enough for migrated to split"
}

func sameAs(jobs, workers int) string {
	if jobs != workers {
		return ""
	}
	return "same as above"
}

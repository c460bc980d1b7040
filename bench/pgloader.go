package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/migrated/migrated/internal/testenv"
)

// pgloaderWith are pgloader's load options: bounded batches and two workers, so that a
// million-row table does not exhaust its heap (the defaults do on this machine size).
var pgloaderWith = []string{"prefetch rows = 10000", "batch rows = 5000", "workers = 2", "concurrency = 1"}

// notBuilt is what a migrated binary without the MySQL → PostgreSQL path says when asked for it.
const notBuilt = "not built yet"

// pgloaderResults are the figures of the MariaDB → PostgreSQL comparison.
type pgloaderResults struct {
	pgVersion   string
	pgloader    result
	rss         int64 // peak RSS of pgloader, bytes
	migrated    result
	migratedRSS int64
	migratedCPU time.Duration
}

// pgloader copies the source's sbtest into a fresh database on a PostgreSQL cluster with the
// bench's PostgreSQL settings with pgloader, timed from start to exit (schema, rows, indexes,
// sequences), then with migrated, timed from start to phase streaming, each into its own fresh
// database, and checks row and index counts afterwards. A migrated binary that has no
// MySQL → PostgreSQL path refuses the config at start: its row then says "not built yet".
func (m *myBench) pgloader(ctx context.Context) (*pgloaderResults, error) {
	r := &pgloaderResults{}
	m.logf("mariadb → postgres: starting a PostgreSQL cluster")
	pg, err := testenv.StartPostgres(testenv.PostgresOptions{Settings: serverSettings})
	if err != nil {
		if errors.Is(err, testenv.ErrNotInstalled) {
			r.pgloader.skipped = "PostgreSQL not installed (run bench/install.sh)"
			return r, nil
		}
		return nil, err
	}
	defer pg.Stop()
	if err := queryRow(ctx, pg.DSN("postgres"), "SELECT split_part(current_setting('server_version'), ' ', 1)", nil, &r.pgVersion); err != nil {
		return nil, err
	}

	if _, err := exec.LookPath("pgloader"); err != nil {
		r.pgloader.skipped = "not installed (run bench/install.sh)"
		m.logf("mariadb → postgres: pgloader %s", r.pgloader.skipped)
	} else {
		dst, err := pg.CreateDB(ctx, "pgloader_dst")
		if err != nil {
			return nil, err
		}
		if err := execSQL(ctx, dst, "CHECKPOINT"); err != nil {
			return nil, err
		}
		m.logf("mariadb → postgres: pgloader ...")
		d, rss, err := m.runPgloader(ctx, pg)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			err = m.verifyPgCopy(ctx, dst)
		}
		r.pgloader, r.rss = result{d: d, err: err}, rss
		m.logResult(fmt.Sprintf("mariadb → postgres: pgloader (peak RSS %s)", mb(rss)), r.pgloader)
		m.dropPgDB(pg, "pgloader_dst")
	}

	dst, err := pg.CreateDB(ctx, "mig_pg_dst")
	if err != nil {
		return nil, err
	}
	if err := execSQL(ctx, dst, "CHECKPOINT"); err != nil {
		return nil, err
	}
	mig, err := newMyMigration(m.tmp, m.logDir, "my_to_pg", m.src.DSN(sbtestDB), "postgres", dst, m.jobs)
	if err != nil {
		return nil, err
	}
	m.logf("mariadb → postgres: migrated (%d workers) ...", m.jobs)
	d, rss, cpu, err := m.migratedTo(ctx, mig)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil && strings.Contains(err.Error(), notBuilt) {
		r.migrated.skipped = notBuilt + " (this migrated binary refuses MySQL → PostgreSQL)"
		m.logf("mariadb → postgres: migrated: %s", r.migrated.skipped)
		return r, nil
	}
	if err == nil {
		err = m.verifyPgCopy(ctx, dst)
	}
	r.migrated, r.migratedRSS, r.migratedCPU = result{d: d, err: err}, rss, cpu
	m.logResult(fmt.Sprintf("mariadb → postgres: migrated (peak RSS %s, CPU %.1f s)", mb(rss), cpu.Seconds()), r.migrated)
	return r, nil
}

// dropPgDB drops a database of the pgloader part's cluster; errors are only logged.
func (m *myBench) dropPgDB(pg *testenv.Postgres, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := execSQL(ctx, pg.DSN("postgres"), fmt.Sprintf(`DROP DATABASE IF EXISTS "%s" WITH (FORCE)`, name)); err != nil {
		m.logf("cleanup: drop database %s: %v", name, err)
	}
}

// runPgloader runs `pgloader --with ... mysql://... postgresql://...` with its log beside the
// results, and returns its time and peak RSS.
func (m *myBench) runPgloader(ctx context.Context, pg *testenv.Postgres) (time.Duration, int64, error) {
	dir, err := os.MkdirTemp(m.tmp, "pgloader-")
	if err != nil {
		return 0, 0, err
	}
	logPath, err := filepath.Abs(filepath.Join(m.logDir, "pgloader.log"))
	if err != nil {
		return 0, 0, err
	}
	os.Remove(logPath)
	src := fmt.Sprintf("mysql://%s@%s/%s", m.src.User(), m.src.Addr(), sbtestDB)
	if pw := m.src.Password(); pw != "" {
		src = fmt.Sprintf("mysql://%s:%s@%s/%s", m.src.User(), pw, m.src.Addr(), sbtestDB)
	}
	dst := fmt.Sprintf("postgresql://postgres@%s:%d/pgloader_dst?sslmode=disable", pg.Host(), pg.Port())
	args := []string{"--root-dir", dir, "--logfile", logPath}
	for _, w := range pgloaderWith {
		args = append(args, "--with", w)
	}
	args = append(args, src, dst)
	cmd := command(ctx, "pgloader", args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	var rss int64
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss * 1024
		}
	}
	os.WriteFile(filepath.Join(m.logDir, "pgloader.out"), []byte(out.String()), 0o644)
	if err != nil {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		return 0, rss, fmt.Errorf("pgloader: %w\n%s", err, tail(out.String(), 15))
	}
	return d, rss, nil
}

// verifyPgCopy checks that every sysbench table arrived in PostgreSQL with the source's row
// count and index count (pgloader puts them in a schema named after the MySQL database).
func (m *myBench) verifyPgCopy(ctx context.Context, dst string) error {
	var problems []string
	for _, t := range m.sbtestTables() {
		n, err := m.src.QueryString(ctx, fmt.Sprintf("SELECT COUNT(*) FROM `%s`.`%s`", sbtestDB, t))
		if err != nil {
			return err
		}
		var want, have, indexes int64
		fmt.Sscan(n, &want)
		if err := queryRow(ctx, dst, fmt.Sprintf(`SELECT count(*) FROM %s.%s`, sbtestDB, t), nil, &have); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		if err := queryRow(ctx, dst, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2`,
			[]any{sbtestDB, t}, &indexes); err != nil {
			return err
		}
		if have != want || indexes != 2 {
			problems = append(problems, fmt.Sprintf("%s: %d rows on the source, %d in PostgreSQL, %d indexes (want 2)", t, want, have, indexes))
		}
	}
	if len(problems) > 0 {
		return errors.New("incomplete copy: " + strings.Join(problems, "; "))
	}
	return nil
}

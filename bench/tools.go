package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgbenchTables are the tables `pgbench -i` creates; every tool must copy all four.
var pgbenchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers"}

// cleanEnv is our environment without PG* variables, so that nothing but the DSNs we pass
// decides where a client tool connects.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// command prepares a client tool run in its own process group: Ctrl-C reaches only the bench,
// which then kills the whole group (pgcopydb forks workers) by cancelling ctx. The child also
// dies if the bench is killed outright.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runTool runs a client tool to completion. Its output is discarded unless it fails, in which
// case the error carries the last lines.
func runTool(ctx context.Context, name string, args ...string) error {
	cmd := command(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w\n%s", name, err, tail(out.String(), 15))
	}
	return nil
}

// dumpRestore runs `pg_dump -Fp [dumpArgs] src | psql -q -v ON_ERROR_STOP=1 dst`.
func dumpRestore(ctx context.Context, src, dst string, dumpArgs ...string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	var dumpErr, psqlErr bytes.Buffer
	dump := command(ctx, "pg_dump", append(append([]string{"-Fp"}, dumpArgs...), src)...)
	dump.Stdout, dump.Stderr = w, &dumpErr
	psql := command(ctx, "psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", dst)
	psql.Stdin, psql.Stdout, psql.Stderr = r, io.Discard, &psqlErr
	if err := dump.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	if err := psql.Start(); err != nil {
		r.Close()
		w.Close()
		dump.Wait()
		return err
	}
	// The children hold their own ends: a dying psql gives pg_dump EPIPE rather than a hang.
	r.Close()
	w.Close()
	e1, e2 := dump.Wait(), psql.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if e1 != nil || e2 != nil {
		return fmt.Errorf("pg_dump: %v, psql: %v\n%s%s", e1, e2, tail(dumpErr.String(), 10), tail(psqlErr.String(), 10))
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// execSQL runs statements, each in its own implicit transaction, on one connection to dsn.
func execSQL(ctx context.Context, dsn string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// queryRow runs one query on dsn and scans its single row into dest.
func queryRow(ctx context.Context, dsn, q string, args []any, dest ...any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, q, args...).Scan(dest...)
}

// initPgbench fills dsn with `pgbench -i -s scale` and gives pgbench_history a primary key,
// which migrated requires of every table (and native replication is indifferent to). The key is
// added while the table is empty, before any tool runs, so every tool copies the same data.
func initPgbench(ctx context.Context, dsn string, scale int) error {
	if err := runTool(ctx, "pgbench", "-i", "-q", "-s", fmt.Sprint(scale), dsn); err != nil {
		return err
	}
	return execSQL(ctx, dsn,
		"ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY",
		"VACUUM ANALYZE", "CHECKPOINT")
}

// verifyCopy checks that dst holds as many rows as src in every pgbench table and the same
// number of indexes: a complete, indexed copy. It is not timed.
func verifyCopy(ctx context.Context, src, dst string) error {
	var problems []string
	for _, t := range pgbenchTables {
		q := "SELECT count(*) FROM " + t
		var a, b int64
		if err := queryRow(ctx, src, q, nil, &a); err != nil {
			return fmt.Errorf("source %s: %w", t, err)
		}
		if err := queryRow(ctx, dst, q, nil, &b); err != nil {
			return fmt.Errorf("target %s: %w", t, err)
		}
		if a != b {
			problems = append(problems, fmt.Sprintf("%s has %d rows on the source, %d on the target", t, a, b))
		}
	}
	q := `SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename LIKE 'pgbench\_%'`
	var a, b int64
	if err := queryRow(ctx, src, q, nil, &a); err != nil {
		return err
	}
	if err := queryRow(ctx, dst, q, nil, &b); err != nil {
		return err
	}
	if a != b {
		problems = append(problems, fmt.Sprintf("%d indexes on the source, %d on the target", a, b))
	}
	if len(problems) > 0 {
		return errors.New("incomplete copy: " + strings.Join(problems, "; "))
	}
	return nil
}

// waitUntil polls cond every 50ms until it holds, ctx ends, or timeout passes. abort, if not
// nil, is checked first on each round and ends the wait with its error (a daemon that died).
func waitUntil(ctx context.Context, what string, timeout time.Duration, abort func() error, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if abort != nil {
			if err := abort(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "migrated-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "migrated")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build migrated:", err)
		os.Exit(1)
	}
	code := m.Run()
	testenv.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one migration under test: a source and a target database and a config.
type env struct {
	t        *testing.T
	name     string
	src, dst string // DSNs
	dir      string
	config   string
	listen   string
}

func newEnv(t *testing.T, name string) *env {
	t.Helper()
	pg := testenv.RequirePostgres(t)
	ctx := context.Background()
	src, err := pg.CreateDB(ctx, name+"_src")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := pg.CreateDB(ctx, name+"_dst")
	if err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, name: name, src: src, dst: dst, dir: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", port)}
	e.writeConfig("")
	t.Cleanup(func() { e.dropSlots() })
	return e
}

func (e *env) writeConfig(extra string) {
	e.config = filepath.Join(e.dir, "migration.yaml")
	cfg := fmt.Sprintf(`name: %s
source:
  engine: postgres
  dsn: %s
target:
  engine: postgres
  dsn: %s
snapshot:
  workers: 3
  split-rows: 4000
apply:
  batch-changes: 2000
stream:
  heartbeat-interval: 200ms
  status-interval: 200ms
  reconnect-max-backoff: 2s
api:
  listen: %s
log:
  level: debug
  format: json
%s`, e.name, e.src, e.dst, e.listen, extra)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// dropSlots removes what a test's migration left on the shared cluster.
func (e *env) dropSlots() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.src)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name LIKE $1 AND active_pid IS NOT NULL`, "migrated_"+e.name+"%")
	time.Sleep(200 * time.Millisecond)
	conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1`, "migrated_"+e.name+"%")
}

// proc is a running `migrated run` process.
type proc struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan error
}

func (e *env) start() *proc {
	e.t.Helper()
	return e.startCmd(exec.Command(binary, "run", "--config", e.config))
}

func (e *env) startCmd(cmd *exec.Cmd) *proc {
	e.t.Helper()
	logFile, err := os.OpenFile(filepath.Join(e.dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	d := &proc{cmd: cmd, log: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout = io.MultiWriter(logFile, d.log)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait(); logFile.Close() }()
	e.t.Cleanup(func() { d.kill() })
	return d
}

func (d *proc) kill() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
		d.done <- nil
	}
}

// stop ends the daemon gracefully and fails if it exited with an error.
func (e *env) stop(d *proc) {
	e.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			e.t.Fatalf("daemon exited with %v; log:\n%s", err, e.logTail())
		}
	case <-time.After(60 * time.Second):
		e.t.Fatalf("daemon did not stop on SIGTERM; log:\n%s", e.logTail())
	}
}

func (e *env) logTail() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "daemon.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// status reads /v1/status; ok is false while the daemon is not answering.
func (e *env) status() (st map[string]any, ok bool) {
	resp, err := http.Get("http://" + e.listen + "/v1/status")
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil, false
	}
	return st, true
}

// waitFor polls cond until it holds, failing after the deadline or when the daemon exits.
func (e *env) waitFor(d *proc, what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if d != nil {
			select {
			case err := <-d.done:
				d.done <- err
				e.t.Fatalf("daemon exited (%v) while waiting for %s; log:\n%s", err, what, e.logTail())
			default:
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; log:\n%s", what, e.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get returns the body of a GET on the daemon's API.
func (e *env) get(path string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.listen + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (e *env) phase() string {
	st, ok := e.status()
	if !ok {
		return ""
	}
	p, _ := st["phase"].(string)
	return p
}

// waitCaughtUp waits until the target's checkpoint passes the source's current WAL position.
func (e *env) waitCaughtUp(d *proc) { e.waitStreamCaughtUp(d, "forward") }

// waitStreamCaughtUp waits until the checkpoint of the named stream, kept on the side it writes
// to, passes the WAL insert position of the side it reads, taken now: every write acknowledged
// there so far has been applied.
func (e *env) waitStreamCaughtUp(d *proc, stream string) {
	e.t.Helper()
	from, to := e.src, e.dst
	if stream == "reverse" {
		from, to = e.dst, e.src
	}
	ctx := context.Background()
	fc := e.connect(from)
	defer fc.Close(ctx)
	var lsn string
	if err := fc.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	tc := e.connect(to)
	defer tc.Close(ctx)
	e.waitFor(d, "the "+stream+" stream to reach position "+lsn, 5*time.Minute, func() bool {
		var reached bool
		err := tc.QueryRow(ctx, `SELECT position::pg_lsn >= $1::pg_lsn FROM _migrated.progress WHERE migration = $2 AND stream = $3`, lsn, e.name, stream).Scan(&reached)
		return err == nil && reached
	})
}

func (e *env) connect(dsn string) *pgx.Conn {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	return conn
}

func (e *env) exec(dsn string, sql string, args ...any) {
	e.t.Helper()
	conn := e.connect(dsn)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i > 0 {
		return s[:i]
	}
	return s
}

// compare checks every user table row by row on both sides, independently of migrated's code:
// each side dumps its rows ordered by the full row text through COPY, and the dumps must match.
func (e *env) compare() {
	e.t.Helper()
	ctx := context.Background()
	src := e.connect(e.src)
	defer src.Close(ctx)
	dst := e.connect(e.dst)
	defer dst.Close(ctx)
	rows, err := src.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  WHERE c.relkind IN ('r','p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog','information_schema','_migrated') AND n.nspname !~ '^pg_' ORDER BY 1`)
	if err != nil {
		e.t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.t.Fatal(err)
	}
	if len(tables) == 0 {
		e.t.Fatal("no tables to compare")
	}
	for _, table := range tables {
		q := fmt.Sprintf("COPY (SELECT t::text FROM %s t ORDER BY 1) TO STDOUT", table)
		var a, b bytes.Buffer
		if _, err := src.PgConn().CopyTo(ctx, &a, q); err != nil {
			e.t.Fatalf("read %s on source: %v", table, err)
		}
		if _, err := dst.PgConn().CopyTo(ctx, &b, q); err != nil {
			e.t.Fatalf("read %s on target: %v", table, err)
		}
		if sha256.Sum256(a.Bytes()) != sha256.Sum256(b.Bytes()) {
			al, bl := strings.Split(a.String(), "\n"), strings.Split(b.String(), "\n")
			for i := 0; i < len(al) || i < len(bl); i++ {
				var x, y string
				if i < len(al) {
					x = al[i]
				}
				if i < len(bl) {
					y = bl[i]
				}
				if x != y {
					e.t.Fatalf("%s differs: source has %d rows, target %d; first difference at row %d:\n source: %.300s\n target: %.300s",
						table, len(al)-1, len(bl)-1, i+1, x, y)
				}
			}
		}
		e.t.Logf("%s: %d rows equal", table, strings.Count(a.String(), "\n"))
	}
}

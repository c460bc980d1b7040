package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/migrated/migrated/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func pgQueryString(t *testing.T, dsn, q string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

func TestPostgres(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	ctx := context.Background()

	if got := pgQueryString(t, pg.DSN("postgres"), "SELECT 1::text"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
	if got := pgQueryString(t, pg.DSN("postgres"), "SHOW wal_level"); got != "logical" {
		t.Fatalf("wal_level = %q, want logical", got)
	}
	if !pg.External() {
		want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?sslmode=disable", pg.Port())
		if got := pg.DSN("x"); got != want {
			t.Fatalf("DSN = %q, want %q", got, want)
		}
		for setting, want := range map[string]string{
			"max_replication_slots": "20", "max_wal_senders": "20", "fsync": "off",
			"synchronous_commit": "off", "full_page_writes": "off", "shared_buffers": "128MB",
		} {
			if got := pgQueryString(t, pg.DSN("postgres"), "SHOW "+setting); got != want {
				t.Errorf("%s = %q, want %q", setting, got, want)
			}
		}
	}

	dsn, err := pg.CreateDB(ctx, "testenv_db")
	if err != nil {
		t.Fatal(err)
	}
	if got := pgQueryString(t, dsn, "SELECT current_database()"); got != "testenv_db" {
		t.Fatalf("current_database() = %q", got)
	}
	// A table, an open connection and a logical replication slot must not prevent re-creation.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot('testenv_slot', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.CreateDB(ctx, "testenv_db"); err != nil {
		t.Fatalf("re-create: %v", err)
	}
	if got := pgQueryString(t, dsn, "SELECT count(*)::text FROM pg_tables WHERE tablename = 't'"); got != "0" {
		t.Fatalf("re-created database still has table t")
	}

	// Replication connections are allowed.
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	rc, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("replication connection: %v", err)
	}
	rc.Close(ctx)
}

func TestPostgresSettingsAndParallel(t *testing.T) {
	testenv.SkipIfShort(t)
	if os.Getenv(testenv.PostgresURLEnv) != "" {
		t.Skip(testenv.PostgresURLEnv + " is set: cannot start own clusters")
	}
	var (
		wg   sync.WaitGroup
		pgs  [2]*testenv.Postgres
		errs [2]error
	)
	for i := range pgs {
		wg.Go(func() {
			pgs[i], errs[i] = testenv.StartPostgres(testenv.PostgresOptions{
				Settings: map[string]string{"wal_level": "replica", "application_name": fmt.Sprintf("it's %d", i)},
			})
		})
	}
	wg.Wait()
	for i := range pgs {
		if errs[i] != nil {
			testenv.SkipOrFail(t, errs[i])
		}
		defer pgs[i].Stop()
	}
	if pgs[0].Port() == pgs[1].Port() {
		t.Fatalf("both clusters on port %d", pgs[0].Port())
	}
	for i, pg := range pgs {
		if got := pgQueryString(t, pg.DSN("postgres"), "SHOW wal_level"); got != "replica" {
			t.Errorf("wal_level = %q, want replica", got)
		}
		if got := pgQueryString(t, pg.DSN("postgres"), "SHOW application_name"); got != fmt.Sprintf("it's %d", i) {
			t.Errorf("application_name = %q", got)
		}
		dir := pg.Dir()
		if _, err := os.Stat(filepath.Join(dir, "server.pid")); err != nil {
			t.Errorf("no server.pid: %v", err)
		}
		if err := pg.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := pg.Stop(); err != nil { // idempotent
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temp dir %s still exists after Stop: %v", dir, err)
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pg.Port()), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still accepts connections after Stop", pg.Port())
		}
	}
}

func TestPostgresStartupFailureShowsLog(t *testing.T) {
	testenv.SkipIfShort(t)
	if os.Getenv(testenv.PostgresURLEnv) != "" {
		t.Skip(testenv.PostgresURLEnv + " is set")
	}
	pg, err := testenv.StartPostgres(testenv.PostgresOptions{Settings: map[string]string{"no_such_setting": "1"}})
	if err == nil {
		pg.Stop()
		t.Fatal("expected an error")
	}
	if errors.Is(err, testenv.ErrNotInstalled) {
		testenv.SkipOrFail(t, err)
	}
	if !strings.Contains(err.Error(), "no_such_setting") {
		t.Fatalf("error does not include the server log:\n%v", err)
	}
	t.Logf("startup error as expected:\n%v", err)
}

func TestMariaDB(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()

	for q, want := range map[string]string{
		"SELECT 1":               "1",
		"SELECT @@binlog_format": "ROW",
		"SELECT @@log_bin":       "1",
	} {
		got, err := m.QueryString(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", q, got, want)
		}
	}
	if !m.External() {
		if want := fmt.Sprintf("mysql://root@127.0.0.1:%d/x", m.Port()); m.DSN("x") != want {
			t.Errorf("DSN = %q, want %q", m.DSN("x"), want)
		}
		if m.Addr() != fmt.Sprintf("127.0.0.1:%d", m.Port()) || m.User() != "root" || m.Password() != "" {
			t.Errorf("Addr/User/Password = %q %q %q", m.Addr(), m.User(), m.Password())
		}
		for q, want := range map[string]string{
			"SELECT @@binlog_row_image":               "FULL",
			"SELECT @@gtid_strict_mode":               "1",
			"SELECT @@innodb_flush_log_at_trx_commit": "2",
			"SELECT @@server_id":                      fmt.Sprint(m.ServerID()),
			"SELECT @@character_set_server":           "utf8mb4",
		} {
			if got, err := m.QueryString(ctx, q); err != nil || got != want {
				t.Errorf("%s = %q, %v; want %q", q, got, err, want)
			}
		}
	}

	if err := m.CreateDB(ctx, "testenv_db"); err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(ctx, "CREATE TABLE testenv_db.t (id INT PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(ctx, "INSERT INTO testenv_db.t VALUES (1, NULL), (2, 'x')"); err != nil {
		t.Fatal(err)
	}
	if got, err := m.QueryString(ctx, "SELECT COUNT(*) FROM testenv_db.t"); err != nil || got != "2" {
		t.Fatalf("count = %q, %v", got, err)
	}
	// Grants work (grant tables are enabled).
	if err := m.Exec(ctx, "CREATE OR REPLACE USER 'testenv'@'127.0.0.1' IDENTIFIED BY 's3cret'"); err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(ctx, "GRANT SELECT ON testenv_db.* TO 'testenv'@'127.0.0.1'"); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateDB(ctx, "testenv_db"); err != nil { // drop and re-create
		t.Fatal(err)
	}
	if got, err := m.QueryString(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'testenv_db'"); err != nil || got != "0" {
		t.Fatalf("tables after re-create = %q, %v", got, err)
	}
	if _, err := m.QueryString(ctx, "SELECT * FROM no_such_db.t"); err == nil || !strings.Contains(err.Error(), "1146") {
		t.Fatalf("expected error 1146, got %v", err)
	}
}

func TestMariaDBSettingsAndStop(t *testing.T) {
	testenv.SkipIfShort(t)
	if os.Getenv(testenv.MariaDBURLEnv) != "" {
		t.Skip(testenv.MariaDBURLEnv + " is set: cannot start own servers")
	}
	m, err := testenv.StartMariaDB(testenv.MariaDBOptions{Settings: map[string]string{"binlog_row_image": "MINIMAL"}})
	if err != nil {
		testenv.SkipOrFail(t, err)
	}
	defer m.Stop()
	ctx := context.Background()
	if got, err := m.QueryString(ctx, "SELECT @@binlog_row_image"); err != nil || got != "MINIMAL" {
		t.Fatalf("binlog_row_image = %q, %v", got, err)
	}
	if shared := testenv.RequireMariaDB(t); shared.ServerID() == m.ServerID() {
		t.Fatalf("two servers with server_id %d", m.ServerID())
	}
	dir := m.Dir()
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still exists after Stop: %v", dir, err)
	}
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
	}
}

package testenv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresOptions configures StartPostgres.
type PostgresOptions struct {
	// Settings are extra or overriding postgresql.conf settings, e.g. {"wal_level": "replica"}
	// for preflight tests. They cannot be applied to an external server (ErrExternalSettings).
	Settings map[string]string
}

// Postgres is a throwaway PostgreSQL cluster (or an existing server named by
// MIGRATED_TEST_PG_URL).
type Postgres struct {
	external *url.URL // non-nil when using MIGRATED_TEST_PG_URL
	host     string
	port     int
	dir      string // temp dir: data/, postgres.log, socket, server.pid
	srv      *server

	stopOnce sync.Once
	stopErr  error
}

// defaultPostgresSettings are appended to postgresql.conf before PostgresOptions.Settings.
var defaultPostgresSettings = map[string]string{
	"wal_level":             "logical",
	"max_replication_slots": "20",
	"max_wal_senders":       "20",
	"fsync":                 "off",
	"synchronous_commit":    "off",
	"full_page_writes":      "off",
	"shared_buffers":        "128MB",
	"max_connections":       "200",
	"listen_addresses":      "127.0.0.1",
	"log_line_prefix":       "%m [%p] %q%u@%d ",
}

// StartPostgres starts a new PostgreSQL cluster: initdb (as the postgres OS user when running
// as root) into a fresh temp dir, superuser "postgres", trust authentication for local, host
// and replication connections, logical WAL, listening on a free 127.0.0.1 port and on a
// Unix socket in the temp dir. It waits up to 60s for the server to accept connections; on
// failure the error includes the end of the server log. The binaries are taken from
// $MIGRATED_TEST_PG_BINDIR, else from initdb in $PATH, else from the newest
// /usr/lib/postgresql/*/bin.
//
// If MIGRATED_TEST_PG_URL is set, no cluster is started: the returned Postgres refers to that
// server (which must be reachable), and Stop does nothing.
func StartPostgres(opts PostgresOptions) (*Postgres, error) {
	if env := os.Getenv(PostgresURLEnv); env != "" {
		return externalPostgres(env, opts)
	}
	bindir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	if bindir == "" {
		return nil, fmt.Errorf("%w: initdb/postgres not found in $MIGRATED_TEST_PG_BINDIR, $PATH or /usr/lib/postgresql/*/bin", ErrNotInstalled)
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := newTempDir("pg")
	if err != nil {
		return nil, err
	}
	p := &Postgres{host: "127.0.0.1", dir: dir}
	if err := p.start(bindir, cred, opts); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (p *Postgres) start(bindir string, cred *syscall.Credential, opts PostgresOptions) error {
	data := filepath.Join(p.dir, "data")
	logPath := filepath.Join(p.dir, "postgres.log")
	if cred != nil {
		if err := os.Chown(p.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("testenv: chown %s: %w", p.dir, err)
		}
	}

	initdb := exec.Command(filepath.Join(bindir, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Env = postgresEnv()
	initdb.Dir = p.dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.WriteFile(filepath.Join(p.dir, "initdb.log"), out, 0o644)
		return fmt.Errorf("testenv: initdb: %w\n%s", err, tailString(string(out), logTailLines))
	}

	hba := "" +
		"local all         all                trust\n" +
		"host  all         all  127.0.0.1/32  trust\n" +
		"host  all         all  ::1/128       trust\n" +
		"local replication all                trust\n" +
		"host  replication all  127.0.0.1/32  trust\n" +
		"host  replication all  ::1/128       trust\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("testenv: write pg_hba.conf: %w", err)
	}

	settings := maps.Clone(defaultPostgresSettings)
	settings["unix_socket_directories"] = p.dir
	maps.Copy(settings, opts.Settings)
	var conf strings.Builder
	conf.WriteString("\n# migrated testenv\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&conf, "%s = %s\n", k, pgQuote(settings[k]))
	}
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf.String()); err != nil {
		return err
	}

	var lastErr error
	for attempt := 0; attempt < bindAttempts; attempt++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		// A later "port" line overrides earlier ones.
		if err := appendFile(filepath.Join(data, "postgresql.conf"), fmt.Sprintf("port = %d\n", port)); err != nil {
			return err
		}
		p.port = port
		logOff := fileSize(logPath)
		cmd := exec.Command(filepath.Join(bindir, "postgres"), "-D", data)
		cmd.Env = postgresEnv()
		cmd.Dir = p.dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		// SIGQUIT = immediate shutdown, also if the test process dies.
		srv, err := startServer(cmd, logPath, syscall.SIGQUIT)
		if err != nil {
			return err
		}
		p.srv = srv
		os.WriteFile(filepath.Join(p.dir, serverFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)

		lastErr = p.waitReady(startTimeout)
		if lastErr == nil {
			return nil
		}
		srv.stop(syscall.SIGQUIT)
		if !strings.Contains(logSince(logPath, logOff), "Address already in use") {
			break
		}
	}
	return fmt.Errorf("testenv: postgres did not start in %s: %w\n--- last %d lines of %s ---\n%s",
		p.dir, lastErr, logTailLines, logPath, logTail(logPath, logTailLines))
}

func (p *Postgres) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if p.srv.exited() {
			return fmt.Errorf("postgres exited: %v", p.srv.err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = p.ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s: %v", timeout, err)
}

func (p *Postgres) ping(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

func externalPostgres(raw string, opts PostgresOptions) (*Postgres, error) {
	if len(opts.Settings) > 0 {
		return nil, fmt.Errorf("%w: %s is set, settings %v requested", ErrExternalSettings, PostgresURLEnv, opts.Settings)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("testenv: %s=%q is not a postgres:// URL", PostgresURLEnv, raw)
	}
	p := &Postgres{external: u, host: u.Hostname(), port: 5432}
	if p.host == "" {
		p.host = "127.0.0.1"
	}
	if s := u.Port(); s != "" {
		if p.port, err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("testenv: %s: bad port %q", PostgresURLEnv, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.ping(ctx); err != nil {
		return nil, fmt.Errorf("testenv: %s: %w", PostgresURLEnv, err)
	}
	return p, nil
}

// DSN returns a URL for database db, e.g. "postgres://postgres@127.0.0.1:PORT/db?sslmode=disable".
// For an external server it is MIGRATED_TEST_PG_URL with the database replaced.
func (p *Postgres) DSN(db string) string {
	if p.external != nil {
		u := *p.external
		u.Path = "/" + db
		u.RawPath = ""
		return u.String()
	}
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", p.host, p.port, url.PathEscape(db))
}

// Host returns the server's host ("127.0.0.1" unless external).
func (p *Postgres) Host() string { return p.host }

// Port returns the server's TCP port.
func (p *Postgres) Port() int { return p.port }

// Dir returns the temp dir holding data/, postgres.log and the Unix socket ("" if external).
func (p *Postgres) Dir() string { return p.dir }

// External reports whether p is a server named by MIGRATED_TEST_PG_URL.
func (p *Postgres) External() bool { return p.external != nil }

// CreateDB creates a fresh, empty database, dropping any existing one of that name first
// (together with its connections and replication slots), and returns its DSN.
func (p *Postgres) CreateDB(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("testenv: create database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	// Replication slots keep a database from being dropped; terminate their walsenders first.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE database = $1 AND active_pid IS NOT NULL`, name); err != nil {
		return "", fmt.Errorf("testenv: create database %q: %w", name, err)
	}
	for i := 0; ; i++ {
		_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond) // a terminated walsender may not have released it yet
	}
	if err != nil {
		return "", fmt.Errorf("testenv: create database %q: drop replication slots: %w", name, err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("testenv: drop database %q: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", fmt.Errorf("testenv: create database %q: %w", name, err)
	}
	return p.DSN(name), nil
}

// Stop shuts the cluster down (immediate mode) and removes its temp dir. It is idempotent and
// does nothing for an external server.
func (p *Postgres) Stop() error {
	if p == nil || p.external != nil {
		return nil
	}
	p.stopOnce.Do(func() {
		if p.srv != nil {
			p.srv.stop(syscall.SIGQUIT)
		}
		if p.dir != "" {
			p.stopErr = os.RemoveAll(p.dir)
		}
	})
	return p.stopErr
}

// postgresBinDir finds a directory with initdb and postgres: $MIGRATED_TEST_PG_BINDIR, $PATH
// or the newest /usr/lib/postgresql/*/bin (Debian).
func postgresBinDir() (string, error) {
	ok := func(dir string) bool {
		for _, n := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("MIGRATED_TEST_PG_BINDIR"); d != "" {
		if !ok(d) {
			return "", fmt.Errorf("testenv: MIGRATED_TEST_PG_BINDIR=%s has no initdb and postgres", d)
		}
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		// Resolve symlinks (e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb) so
		// that initdb and postgres come from the same installation.
		if r, err := filepath.EvalSymlinks(p); err == nil && ok(filepath.Dir(r)) {
			return filepath.Dir(r), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	return "", nil
}

func pgMajor(bindir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return n
}

// postgresCredential returns the OS user to run initdb/postgres as: the "postgres" user when
// we are root (PostgreSQL refuses to run as root), else nil (ourselves).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testenv: running as root and there is no \"postgres\" OS user to run PostgreSQL as: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("testenv: postgres user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// postgresEnv is our environment without PG* variables (PGDATA, PGPORT, ... must not leak in)
// and with a C locale.
func postgresEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// pgQuote quotes a postgresql.conf value.
func pgQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return fmt.Errorf("testenv: %w", err)
	}
	return f.Close()
}

// errorSummary returns the lines of s that mention an error (mariadb-install-db prints them
// first and then a long generic help text), followed by the last n lines.
func errorSummary(s string, n int) string {
	var errs []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToLower(l), "error") || strings.Contains(l, "[Warning]") {
			errs = append(errs, l)
		}
	}
	if len(errs) > n {
		errs = errs[:n]
	}
	if len(errs) == 0 {
		return tailString(s, n)
	}
	return strings.Join(errs, "\n") + "\n--- last lines ---\n" + tailString(s, n)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

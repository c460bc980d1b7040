package testenv

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MariaDBOptions configures StartMariaDB.
type MariaDBOptions struct {
	// Settings become extra mariadbd flags --key=value (a key may be written with "_" or
	// "-"; an empty value gives a bare --key). They override the defaults of the same name.
	// They cannot be applied to an external server (ErrExternalSettings).
	Settings map[string]string
}

// MariaDB is a throwaway MariaDB server (or an existing server named by
// MIGRATED_TEST_MARIADB_URL).
type MariaDB struct {
	external bool
	host     string
	port     int
	user     string
	password string
	serverID uint32
	dir      string // temp dir: data/, mariadbd.log, install.log, socket, server.pid
	srv      *server

	stopOnce sync.Once
	stopErr  error
}

// StartMariaDB creates a fresh data directory with mariadb-install-db (root@127.0.0.1 with an
// empty password, grant tables enabled) and starts mariadbd on a free 127.0.0.1 port with a
// row-based binary log (ROW, FULL row image), a random unique server_id, gtid_strict_mode,
// innodb_flush_log_at_trx_commit=2, skip-name-resolve and utf8mb4 as the server charset. It
// waits up to 60s for the server to accept connections; on failure the error includes the end
// of the server log. When running as root, mariadbd runs with --user=root.
//
// If MIGRATED_TEST_MARIADB_URL is set (mysql://user:pw@host:port/), no server is started: the
// returned MariaDB refers to that server, and Stop does nothing.
func StartMariaDB(opts MariaDBOptions) (*MariaDB, error) {
	if env := os.Getenv(MariaDBURLEnv); env != "" {
		return externalMariaDB(env, opts)
	}
	sbinDirs := []string{"/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/mysql/bin"}
	mariadbd := lookBin(sbinDirs, "mariadbd", "mysqld")
	installDB := lookBin([]string{"/usr/bin", "/usr/local/bin", "/usr/local/mysql/scripts", "/usr/local/mysql/bin"},
		"mariadb-install-db", "mysql_install_db")
	if mariadbd == "" || installDB == "" {
		return nil, fmt.Errorf("%w: mariadbd and mariadb-install-db not found in $PATH or the usual sbin directories", ErrNotInstalled)
	}
	dir, err := newTempDir("mariadb")
	if err != nil {
		return nil, err
	}
	m := &MariaDB{host: "127.0.0.1", user: "root", dir: dir, serverID: newServerID()}
	if err := m.start(mariadbd, installDB, opts); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *MariaDB) start(mariadbd, installDB string, opts MariaDBOptions) error {
	data := filepath.Join(m.dir, "data")
	tmp := filepath.Join(m.dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	asRoot := os.Geteuid() == 0

	// --no-defaults must come first: /etc/mysql/my.cnf would point us at the system server's
	// socket, datadir and so on.
	// A private --tmpdir matters: concurrent bootstraps sharing /tmp collide on their
	// temporary table files ("Unknown table 'mysql.tmp_user_sys'").
	installArgs := []string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}
	if asRoot {
		installArgs = append(installArgs, "--user=root")
	}
	install := exec.Command(installDB, installArgs...)
	install.Dir = m.dir
	if out, err := install.CombinedOutput(); err != nil {
		os.WriteFile(filepath.Join(m.dir, "install.log"), out, 0o644)
		return fmt.Errorf("testenv: %s: %w\n%s", filepath.Base(installDB), err, errorSummary(string(out), logTailLines))
	}

	flags := map[string]string{
		"datadir":                        data,
		"tmpdir":                         tmp,
		"bind-address":                   "127.0.0.1",
		"socket":                         filepath.Join(m.dir, "mysqld.sock"),
		"pid-file":                       filepath.Join(m.dir, "mariadbd.pid"),
		"log-bin":                        "mysql-bin",
		"binlog-format":                  "ROW",
		"binlog-row-image":               "FULL",
		"server-id":                      strconv.FormatUint(uint64(m.serverID), 10),
		"gtid-strict-mode":               "ON",
		"innodb-flush-log-at-trx-commit": "2",
		"sync-binlog":                    "0",
		"skip-name-resolve":              "",
		"character-set-server":           "utf8mb4",
		"collation-server":               "utf8mb4_general_ci",
		"max-connections":                "300",
	}
	if asRoot {
		flags["user"] = "root"
	}
	for k, v := range opts.Settings {
		flags[strings.ReplaceAll(strings.TrimLeft(k, "-"), "_", "-")] = v
	}

	logPath := filepath.Join(m.dir, "mariadbd.log")
	var lastErr error
	for attempt := 0; attempt < bindAttempts; attempt++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		m.port = port
		flags["port"] = strconv.Itoa(port)
		args := []string{"--no-defaults"}
		for _, k := range slices.Sorted(maps.Keys(flags)) {
			if flags[k] == "" {
				args = append(args, "--"+k)
			} else {
				args = append(args, "--"+k+"="+flags[k])
			}
		}
		logOff := fileSize(logPath)
		cmd := exec.Command(mariadbd, args...)
		cmd.Dir = m.dir
		srv, err := startServer(cmd, logPath, syscall.SIGKILL)
		if err != nil {
			return err
		}
		m.srv = srv
		os.WriteFile(filepath.Join(m.dir, serverFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)

		lastErr = m.waitReady(startTimeout)
		if lastErr == nil {
			return nil
		}
		srv.stop(syscall.SIGKILL)
		if !strings.Contains(logSince(logPath, logOff), "Address already in use") {
			break
		}
	}
	return fmt.Errorf("testenv: mariadbd did not start in %s: %w\n--- last %d lines of %s ---\n%s",
		m.dir, lastErr, logTailLines, logPath, logTail(logPath, logTailLines))
}

func (m *MariaDB) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if m.srv.exited() {
			return fmt.Errorf("mariadbd exited: %v", m.srv.err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = m.QueryString(ctx, "SELECT 1")
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s: %v", timeout, err)
}

var (
	serverIDsMu sync.Mutex
	serverIDs   = map[uint32]bool{}
)

// newServerID returns a random server_id not used before in this process.
func newServerID() uint32 {
	serverIDsMu.Lock()
	defer serverIDsMu.Unlock()
	for {
		id := 1000 + rand.Uint32N(1<<31)
		if !serverIDs[id] {
			serverIDs[id] = true
			return id
		}
	}
}

func externalMariaDB(raw string, opts MariaDBOptions) (*MariaDB, error) {
	if len(opts.Settings) > 0 {
		return nil, fmt.Errorf("%w: %s is set, settings %v requested", ErrExternalSettings, MariaDBURLEnv, opts.Settings)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "mysql" && u.Scheme != "mariadb") || u.User == nil {
		return nil, fmt.Errorf("testenv: %s is not a mysql://user:password@host:port/ URL", MariaDBURLEnv)
	}
	m := &MariaDB{external: true, host: u.Hostname(), port: 3306, user: u.User.Username()}
	m.password, _ = u.User.Password()
	if m.host == "" {
		m.host = "127.0.0.1"
	}
	if s := u.Port(); s != "" {
		if m.port, err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("testenv: %s: bad port %q", MariaDBURLEnv, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.QueryString(ctx, "SELECT 1"); err != nil {
		return nil, fmt.Errorf("testenv: %s: %w", MariaDBURLEnv, err)
	}
	if id, err := m.QueryString(ctx, "SELECT @@server_id"); err == nil {
		n, _ := strconv.ParseUint(id, 10, 32)
		m.serverID = uint32(n)
	}
	return m, nil
}

// DSN returns a URL for database db: "mysql://root@127.0.0.1:PORT/db" (with the password, if
// any, for an external server).
func (m *MariaDB) DSN(db string) string {
	u := url.URL{Scheme: "mysql", Host: m.Addr(), Path: "/" + db}
	if m.password != "" {
		u.User = url.UserPassword(m.user, m.password)
	} else {
		u.User = url.User(m.user)
	}
	return u.String()
}

// Addr returns "host:port".
func (m *MariaDB) Addr() string { return net.JoinHostPort(m.host, strconv.Itoa(m.port)) }

// Host returns the server's host ("127.0.0.1" unless external).
func (m *MariaDB) Host() string { return m.host }

// Port returns the server's TCP port.
func (m *MariaDB) Port() int { return m.port }

// User returns the (super)user name, "root" unless external.
func (m *MariaDB) User() string { return m.user }

// Password returns the user's password, "" unless external.
func (m *MariaDB) Password() string { return m.password }

// ServerID returns the server's server_id. Replication clients must use a different one.
func (m *MariaDB) ServerID() uint32 { return m.serverID }

// PID returns the server process's id, or 0 for an external server.
func (m *MariaDB) PID() int {
	if m.srv == nil || m.srv.cmd.Process == nil {
		return 0
	}
	return m.srv.cmd.Process.Pid
}

// Dir returns the temp dir holding data/, mariadbd.log and the Unix socket ("" if external).
func (m *MariaDB) Dir() string { return m.dir }

// External reports whether m is a server named by MIGRATED_TEST_MARIADB_URL.
func (m *MariaDB) External() bool { return m.external }

// CreateDB creates a fresh, empty database, dropping any existing one of that name first.
func (m *MariaDB) CreateDB(ctx context.Context, name string) error {
	c, err := dialMySQL(ctx, m.Addr(), m.user, m.password, "")
	if err != nil {
		return fmt.Errorf("testenv: create database %q: %w", name, err)
	}
	defer c.close()
	ident := "`" + strings.ReplaceAll(name, "`", "``") + "`"
	for _, q := range []string{"DROP DATABASE IF EXISTS " + ident, "CREATE DATABASE " + ident} {
		if _, err := c.query(q); err != nil {
			return fmt.Errorf("testenv: create database %q: %w", name, err)
		}
	}
	return nil
}

// Exec runs one SQL statement as the superuser, outside any database (qualify table names).
// It is a convenience for fixtures; the code under test should use its own client.
func (m *MariaDB) Exec(ctx context.Context, query string) error {
	c, err := dialMySQL(ctx, m.Addr(), m.user, m.password, "")
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	defer c.close()
	if _, err := c.query(query); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}

// QueryString runs a query as the superuser and returns the first column of the first row
// ("" for NULL; an error if there is no row).
func (m *MariaDB) QueryString(ctx context.Context, query string) (string, error) {
	c, err := dialMySQL(ctx, m.Addr(), m.user, m.password, "")
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	defer c.close()
	rows, err := c.query(query)
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	if len(rows) == 0 || len(rows[0]) == 0 {
		return "", fmt.Errorf("testenv: %q returned no rows", query)
	}
	if rows[0][0] == nil {
		return "", nil
	}
	return *rows[0][0], nil
}

// Stop kills the server and removes its temp dir. It is idempotent and does nothing for an
// external server.
func (m *MariaDB) Stop() error {
	if m == nil || m.external {
		return nil
	}
	m.stopOnce.Do(func() {
		if m.srv != nil {
			m.srv.stop(syscall.SIGKILL) // the data is thrown away: no need for a clean shutdown
		}
		if m.dir != "" {
			m.stopErr = os.RemoveAll(m.dir)
		}
	})
	return m.stopErr
}

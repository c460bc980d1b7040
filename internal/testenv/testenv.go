// Package testenv starts throwaway PostgreSQL and MariaDB servers for integration tests.
//
// Every server lives in its own temporary directory under os.TempDir() named
// "migrated-test-*", listens only on a free 127.0.0.1 port and on a Unix socket inside that
// directory, and is deleted (process and directory) by Stop. The usual pattern is one server
// of each kind per test package, started lazily:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		pg := testenv.RequirePostgres(t)
//		dsn, err := pg.CreateDB(ctx, "something")
//		...
//	}
//
// MIGRATED_TEST_PG_URL and MIGRATED_TEST_MARIADB_URL name existing servers to use instead
// of starting new ones (see StartPostgres and StartMariaDB).
//
// If the test binary is killed (go test -timeout, SIGKILL), the servers die with it
// (they are started with a parent-death signal) and the next start in any test process sweeps
// the directories that dead processes left behind.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// PostgresURLEnv names an existing PostgreSQL server (superuser URL, wal_level=logical)
	// to use instead of starting a cluster.
	PostgresURLEnv = "MIGRATED_TEST_PG_URL"
	// MariaDBURLEnv names an existing MariaDB server (mysql://root:pw@127.0.0.1:3306/) to use
	// instead of starting one.
	MariaDBURLEnv = "MIGRATED_TEST_MARIADB_URL"

	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
	tempPrefix   = "migrated-test-"
	ownerFile    = "owner.pid"  // PID of the test process that owns the directory
	serverFile   = "server.pid" // PID of the server process
	logTailLines = 30
	bindAttempts = 5
)

var (
	// ErrNotInstalled is returned (wrapped) by StartPostgres/StartMariaDB when the server
	// binaries are missing and no env override is set. RequirePostgres/RequireMariaDB turn it
	// into a skip, except when CI=true.
	ErrNotInstalled = errors.New("testenv: server binaries not installed")
	// ErrExternalSettings is returned (wrapped) when Settings are requested but the server is an
	// existing one named by env, whose configuration this package cannot change.
	ErrExternalSettings = errors.New("testenv: settings cannot be applied to an external server")
)

// FreePort returns a TCP port on 127.0.0.1 that is free right now and has not been
// returned before by this process. Another process can still take it before it is used; the
// Start functions retry with a new port when the server fails to bind.
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testenv: find free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port, nil
		}
	}
	return 0, errors.New("testenv: find free port: no unused port after 100 tries")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// Main is a TestMain body: it runs the tests, stops the shared servers and exits.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// RequirePostgres returns the process-wide shared PostgreSQL server. It skips the test with
// -short (make test-short runs unit tests only), and when PostgreSQL is not installed and no
// env override is set, unless CI=true, where it fails.
func RequirePostgres(t testing.TB) *Postgres {
	t.Helper()
	SkipIfShort(t)
	p, err := SharedPostgres()
	if err != nil {
		skipOrFail(t, err, "PostgreSQL", PostgresURLEnv)
	}
	return p
}

// RequireMariaDB returns the process-wide shared MariaDB server, skipping like
// RequirePostgres.
func RequireMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	SkipIfShort(t)
	m, err := SharedMariaDB()
	if err != nil {
		skipOrFail(t, err, "MariaDB", MariaDBURLEnv)
	}
	return m
}

// SkipIfShort skips an integration test under -short.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping integration test in -short mode")
	}
}

// SkipOrFail reports a Start error: a skip if it is ErrNotInstalled and CI is not "true",
// otherwise a fatal error.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v (install the server or set %s/%s; with CI=true this fails)",
			err, PostgresURLEnv, MariaDBURLEnv)
	}
	t.Fatalf("starting server: %v", err)
}

func skipOrFail(t testing.TB, err error, what, env string) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %s is not installed and %s is not set (%v); with CI=true this fails", what, env, err)
	}
	t.Fatalf("starting %s: %v", what, err)
}

// StopShared stops the shared PostgreSQL and MariaDB servers, if they were started. Call it
// from TestMain after m.Run() (Main does).
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedPG != nil {
		sharedPG.Stop()
	}
	if sharedMDB != nil {
		sharedMDB.Stop()
	}
	sharedPG, sharedPGErr, sharedPGDone = nil, nil, false
	sharedMDB, sharedMDBErr, sharedMDBDone = nil, nil, false
}

var (
	sharedMu      sync.Mutex
	sharedPG      *Postgres
	sharedPGErr   error
	sharedPGDone  bool
	sharedMDB     *MariaDB
	sharedMDBErr  error
	sharedMDBDone bool
)

// SharedPostgres starts (once per process) and returns a PostgreSQL server with default
// options. A failed start is remembered and returned to every caller.
func SharedPostgres() (*Postgres, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if !sharedPGDone {
		sharedPG, sharedPGErr = StartPostgres(PostgresOptions{})
		sharedPGDone = true
	}
	return sharedPG, sharedPGErr
}

// SharedMariaDB starts (once per process) and returns a MariaDB server with default options.
func SharedMariaDB() (*MariaDB, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if !sharedMDBDone {
		sharedMDB, sharedMDBErr = StartMariaDB(MariaDBOptions{})
		sharedMDBDone = true
	}
	return sharedMDB, sharedMDBErr
}

// newTempDir creates a "migrated-test-<kind>-*" directory under os.TempDir() and records the
// owning process in it, after sweeping what dead test processes left behind.
func newTempDir(kind string) (string, error) {
	sweepOnce.Do(sweepStale)
	dir, err := os.MkdirTemp("", tempPrefix+kind+"-")
	if err != nil {
		return "", fmt.Errorf("testenv: create temp dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("testenv: %w", err)
	}
	return dir, nil
}

var sweepOnce sync.Once

// sweepStale removes migrated-test-* directories whose owning test process is gone, killing
// the server recorded in them if it still runs from that directory.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		owner, err := readPID(filepath.Join(dir, ownerFile))
		if err != nil {
			// No owner yet: possibly being created right now. Only sweep old ones.
			if fi, err := os.Stat(dir); err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		} else if processAlive(owner) {
			continue
		}
		if pid, err := readPID(filepath.Join(dir, serverFile)); err == nil && processAlive(pid) {
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil &&
				bytes.Contains(cmdline, []byte(dir)) {
				syscall.Kill(pid, syscall.SIGQUIT) // PostgreSQL: immediate shutdown
				time.Sleep(200 * time.Millisecond)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(dir)
	}
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// logTail returns the last n lines of a file, for error messages.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the content of path from offset on.
func logSince(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

// server is a running child process whose exit is observed by a goroutine.
type server struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done is closed
}

// startServer starts cmd with its output appended to logPath, in its own process group, with
// deathSig delivered to it if the test process dies.
func startServer(cmd *exec.Cmd, logPath string, deathSig syscall.Signal) (*server, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testenv: open log: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = deathSig
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start %s: %w", cmd.Path, err)
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to stopTimeout and then kills the process group.
func (s *server) stop(sig syscall.Signal) {
	if s.exited() {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// lookBin finds the first of names in PATH or in dirs.
func lookBin(dirs []string, names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}

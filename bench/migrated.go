package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/migrated/migrated/internal/testenv"
)

// migration is one `migrated run` configuration: a name, a source and a target.
type migration struct {
	name     string
	src, dst string
	workers  int
	config   string // path of the YAML file
	logPath  string // daemon output, appended to by every start
	listen   string
}

// newMigration writes the config file for a PostgreSQL → PostgreSQL migration into dir.
func newMigration(dir, logDir, name, src, dst string, workers int) (*migration, error) {
	return newEngineMigration(dir, logDir, name, "postgres", src, "postgres", dst, workers)
}

// applyWorkers overrides migrated's apply.workers in every migration the bench runs.
var applyWorkers = flag.Int("apply-workers", 0, "migrated's apply.workers (0: migrated's default)")

// newEngineMigration writes the config file for a migration between the given engines into dir,
// in the format the cmd/migrated test harness uses; everything not named here keeps migrated's
// defaults.
func newEngineMigration(dir, logDir, name, srcEngine, src, dstEngine, dst string, workers int) (*migration, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	m := &migration{name: name, src: src, dst: dst, workers: workers,
		config:  filepath.Join(dir, name+".yaml"),
		logPath: filepath.Join(logDir, "migrated-"+name+".log"),
		listen:  fmt.Sprintf("127.0.0.1:%d", port)}
	cfg := fmt.Sprintf(`name: %s
source:
  engine: %s
  dsn: %s
target:
  engine: %s
  dsn: %s
snapshot:
  workers: %d
api:
  listen: %s
log:
  level: info
  format: json
`, name, srcEngine, src, dstEngine, dst, workers, m.listen)
	if *applyWorkers > 0 {
		cfg += fmt.Sprintf("apply:\n  workers: %d\n", *applyWorkers)
	}
	os.Remove(m.logPath)
	return m, os.WriteFile(m.config, []byte(cfg), 0o600)
}

// daemon is a running `migrated run` process.
type daemon struct {
	m     *migration
	cmd   *exec.Cmd
	start time.Time
	done  chan struct{} // closed when the process has exited
	err   error         // its exit error, valid after done
	cpu   time.Duration // user + system CPU the process used, valid after stop
}

// startDaemon starts `bin run --config ...`, with its output appended to the migration's log.
// The process runs in its own process group so that Ctrl-C reaches only the bench, which stops
// it with SIGTERM; it is killed if the bench dies.
func startDaemon(bin string, m *migration) (*daemon, error) {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", m.config)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	d := &daemon{m: m, cmd: cmd, done: make(chan struct{}), start: time.Now()}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		d.err = cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	return d, nil
}

// exited returns an error once the daemon has exited (for whatever reason), else nil.
func (d *daemon) exited() error {
	select {
	case <-d.done:
		return fmt.Errorf("migrated exited early (%v); last log lines:\n%s", d.err, d.logTail())
	default:
		return nil
	}
}

// status reads GET /v1/status; ok is false while the API does not answer.
func (d *daemon) status() (phase, errMsg string, ok bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.m.listen + "/v1/status")
	if err != nil {
		return "", "", false
	}
	defer resp.Body.Close()
	var st struct {
		Phase string `json:"phase"`
		Error string `json:"error"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return "", "", false
	}
	return st.Phase, st.Error, true
}

// waitStreaming waits until the daemon reports phase "streaming" (schema, rows and indexes all
// on the target) and returns the time since the process started.
func (d *daemon) waitStreaming(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	var failed error
	abort := func() error {
		if failed != nil {
			return failed
		}
		return d.exited()
	}
	err := waitUntil(ctx, "migrated to reach phase streaming", timeout, abort, func() bool {
		phase, msg, ok := d.status()
		if ok && phase == "failed" {
			failed = fmt.Errorf("migrated reports phase failed: %s", msg)
		}
		return ok && phase == "streaming"
	})
	return time.Since(d.start), err
}

// stop sends SIGTERM, waits up to a minute (then SIGKILL), and returns the peak resident set
// size in bytes (from the kernel's rusage of the process and its reaped children, e.g. pg_dump).
// An exit status other than success is an error, with the end of the log.
func (d *daemon) stop() (peakRSS int64, err error) {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		<-d.done
		err = errors.New("migrated did not stop within a minute of SIGTERM; killed")
	}
	if ru, ok := d.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		peakRSS = ru.Maxrss * 1024 // KiB on Linux
	}
	d.cpu = d.cmd.ProcessState.UserTime() + d.cmd.ProcessState.SystemTime()
	if err == nil && d.err != nil {
		err = fmt.Errorf("migrated exited with %v after SIGTERM; last log lines:\n%s", d.err, d.logTail())
	}
	return peakRSS, err
}

// kill ends the daemon at once if it is still running (cleanup after a failure or Ctrl-C).
func (d *daemon) kill() {
	select {
	case <-d.done:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.m.logPath)
	return tail(string(b), 20)
}

// dropSourceObjects removes what the migration left on the source: its replication slots
// (migrated_<name> and any _resync leftover) and its publication.
func (m *migration) dropSourceObjects(ctx context.Context) error {
	slot := "migrated_" + m.name
	if err := execSQL(ctx, m.src, fmt.Sprintf(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE slot_name IN ('%[1]s', '%[1]s_resync') AND active_pid IS NOT NULL`, slot)); err != nil {
		return err
	}
	var err error
	for i := 0; i < 50; i++ { // a terminated walsender may hold the slot for a moment
		err = execSQL(ctx, m.src, fmt.Sprintf(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE slot_name IN ('%[1]s', '%[1]s_resync')`, slot))
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	return execSQL(ctx, m.src, "DROP PUBLICATION IF EXISTS "+slot)
}

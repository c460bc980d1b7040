package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/migrated/migrated/internal/testenv"
)

// myApplyResults are the figures of the MariaDB apply comparison: how fast a backlog of
// sysbench oltp_write_only transactions, written while the tool was stopped, is applied.
type myApplyResults struct {
	backlog     int   // transactions
	threads     int   // sysbench threads that wrote it
	binlogBytes int64 // source binlog the backlog took
	written     time.Duration
	native      result
	// transfer is how long the source takes to send the backlog's binlog to a client that
	// applies nothing: a floor for any binlog consumer.
	transfer result
	mig      result
	migRSS   int64
	migCPU   time.Duration
	// migStatements is how many statements the target server executed while migrated caught
	// up (its Questions counter): the round trips migrated needed for the backlog.
	migStatements int64
	// The CPU the servers used while each caught up: the source sending its binlog, and the
	// server applying (migrated's target, or the replica).
	migSrcCPU, migDstCPU, nativeSrcCPU, nativeDstCPU time.Duration
}

// procCPU is the user and system CPU a process has used so far (0 when it cannot be read).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux.
const clockTicks = 100

// serverCPU measures the CPU of the source and the applying server while fn runs.
func serverCPU(src, dst *testenv.MariaDB, srcCPU, dstCPU *time.Duration, fn func() error) error {
	s0, d0 := procCPU(src.PID()), procCPU(dst.PID())
	err := fn()
	*srcCPU, *dstCPU = procCPU(src.PID())-s0, procCPU(dst.PID())-d0
	return err
}

// apply compares a native MariaDB replica with migrated catching up on the same backlog.
//
// Both start from the same data: the replica (a third server with the same settings) is seeded
// by a dump of the prepared source at a known GTID position, migrated's target is its snapshot
// of the same source. Both are caught up, then stopped (the replica with STOP SLAVE, both
// threads, so that it too has to fetch the backlog; migrated with SIGTERM); sysbench writes the
// backlog; then each is started alone and timed until it has applied the source's
// @@gtid_binlog_pos: the replica's @@gtid_slave_pos, migrated's `_migrated`.`progress` position
// (committed with the data). Both copies are compared with the source afterwards.
func (m *myBench) apply(ctx context.Context) (*myApplyResults, error) {
	a := &myApplyResults{backlog: m.myBacklog, threads: 4}
	var err error
	m.logf("mariadb apply: starting the replica server")
	if m.replica, err = testenv.StartMariaDB(testenv.MariaDBOptions{Settings: mariadbSettings}); err != nil {
		return nil, err
	}
	if err := m.migratedReady(ctx); err != nil {
		a.mig.err = err
		m.logf("mariadb apply: migrated: FAILED: %v", err)
	}
	if err := m.seedReplica(ctx); err != nil {
		return nil, fmt.Errorf("seed the replica: %w", err)
	}

	// Everything is stopped and caught up: write the backlog.
	before, err := binlogBytes(ctx, m.src)
	if err != nil {
		return nil, err
	}
	startFile, startPos, err := masterStatus(ctx, m.src)
	if err != nil {
		return nil, err
	}
	m.logf("mariadb apply: backlog of %d oltp_write_only transactions", a.backlog)
	a.written, err = timed(func() error {
		return runTool(ctx, "sysbench", m.sysbenchArgs("oltp_write_only", "run", a.threads,
			fmt.Sprintf("--events=%d", a.backlog), "--time=0", "--rand-seed=1")...)
	})
	if err != nil {
		return nil, fmt.Errorf("sysbench backlog: %w", err)
	}
	end, err := m.src.QueryString(ctx, "SELECT @@gtid_binlog_pos")
	if err != nil {
		return nil, err
	}
	after, err := binlogBytes(ctx, m.src)
	if err != nil {
		return nil, err
	}
	a.binlogBytes = after - before
	m.logf("mariadb apply: backlog written in %.1f s, %s of binlog, end position %s", a.written.Seconds(), mb(a.binlogBytes), end)

	if a.transfer.err = m.transferOnly(ctx, startFile, startPos, &a.transfer); a.transfer.err != nil {
		m.logf("mariadb apply: binlog transfer only: FAILED: %v", a.transfer.err)
	}
	// Neither applying server may still be busy with the writes of its seeding.
	for _, srv := range []*testenv.MariaDB{m.dst, m.replica} {
		if err := settle(ctx, srv); err != nil {
			return nil, err
		}
	}
	if a.mig.err == nil {
		a.mig.err = serverCPU(m.src, m.dst, &a.migSrcCPU, &a.migDstCPU, func() error { return m.catchUpMigrated(ctx, end, a) })
		if a.mig.err == nil {
			a.mig.err = m.verifyMyCopy(ctx, m.dst, myMigDB)
		}
		m.logResult(fmt.Sprintf("mariadb apply: migrated (peak RSS %s, CPU %.1f s)", mb(a.migRSS), a.migCPU.Seconds()), a.mig)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	a.native.err = serverCPU(m.src, m.replica, &a.nativeSrcCPU, &a.nativeDstCPU, func() error { return m.catchUpReplica(ctx, end, &a.native) })
	if a.native.err == nil {
		a.native.err = m.verifyMyCopy(ctx, m.replica, sbtestDB)
	}
	m.logResult("mariadb apply: native replica", a.native)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return a, nil
}

// migratedReady brings migrated's target up to the source's current position and stops it:
// the snapshot part's migration if it succeeded, else a fresh, untimed one.
func (m *myBench) migratedReady(ctx context.Context) error {
	if m.mig == nil {
		m.logf("mariadb apply: migrated: snapshot of the source (not timed)")
		if err := m.dst.CreateDB(ctx, myMigDB); err != nil {
			return err
		}
		var err error
		// A name of its own: a failed snapshot run may have left its state in `_migrated`.
		if m.mig, err = newMyMigration(m.tmp, m.logDir, "my_apply", m.src.DSN(sbtestDB), "mysql", m.dst.DSN(myMigDB), m.jobs); err != nil {
			return err
		}
	}
	d, err := startDaemon(m.bin, m.mig)
	if err != nil {
		return err
	}
	defer d.kill()
	if _, err := d.waitStreaming(ctx, 2*time.Hour); err != nil {
		return err
	}
	pos, err := m.src.QueryString(ctx, "SELECT @@gtid_binlog_pos")
	if err != nil {
		return err
	}
	if err := m.waitProgress(ctx, d, pos, time.Hour); err != nil {
		return err
	}
	_, err = d.stop()
	return err
}

// waitProgress waits until migrated's checkpoint on the target includes GTID position pos.
func (m *myBench) waitProgress(ctx context.Context, d *daemon, pos string, timeout time.Duration) error {
	p := &myPoller{s: m.dst}
	defer p.close()
	return waitUntil(ctx, "migrated to apply up to "+pos, timeout, d.exited, func() bool {
		have, ok := p.value(ctx, "SELECT position FROM _migrated.progress WHERE migration = ? AND stream = 'forward'", m.mig.name)
		return ok && gtidContains(have, pos)
	})
}

// seedReplica copies the source's sbtest into the replica server with the dump pipe, while the
// source is idle, and makes the replica follow the source from the GTID position of that copy,
// for sbtest only (migrated's own `_migrated` tables on the source are not replicated). It
// returns with the replica caught up and stopped.
func (m *myBench) seedReplica(ctx context.Context) error {
	m.logf("mariadb apply: native: seeding the replica (not timed)")
	pos, err := m.src.QueryString(ctx, "SELECT @@gtid_binlog_pos")
	if err != nil {
		return err
	}
	if err := m.replica.CreateDB(ctx, sbtestDB); err != nil {
		return err
	}
	if err := myDumpPipe(ctx, m.src, sbtestDB, m.replica, sbtestDB); err != nil {
		return err
	}
	if now, err := m.src.QueryString(ctx, "SELECT @@gtid_binlog_pos"); err != nil {
		return err
	} else if now != pos {
		return fmt.Errorf("the source moved during the seeding dump (%s → %s)", pos, now)
	}
	// The replica's own binlog holds the load of the dump under its server_id; gtid_strict_mode
	// would refuse a slave position behind it in the same domain.
	err = myExec(ctx, m.replica,
		"RESET MASTER",
		fmt.Sprintf("SET GLOBAL gtid_slave_pos = '%s'", pos),
		"SET GLOBAL replicate_wild_do_table = '"+sbtestDB+".%'",
		"SET GLOBAL slave_parallel_threads = 0",
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST = '%s', MASTER_PORT = %d, MASTER_USER = '%s', MASTER_PASSWORD = '%s', MASTER_USE_GTID = slave_pos",
			m.src.Host(), m.src.Port(), m.src.User(), m.src.Password()),
		"START SLAVE")
	if err != nil {
		return err
	}
	if err := m.waitReplica(ctx, pos, 10*time.Minute); err != nil {
		return err
	}
	return myExec(ctx, m.replica, "STOP SLAVE")
}

// waitReplica waits until both replica threads run and its gtid_slave_pos includes pos; a
// replication error ends the wait.
func (m *myBench) waitReplica(ctx context.Context, pos string, timeout time.Duration) error {
	p := &myPoller{s: m.replica}
	defer p.close()
	abort := func() error {
		st, ok := p.row(ctx, "SHOW SLAVE STATUS")
		if !ok {
			return nil
		}
		if e := st["Last_SQL_Error"]; e != "" {
			return errors.New("replica SQL thread: " + e)
		}
		if e := st["Last_IO_Error"]; e != "" {
			return errors.New("replica IO thread: " + e)
		}
		return nil
	}
	running := false
	return waitUntil(ctx, "the replica to apply up to "+pos, timeout, abort, func() bool {
		if !running {
			st, ok := p.row(ctx, "SHOW SLAVE STATUS")
			running = ok && st["Slave_IO_Running"] == "Yes" && st["Slave_SQL_Running"] == "Yes"
		}
		have, ok := p.value(ctx, "SELECT @@gtid_slave_pos")
		return running && ok && gtidContains(have, pos)
	})
}

// catchUpMigrated starts migrated and times it, from process start, until its checkpoint on the
// target includes end; then stops it.
func (m *myBench) catchUpMigrated(ctx context.Context, end string, a *myApplyResults) error {
	m.logf("mariadb apply: migrated: catching up")
	q0, err := questions(ctx, m.dst)
	if err != nil {
		return err
	}
	d, err := startDaemon(m.bin, m.mig)
	if err != nil {
		return err
	}
	defer d.kill()
	if err := m.waitProgress(ctx, d, end, time.Hour); err != nil {
		return err
	}
	a.mig.d = time.Since(d.start)
	if q1, err := questions(ctx, m.dst); err == nil {
		a.migStatements = q1 - q0
	}
	a.migRSS, err = d.stop()
	a.migCPU = d.cpu
	return err
}

// catchUpReplica times the replica from START SLAVE until its gtid_slave_pos includes end.
func (m *myBench) catchUpReplica(ctx context.Context, end string, r *result) error {
	m.logf("mariadb apply: native: catching up")
	t0 := time.Now()
	if err := myExec(ctx, m.replica, "START SLAVE"); err != nil {
		return err
	}
	if err := m.waitReplica(ctx, end, time.Hour); err != nil {
		return err
	}
	r.d = time.Since(t0)
	return myExec(ctx, m.replica, "STOP SLAVE")
}

// masterStatus is the server's current binlog file and offset.
func masterStatus(ctx context.Context, s *testenv.MariaDB) (string, int64, error) {
	c, err := myConn(ctx, s, "")
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	r, err := c.Execute("SHOW MASTER STATUS")
	if err != nil {
		return "", 0, err
	}
	if r.RowNumber() != 1 {
		return "", 0, errors.New("SHOW MASTER STATUS: the source has no binary log")
	}
	file, _ := r.GetStringByName(0, "File")
	pos, _ := r.GetIntByName(0, "Position")
	return file, pos, nil
}

// transferOnly times mariadb-binlog reading the source's binlog from file:pos to its end, raw
// (written to files, not decoded): the source's dump pace, which the replica's IO thread and
// migrated's stream are both bound by.
func (m *myBench) transferOnly(ctx context.Context, file string, pos int64, r *result) error {
	dir, err := os.MkdirTemp(m.tmp, "binlog-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m.logf("mariadb apply: binlog transfer only (mariadb-binlog --raw from %s:%d)", file, pos)
	r.d, err = timed(func() error {
		return runTool(ctx, "mariadb-binlog", append(mariadbArgs(m.src), "--read-from-remote-server", "--raw",
			"--to-last-log", fmt.Sprintf("--start-position=%d", pos), "--result-file="+dir+"/", file)...)
	})
	if err == nil {
		m.logf("mariadb apply: binlog transfer only: %.1f s", r.d.Seconds())
	}
	return err
}

// binlogBytes is the size of all of the server's binary logs.
func binlogBytes(ctx context.Context, s *testenv.MariaDB) (int64, error) {
	c, err := myConn(ctx, s, "")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r, err := c.Execute("SHOW BINARY LOGS")
	if err != nil {
		return 0, err
	}
	var n int64
	for i := range r.RowNumber() {
		v, _ := r.GetIntByName(i, "File_size")
		n += int64(v)
	}
	return n, nil
}

// questions reads the server's Questions counter: the statements clients sent it.
func questions(ctx context.Context, s *testenv.MariaDB) (int64, error) {
	v, err := s.QueryString(ctx, "SELECT variable_value FROM information_schema.global_status WHERE variable_name = 'QUESTIONS'")
	if err != nil {
		return 0, err
	}
	var n int64
	_, err = fmt.Sscan(v, &n)
	return n, err
}

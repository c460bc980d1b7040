package main

// The MariaDB parts of the bench. Throwaway MariaDB servers (internal/testenv) with identical
// settings act as source, target and native replica; a sysbench oltp_read_write database on the
// source is the data of every part:
//
//   - mysql-snapshot: mariadb-dump --single-transaction | mariadb against migrated, each into a
//     fresh database on the target server, timed to a complete, indexed copy.
//   - mysql-apply: a sysbench oltp_write_only backlog written while a native replica (one SQL
//     thread) or migrated is stopped, timed until each has applied the source's GTID position.
//   - mysql-pg: MariaDB → PostgreSQL with pgloader and with migrated, each into a fresh database
//     on a PostgreSQL cluster; a migrated binary without that path gets "not built yet".

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/testenv"
)

// mariadbSettings apply to every MariaDB server of the bench on top of testenv's defaults
// (row-based binlog with FULL images, gtid_strict_mode, innodb_flush_log_at_trx_commit=2,
// sync_binlog=0), so that the dump pipe, the native replica and migrated meet identical servers.
var mariadbSettings = map[string]string{
	"innodb_buffer_pool_size":        "1G",
	"innodb_log_file_size":           "512M",
	"innodb_io_capacity":             "2000",
	"innodb_io_capacity_max":         "4000",
	"innodb_flush_log_at_trx_commit": "2",
	"sync_binlog":                    "0",
}

// The database names of the MariaDB parts.
const (
	sbtestDB  = "sbtest"   // sysbench's data on the source, and the native replica's copy
	dumpDB    = "dump_dst" // the dump pipe's target
	myMigDB   = "mig_dst"  // migrated's target
	myMigName = "my_snap"  // migrated's snapshot migration, reused by the apply part
)

// Goals of the MariaDB parts; reported, never enforced.
const (
	mySnapshotGoal = 0.5 // migrated takes at most this fraction of the dump pipe's time
	myApplyGoal    = 2.0 // migrated catches up at least this many times faster than a replica
)

// mysqlParts says which MariaDB parts a run includes.
type mysqlParts struct{ snapshot, apply, pg bool }

func (p mysqlParts) any() bool { return p.snapshot || p.apply || p.pg }

// partsFor maps -only to the MariaDB parts: all of them for a full run or "mysql".
func partsFor(only string) mysqlParts {
	all := only == "" || only == "mysql"
	return mysqlParts{snapshot: all || only == "mysql-snapshot", apply: all || only == "mysql-apply", pg: all || only == "mysql-pg"}
}

// mysqlResults are the figures of the MariaDB parts; a part that did not run is nil.
type mysqlResults struct {
	version  string
	load     string // 1-minute load average when the MariaDB parts began
	tables   int
	rows     int   // per table
	bytes    int64 // data and index length of the source tables, as InnoDB estimates it
	skipped  string
	snapshot *mySnapshotResults
	apply    *myApplyResults
	pg       *pgloaderResults
}

// myBench is the state of the MariaDB parts of one run.
type myBench struct {
	*bench
	src, dst *testenv.MariaDB
	replica  *testenv.MariaDB // only for the apply part
	mig      *migration       // migrated's migration into mig_dst, once created
}

// mysqlTools are the programs the MariaDB parts need besides the servers.
var mysqlTools = []string{"sysbench", "mariadb", "mariadb-dump"}

// runMySQL starts the MariaDB servers, prepares the sysbench data and runs the selected parts.
// The servers are gone when it returns. Missing tools skip the parts rather than fail the run.
func (b *bench) runMySQL(ctx context.Context, parts mysqlParts) (*mysqlResults, error) {
	res := &mysqlResults{tables: b.myTables, rows: b.myRows, load: loadAverage()}
	for _, tool := range mysqlTools {
		if _, err := exec.LookPath(tool); err != nil {
			res.skipped = fmt.Sprintf("%s not installed (run bench/install.sh)", tool)
			b.logf("mariadb: skipped, %s", res.skipped)
			return res, nil
		}
	}
	m := &myBench{bench: b}
	defer m.stopServers()
	b.logf("mariadb: starting source and target servers")
	opts := testenv.MariaDBOptions{Settings: mariadbSettings}
	var err error
	if m.src, err = testenv.StartMariaDB(opts); err != nil {
		if errors.Is(err, testenv.ErrNotInstalled) {
			res.skipped = "MariaDB server not installed (run bench/install.sh)"
			return res, nil
		}
		return nil, err
	}
	if m.dst, err = testenv.StartMariaDB(opts); err != nil {
		return nil, err
	}
	if res.version, err = m.src.QueryString(ctx, "SELECT VERSION()"); err != nil {
		return nil, err
	}
	res.version, _, _ = strings.Cut(res.version, "-")

	b.logf("mariadb: sysbench oltp_read_write prepare, %d tables × %d rows", b.myTables, b.myRows)
	if err := m.src.CreateDB(ctx, sbtestDB); err != nil {
		return nil, err
	}
	if err := runTool(ctx, "sysbench", m.sysbenchArgs("oltp_read_write", "prepare", min(b.myTables, 4))...); err != nil {
		return nil, fmt.Errorf("sysbench prepare: %w", err)
	}
	if err := settle(ctx, m.src); err != nil {
		return nil, err
	}
	bytes, err := m.src.QueryString(ctx, "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = '"+sbtestDB+"'")
	if err != nil {
		return nil, err
	}
	fmt.Sscan(bytes, &res.bytes)
	b.logf("mariadb: source is %s", mb(res.bytes))

	if parts.snapshot {
		if res.snapshot, err = m.snapshot(ctx); err != nil {
			return res, fmt.Errorf("mariadb snapshot: %w", err)
		}
	}
	if parts.apply {
		if res.apply, err = m.apply(ctx); err != nil {
			return res, fmt.Errorf("mariadb apply: %w", err)
		}
	}
	if parts.pg {
		if res.pg, err = m.pgloader(ctx); err != nil {
			return res, fmt.Errorf("mariadb → postgres: %w", err)
		}
	}
	return res, nil
}

func (m *myBench) stopServers() {
	for _, s := range []*testenv.MariaDB{m.replica, m.dst, m.src} {
		if s != nil {
			s.Stop()
		}
	}
}

// sysbenchArgs are the arguments of a sysbench OLTP command against the source's sbtest.
func (m *myBench) sysbenchArgs(test, command string, threads int, extra ...string) []string {
	args := []string{test, "--db-driver=mysql", "--mysql-host=" + m.src.Host(), fmt.Sprintf("--mysql-port=%d", m.src.Port()),
		"--mysql-user=" + m.src.User(), "--mysql-db=" + sbtestDB,
		fmt.Sprintf("--tables=%d", m.myTables), fmt.Sprintf("--table-size=%d", m.myRows), fmt.Sprintf("--threads=%d", threads)}
	if pw := m.src.Password(); pw != "" {
		args = append(args, "--mysql-password="+pw)
	}
	return append(append(args, extra...), command)
}

// mySnapshotResults are the figures of the MariaDB snapshot comparison: the time from nothing on
// the target to a complete, indexed copy.
type mySnapshotResults struct {
	jobs        int
	dump        result
	migrated    result
	migratedRSS int64
	migratedCPU time.Duration
}

// snapshot compares mariadb-dump | mariadb with migrated, each into a fresh database on the
// target server. Every copy is checked (row counts, indexes, CHECKSUM TABLE) after its clock
// stops; the dump's copy is then dropped so that migrated's run meets a target server with a
// flushed buffer pool, as the dump did.
func (m *myBench) snapshot(ctx context.Context) (*mySnapshotResults, error) {
	r := &mySnapshotResults{jobs: m.jobs}
	if err := m.dst.CreateDB(ctx, dumpDB); err != nil {
		return nil, err
	}
	m.logf("mariadb snapshot: mariadb-dump | mariadb ...")
	d, err := timed(func() error { return myDumpPipe(ctx, m.src, sbtestDB, m.dst, dumpDB) })
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err == nil {
		err = m.verifyMyCopy(ctx, m.dst, dumpDB)
	}
	r.dump = result{d: d, err: err}
	m.logResult("mariadb snapshot: mariadb-dump | mariadb", r.dump)
	if err := m.dst.Exec(ctx, "DROP DATABASE IF EXISTS "+dumpDB); err != nil {
		return nil, err
	}
	if err := settle(ctx, m.dst); err != nil {
		return nil, err
	}

	if err := m.dst.CreateDB(ctx, myMigDB); err != nil {
		return nil, err
	}
	if m.mig, err = newMyMigration(m.tmp, m.logDir, myMigName, m.src.DSN(sbtestDB), "mysql", m.dst.DSN(myMigDB), m.jobs); err != nil {
		return nil, err
	}
	m.logf("mariadb snapshot: migrated (%d workers) ...", m.jobs)
	d, rss, cpu, err := m.migratedTo(ctx, m.mig)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err == nil {
		err = m.verifyMyCopy(ctx, m.dst, myMigDB)
	}
	r.migrated, r.migratedRSS, r.migratedCPU = result{d: d, err: err}, rss, cpu
	m.logResult(fmt.Sprintf("mariadb snapshot: migrated (peak RSS %s, CPU %.1f s)", mb(rss), cpu.Seconds()), r.migrated)
	if err != nil {
		m.mig = nil // the apply part starts from a fresh copy
	}
	return r, nil
}

// migratedTo runs a migration from nothing until migrated reports phase "streaming" (schema,
// rows and secondary keys on the target), then stops it with SIGTERM. It returns the time from
// process start, the peak RSS and the CPU time.
func (m *myBench) migratedTo(ctx context.Context, mig *migration) (time.Duration, int64, time.Duration, error) {
	d, err := startDaemon(m.bin, mig)
	if err != nil {
		return 0, 0, 0, err
	}
	defer d.kill()
	elapsed, err := d.waitStreaming(ctx, 2*time.Hour)
	if err != nil {
		return 0, 0, 0, err
	}
	rss, err := d.stop()
	return elapsed, rss, d.cpu, err
}

func (m *myBench) logResult(label string, r result) {
	if r.err != nil {
		m.logf("%s: FAILED: %v", label, r.err)
	} else {
		m.logf("%s: %.1f s", label, r.d.Seconds())
	}
}

// newMyMigration writes the config of a migration from a MariaDB source into a target of the
// given engine (mysql or postgres) into dir.
func newMyMigration(dir, logDir, name, src, dstEngine, dst string, workers int) (*migration, error) {
	return newEngineMigration(dir, logDir, name, "mysql", src, dstEngine, dst, workers)
}

// mariadbArgs are the connection arguments of the mariadb client tools for server s. Option
// files are not read: nothing but these arguments decides where a tool connects.
func mariadbArgs(s *testenv.MariaDB) []string {
	args := []string{"--no-defaults", "--protocol=tcp", "--host=" + s.Host(), fmt.Sprintf("--port=%d", s.Port()), "--user=" + s.User()}
	if pw := s.Password(); pw != "" {
		args = append(args, "--password="+pw)
	}
	return args
}

// myDumpPipe runs `mariadb-dump --single-transaction srcDB | mariadb dstDB`.
func myDumpPipe(ctx context.Context, src *testenv.MariaDB, srcDB string, dst *testenv.MariaDB, dstDB string) error {
	dump := command(ctx, "mariadb-dump", append(mariadbArgs(src), "--single-transaction", srcDB)...)
	load := command(ctx, "mariadb", append(mariadbArgs(dst), dstDB)...)
	return pipe(ctx, dump, load)
}

// pipe runs producer | consumer and waits for both; an error carries the end of both outputs.
func pipe(ctx context.Context, producer, consumer *exec.Cmd) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	var perr, cerr strings.Builder
	producer.Stdout, producer.Stderr = w, &perr
	consumer.Stdin, consumer.Stdout, consumer.Stderr = r, &cerr, &cerr
	if err := producer.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	if err := consumer.Start(); err != nil {
		r.Close()
		w.Close()
		producer.Wait()
		return err
	}
	// The children hold their own ends: a dying consumer gives the producer EPIPE, not a hang.
	r.Close()
	w.Close()
	e1, e2 := producer.Wait(), consumer.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if e1 != nil || e2 != nil {
		return fmt.Errorf("%s: %v, %s: %v\n%s%s", filepath.Base(producer.Path), e1, filepath.Base(consumer.Path), e2,
			tail(perr.String(), 10), tail(cerr.String(), 10))
	}
	return nil
}

// myConn connects to server s, database db ("" for none).
func myConn(ctx context.Context, s *testenv.MariaDB, db string) (*client.Conn, error) {
	return client.ConnectWithContext(ctx, s.Addr(), s.User(), s.Password(), db, 10*time.Second)
}

// myExec runs statements on one connection to s.
func myExec(ctx context.Context, s *testenv.MariaDB, stmts ...string) error {
	c, err := myConn(ctx, s, "")
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range stmts {
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// myPoller keeps one connection for frequent queries, reconnecting after an error.
type myPoller struct {
	s    *testenv.MariaDB
	conn *client.Conn
}

// query runs a query on the poller's connection; nil on an error or an empty result.
func (p *myPoller) query(ctx context.Context, q string, args ...any) *gomysql.Result {
	if p.conn == nil {
		c, err := myConn(ctx, p.s, "")
		if err != nil {
			return nil
		}
		p.conn = c
	}
	r, err := p.conn.Execute(q, args...)
	if err != nil {
		p.conn.Close()
		p.conn = nil
		return nil
	}
	if r.RowNumber() == 0 {
		return nil
	}
	return r
}

// row returns the first row of a query's result by column name; ok is false on an error or no row.
func (p *myPoller) row(ctx context.Context, q string, args ...any) (map[string]string, bool) {
	r := p.query(ctx, q, args...)
	if r == nil {
		return nil, false
	}
	out := map[string]string{}
	for name, i := range r.FieldNames {
		out[name], _ = r.GetString(0, i)
	}
	return out, true
}

// value returns the first column of the first row of a query's result.
func (p *myPoller) value(ctx context.Context, q string, args ...any) (string, bool) {
	r := p.query(ctx, q, args...)
	if r == nil {
		return "", false
	}
	v, _ := r.GetString(0, 0)
	return v, true
}

func (p *myPoller) close() {
	if p.conn != nil {
		p.conn.Close()
	}
}

// gtidContains reports whether GTID position have includes every transaction of want.
func gtidContains(have, want string) bool {
	h, err := gomysql.ParseMariadbGTIDSet(have)
	if err != nil {
		return false
	}
	w, err := gomysql.ParseMariadbGTIDSet(want)
	if err != nil {
		return false
	}
	return h.Contain(w)
}

// settle flushes the server's dirty pages and waits for the purge of old row versions, so that
// a run does not pay for the writes of the one before (the MariaDB counterpart of the
// PostgreSQL parts' CHECKPOINT).
func settle(ctx context.Context, s *testenv.MariaDB) error {
	if err := myExec(ctx, s, "SET GLOBAL innodb_io_capacity_max = 40000", "SET GLOBAL innodb_io_capacity = 20000",
		"SET GLOBAL innodb_max_dirty_pages_pct = 0"); err != nil {
		return err
	}
	defer myExec(context.WithoutCancel(ctx), s, "SET GLOBAL innodb_max_dirty_pages_pct = 90",
		"SET GLOBAL innodb_io_capacity = "+mariadbSettings["innodb_io_capacity"],
		"SET GLOBAL innodb_io_capacity_max = "+mariadbSettings["innodb_io_capacity_max"])
	p := &myPoller{s: s}
	defer p.close()
	below := func(query string, limit int) func() bool {
		return func() bool {
			v, ok := p.value(ctx, query)
			var n int
			fmt.Sscan(v, &n)
			return ok && n < limit
		}
	}
	err := waitUntil(ctx, "dirty pages to be flushed", 3*time.Minute, nil,
		below("SELECT variable_value FROM information_schema.global_status WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'", 100))
	if err == nil {
		// And the old row versions of the writes before purged.
		err = waitUntil(ctx, "the undo history to be purged", 3*time.Minute, nil,
			below("SELECT count FROM information_schema.INNODB_METRICS WHERE name = 'trx_rseg_history_len'", 1000))
	}
	if err != nil && ctx.Err() == nil {
		return nil // a busy server: go on, the figures will say so
	}
	return err
}

// sbtestTables lists sysbench's tables.
func (m *myBench) sbtestTables() []string {
	var ts []string
	for i := 1; i <= m.myTables; i++ {
		ts = append(ts, fmt.Sprintf("sbtest%d", i))
	}
	return ts
}

// tableFacts are what verifyMyCopy compares: row count, index names and CHECKSUM TABLE.
func (m *myBench) tableFacts(ctx context.Context, s *testenv.MariaDB, db string) (map[string]string, error) {
	c, err := myConn(ctx, s, db)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	facts := map[string]string{}
	for _, t := range m.sbtestTables() {
		r, err := c.Execute(fmt.Sprintf("SELECT COUNT(*) FROM `%s`", t))
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", db, t, err)
		}
		n, _ := r.GetString(0, 0)
		r, err = c.Execute(fmt.Sprintf("SELECT GROUP_CONCAT(DISTINCT index_name ORDER BY index_name) FROM information_schema.statistics WHERE table_schema = '%s' AND table_name = '%s'", db, t))
		if err != nil {
			return nil, err
		}
		idx, _ := r.GetString(0, 0)
		r, err = c.Execute(fmt.Sprintf("CHECKSUM TABLE `%s`", t))
		if err != nil {
			return nil, err
		}
		sum, _ := r.GetString(0, 1)
		facts[t] = fmt.Sprintf("%s rows, indexes %s, checksum %s", n, idx, sum)
	}
	return facts, nil
}

// verifyMyCopy checks that db on server s holds what the source's sbtest holds: the same row
// count, the same indexes and the same CHECKSUM TABLE in every table. It is not timed.
func (m *myBench) verifyMyCopy(ctx context.Context, s *testenv.MariaDB, db string) error {
	want, err := m.tableFacts(ctx, m.src, sbtestDB)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	have, err := m.tableFacts(ctx, s, db)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	var problems []string
	for _, t := range slices.Sorted(maps.Keys(want)) {
		if want[t] != have[t] {
			problems = append(problems, fmt.Sprintf("%s: source %s; copy %s", t, want[t], have[t]))
		}
	}
	if len(problems) > 0 {
		return errors.New("copy differs: " + strings.Join(problems, "; "))
	}
	return nil
}

// mariadbSettingsText lists the server settings the bench gives every MariaDB server.
func mariadbSettingsText() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(mariadbSettings)) {
		parts = append(parts, k+"="+mariadbSettings[k])
	}
	return strings.Join(parts, " ") + " binlog_format=ROW binlog_row_image=FULL"
}

// loadAverage is the 1-minute load average, "?" if unknown: other work on the machine skews the
// figures.
func loadAverage() string {
	l, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	avg, _, _ := strings.Cut(string(l), " ")
	return avg
}

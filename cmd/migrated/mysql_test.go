package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/migrated/migrated/internal/testenv"
)

// myEnv is a MariaDB → MariaDB migration under test: two databases on one throwaway server, or
// on two (dm set) when the test fences one, since a fence covers a whole server.
type myEnv struct {
	*env
	m  *testenv.MariaDB
	dm *testenv.MariaDB
	// pgDst is the PostgreSQL target of a MariaDB → PostgreSQL test, pgSrc the PostgreSQL
	// source of a PostgreSQL → MariaDB one, when set.
	pgDst, pgSrc string
	srcDB        string
	dstDB        string
	srcDSN       string
	dstDSN       string
	serverAddr   string
}

func newMyEnv(t *testing.T, name string) *myEnv {
	t.Helper()
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	e := &myEnv{m: m, srcDB: name + "_src", dstDB: name + "_dst", serverAddr: m.Addr()}
	for _, db := range []string{e.srcDB, e.dstDB} {
		if err := m.CreateDB(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	// A previous run of the same test leaves its state behind on the shared server.
	_ = m.Exec(ctx, "DELETE FROM _migrated.migration WHERE name = '"+name+"'")
	_ = m.Exec(ctx, "DELETE FROM _migrated.progress WHERE migration = '"+name+"'")
	_ = m.Exec(ctx, "DELETE FROM _migrated.snapshot WHERE migration = '"+name+"'")
	e.srcDSN, e.dstDSN = m.DSN(e.srcDB), m.DSN(e.dstDB)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e.env = &env{t: t, name: name, dir: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", port)}
	e.writeMyConfig("")
	return e
}

func (e *myEnv) writeMyConfig(extra string) {
	e.config = filepath.Join(e.dir, "migration.yaml")
	cfg := fmt.Sprintf(`name: %s
source:
  engine: mysql
  dsn: %s
target:
  engine: mysql
  dsn: %s
snapshot:
  workers: 2
  split-rows: 1000
stream:
  heartbeat-interval: 200ms
  reconnect-max-backoff: 2s
api:
  listen: %s
log:
  level: debug
  format: json
%s`, e.name, e.srcDSN, e.dstDSN, e.listen, extra)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// conn opens a session on db, on the server that holds it: "" is the source's server.
func (e *myEnv) conn(db string) *client.Conn {
	e.t.Helper()
	m := e.m
	if e.dm != nil && db == e.dstDB {
		m = e.dm
	}
	c, err := client.Connect(m.Addr(), m.User(), m.Password(), db)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *myEnv) mustExec(c *client.Conn, qs ...string) {
	e.t.Helper()
	for _, q := range qs {
		if _, err := c.Execute(q); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
}

// seedMySQL creates a table of every common MariaDB type and a ledger of n rows.
func (e *myEnv) seedMySQL(n int) {
	c := e.conn(e.srcDB)
	defer c.Close()
	e.mustExec(c,
		"SET SESSION time_zone = '+00:00'",
		`CREATE TABLE every_type (
		  id INT NOT NULL PRIMARY KEY,
		  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
		  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
		  dec65 DECIMAL(65,30), f FLOAT, d DOUBLE,
		  c CHAR(10), vc VARCHAR(100), tx TEXT,
		  bin BINARY(16), vb VARBINARY(64), bl BLOB,
		  dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME(6), yr YEAR,
		  js JSON, en ENUM('small','medium','large'), st SET('a','b','c'),
		  b1 BIT(1), b64 BIT(64),
		  gen BIGINT AS (i * 2) STORED,
		  KEY by_vc (vc)
		) CHARSET utf8mb4`,
		`INSERT INTO every_type (id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, f, d, c, vc, tx, bin, vb, bl, dt, dtm, ts, tm, yr, js, en, st, b1, b64) VALUES
		 (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
		  '-12345678901234567890123456789012345.123456789012345678901234567891', 1.25, 3.141592653589793,
		  'héllo', 'emoji 🐘🚀', 'long text ✓', X'00112233445566778899AABBCCDD0000', X'00FF', X'DEADBEEF00',
		  '2024-02-29', '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.499999', '-838:59:59.000000', 2024,
		  '{"a": [1, 2.5, "x"], "b": null}', 'medium', 'a,c', b'1', b'1111111111111111111111111111111111111111111111111111111111111111'),
		 (2, NULL, NULL, NULL, NULL, NULL, NULL, 7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		  NULL, NULL, NULL, NULL, 0, NULL, NULL, '', b'0', NULL)`,
		`CREATE TABLE ledger (
		  id BIGINT NOT NULL PRIMARY KEY,
		  account VARCHAR(40) NOT NULL,
		  amount DECIMAL(18,4) NOT NULL,
		  note VARCHAR(200),
		  created DATETIME(6) NOT NULL,
		  UNIQUE KEY by_account (account, id)
		) CHARSET utf8mb4`,
		// A composite varchar key with negative numbers.
		`CREATE TABLE pairs (k VARCHAR(20) NOT NULL, n INT NOT NULL, v INT, PRIMARY KEY (k, n))`,
	)
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if b.Len() > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "(%d, 'acct-%d', %d.%04d, 'seed ✓ %d', '2024-01-01 00:00:00.%06d')", i, i%97, i, i%10000, i, i%1000000)
		if i%1000 == 0 || i == n {
			e.mustExec(c, "INSERT INTO ledger VALUES "+b.String())
			b.Reset()
		}
	}
	for i := -200; i < 200; i++ {
		if b.Len() > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "('k%03d', %d, %d)", (i+1000)%37, i, i*i)
	}
	e.mustExec(c, "INSERT INTO pairs VALUES "+b.String())
}

// myWriter changes the source continuously: inserts, updates, deletes and key changes.
type myWriter struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	nextID atomic.Int64
	err    atomic.Value
	txns   atomic.Int64
	// ledger is the table of the ledger's shape it writes, besides pairs.
	ledger string
}

func (e *myEnv) startMyWriter(firstID int64, workers int) *myWriter {
	return e.startMyWriterOn("ledger", firstID, workers)
}

// startMyWriterOn starts a writer on ledger, a table of the ledger's shape, and pairs.
func (e *myEnv) startMyWriterOn(ledger string, firstID int64, workers int) *myWriter {
	w := &myWriter{stop: make(chan struct{}), ledger: ledger}
	w.nextID.Store(firstID)
	for i := range workers {
		c := e.conn(e.srcDB)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer c.Close()
			r := rand.New(rand.NewPCG(uint64(i), 42))
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				if err := w.step(c, r); err != nil {
					var myErr *gomysql.MyError
					if asMyErr(err, &myErr) && (myErr.Code == 1213 || myErr.Code == 1205 || myErr.Code == 1062) {
						_, _ = c.Execute("ROLLBACK")
						continue
					}
					w.err.Store(err)
					return
				}
				w.txns.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return w
}

func asMyErr(err error, target **gomysql.MyError) bool {
	for err != nil {
		if m, ok := err.(*gomysql.MyError); ok {
			*target = m
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func (w *myWriter) step(c *client.Conn, r *rand.Rand) error {
	maxID := w.nextID.Load()
	id := 1 + r.Int64N(maxID)
	var qs []string
	switch r.IntN(10) {
	case 0, 1, 2:
		n := w.nextID.Add(1)
		qs = []string{fmt.Sprintf("INSERT INTO "+w.ledger+" VALUES (%d, 'acct-%d', %d.5, 'live', UTC_TIMESTAMP(6))", n, n%97, n)}
	case 3, 4, 5:
		qs = []string{fmt.Sprintf("UPDATE "+w.ledger+" SET amount = amount + 1.0001, note = CONCAT('upd ', %d) WHERE id = %d", r.IntN(1000), id)}
	case 6:
		qs = []string{fmt.Sprintf("DELETE FROM "+w.ledger+" WHERE id = %d", id)}
	case 7:
		// A primary key change, to a fresh id.
		n := w.nextID.Add(1)
		qs = []string{fmt.Sprintf("UPDATE "+w.ledger+" SET id = %d WHERE id = %d", n, id)}
	case 8:
		k, n := fmt.Sprintf("k%03d", r.IntN(37)), r.IntN(400)-200
		qs = []string{fmt.Sprintf("INSERT INTO pairs VALUES ('%s', %d, 1) ON DUPLICATE KEY UPDATE v = v + 1", k, n)}
	default:
		// A multi-statement transaction.
		n := w.nextID.Add(1)
		qs = []string{"BEGIN",
			fmt.Sprintf("INSERT INTO "+w.ledger+" VALUES (%d, 'acct-x', -1.25, NULL, UTC_TIMESTAMP(6))", n),
			fmt.Sprintf("UPDATE "+w.ledger+" SET amount = amount - 1.25 WHERE id = %d", id),
			fmt.Sprintf("DELETE FROM pairs WHERE k = 'k%03d' AND n = %d", r.IntN(37), r.IntN(400)-200),
			"COMMIT"}
	}
	for _, q := range qs {
		if _, err := c.Execute(q); err != nil {
			return err
		}
	}
	return nil
}

// halt stops the writer if it still runs.
func (w *myWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
		w.wg.Wait()
	}
}

func (w *myWriter) finish(t *testing.T) {
	t.Helper()
	w.halt()
	if err, _ := w.err.Load().(error); err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("writer committed %d transactions", w.txns.Load())
}

// waitCopying waits until the snapshot has copied at least rows rows.
func (e *env) waitCopying(d *proc, rows float64) {
	e.t.Helper()
	e.waitFor(d, "the snapshot to be under way", 2*time.Minute, func() bool {
		st, ok := e.status()
		if !ok {
			return false
		}
		snap, _ := st["snapshot"].(map[string]any)
		copied, _ := snap["rows_copied"].(float64)
		return copied >= rows
	})
}

// waitMyCaughtUp waits until the MySQL target's checkpoint contains the source's GTID position now.
func (e *myEnv) waitMyCaughtUp(d *proc) {
	e.t.Helper()
	dst := e.conn(e.dstDB)
	defer dst.Close()
	e.waitCheckpoint(d, func() (string, bool) {
		r, err := dst.Execute("SELECT position FROM _migrated.progress WHERE migration = ? AND stream = 'forward'", e.name)
		if err != nil || r.RowNumber() == 0 {
			return "", false
		}
		have, _ := r.GetString(0, 0)
		return have, true
	})
}

// waitCheckpoint waits until the forward checkpoint that read returns contains the MariaDB
// source's GTID position now.
func (e *myEnv) waitCheckpoint(d *proc, read func() (string, bool)) {
	e.t.Helper()
	c := e.conn("")
	defer c.Close()
	r, err := c.Execute("SELECT @@gtid_binlog_pos")
	if err != nil {
		e.t.Fatal(err)
	}
	want, _ := r.GetString(0, 0)
	wantSet, err := gomysql.ParseMariadbGTIDSet(want)
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitFor(d, "the stream to reach "+want, 3*time.Minute, func() bool {
		have, ok := read()
		if !ok {
			return false
		}
		set, err := gomysql.ParseMariadbGTIDSet(have)
		return err == nil && set.Contain(wantSet)
	})
}

var autoIncrementClause = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

// compareMy compares every table of the two databases row by row, reading both with plain
// SELECTs ordered by primary key: nothing of migrated's own reading code is involved.
func (e *myEnv) compareMy(extra ...string) {
	e.t.Helper()
	src, dst := e.conn(e.srcDB), e.conn(e.dstDB)
	defer src.Close()
	defer dst.Close()
	e.mustExec(src, "SET SESSION time_zone = '+00:00'")
	e.mustExec(dst, "SET SESSION time_zone = '+00:00'")
	tables := []struct{ name, order string }{{"every_type", "id"}, {"ledger", "id"}, {"pairs", "k, n"}}
	for _, x := range extra {
		tables = append(tables, struct{ name, order string }{x, "1"})
	}
	on := map[string]*client.Conn{e.srcDB: src, e.dstDB: dst}
	for _, table := range tables {
		q := "SELECT * FROM `%s`.`" + table.name + "` ORDER BY " + table.order
		sameRows(e.t, table.name, "source", myRows(e.t, src, fmt.Sprintf(q, e.srcDB)), "target", myRows(e.t, dst, fmt.Sprintf(q, e.dstDB)))
		// The schema too, once the secondary keys are built.
		show := func(db string) string {
			r, err := on[db].Execute(fmt.Sprintf("SHOW CREATE TABLE `%s`.`%s`", db, table.name))
			if err != nil {
				e.t.Fatal(err)
			}
			s, _ := r.GetString(0, 1)
			// The counters differ on purpose: a cutover moves the new side's past the old's.
			return autoIncrementClause.ReplaceAllString(s, "")
		}
		if s, d := show(e.srcDB), show(e.dstDB); s != d {
			e.t.Errorf("%s: schema differs:\nsource %s\ntarget %s", table.name, s, d)
		}
	}
}

// TestMariaDBMigrateKillAndResume moves a MariaDB database with every common type into another
// under a live writer; the daemon is killed once during the snapshot and once while streaming,
// and the target ends equal to the source.
func TestMariaDBMigrateKillAndResume(t *testing.T) {
	testenv.SkipIfShort(t)
	e := newMyEnv(t, "myresume")
	e.seedMySQL(30000)
	// A table whose row key is a unique key, with no primary key: its key is no extra one.
	c := e.conn(e.srcDB)
	e.mustExec(c, "CREATE TABLE tags (name VARCHAR(20) NOT NULL, v INT, UNIQUE KEY tag_name (name))",
		"INSERT INTO tags SELECT CONCAT('tag-', seq), seq FROM seq_1_to_5000")
	c.Close()
	w := e.startMyWriter(30000, 2)
	defer w.halt()

	d := e.start()
	e.waitCopying(d, 3000)
	d.kill()
	t.Log("killed during the snapshot")

	// A unique key added by hand on the target to a table not yet copied stops the copy, named.
	dst := e.conn(e.dstDB)
	r, err := dst.Execute("SELECT count(*) FROM `_migrated`.`snapshot` WHERE tbl = 'ledger' AND done")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := r.GetInt(0, 0); n > 0 {
		t.Log("ledger was copied before the kill: the unique key check is not exercised")
	} else {
		e.mustExec(dst, "ALTER TABLE ledger ADD UNIQUE KEY by_hand (id, amount)")
		d = e.start()
		e.waitFor(d, "the failed phase", time.Minute, func() bool { return e.phase() == "failed" })
		st, _ := e.status()
		msg, _ := st["error"].(string)
		for _, want := range []string{"ledger (by_hand)", "Drop them on the target", "restart migrated"} {
			if !strings.Contains(msg, want) {
				t.Errorf("status error lacks %q: %s", want, msg)
			}
		}
		d.kill()
		e.mustExec(dst, "ALTER TABLE ledger DROP KEY by_hand")
	}
	dst.Close()

	d = e.start()
	e.waitFor(d, "streaming", 5*time.Minute, func() bool { return e.phase() == "streaming" })
	time.Sleep(time.Second)
	d.kill()
	t.Log("killed while streaming")

	d = e.start()
	e.waitFor(d, "streaming again", 2*time.Minute, func() bool { return e.phase() == "streaming" })
	time.Sleep(time.Second)
	w.finish(t)
	e.waitMyCaughtUp(d)
	// migrated's own verify agrees; then finds a value changed behind its back on the target.
	if out := e.mustCLI("verify", "--wait"); !strings.Contains(out, "clean") {
		t.Errorf("verify: %s", out)
	}
	dst = e.conn(e.dstDB)
	e.mustExec(dst, "UPDATE every_type SET vc = 'changed' WHERE id = 2")
	out, code := e.cli("verify", "--wait")
	if code == 0 || !strings.Contains(out, "different") || !strings.Contains(out, "every_type") {
		t.Errorf("verify after a change on the target: exit %d:\n%s", code, out)
	}
	e.mustExec(dst, "UPDATE every_type SET vc = NULL WHERE id = 2")
	dst.Close()
	e.stop(d)
	e.compareMy("tags")
}

// TestMariaDBParallelChunks copies two tables of 30,000 rows at once, each worker writing its
// chunks on its own target session and reading its next chunk meanwhile, while two writers
// insert, update, delete and re-key rows in both tables, and so inside chunks in flight; the
// tables then compare equal row by row. It is coverage of the parallel path on a real server,
// not a sharp test of its ordering: the windows in which an ordering fault shows are short and
// most of them are mended by a later write (it passed twice with the hold-back removed);
// internal/snapshot's TestReconcilerConverges is the sharp one.
func TestMariaDBParallelChunks(t *testing.T) {
	testenv.SkipIfShort(t)
	e := newMyEnv(t, "mychunks")
	e.seedMySQL(30000)
	c := e.conn(e.srcDB)
	e.mustExec(c, "CREATE TABLE ledger2 LIKE ledger", "INSERT INTO ledger2 SELECT * FROM ledger")
	c.Close()
	w := e.startMyWriter(30000, 2)
	defer w.halt()
	w2 := e.startMyWriterOn("ledger2", 30000, 2)
	defer w2.halt()

	d := e.start()
	e.waitFor(d, "streaming", 5*time.Minute, func() bool { return e.phase() == "streaming" })
	w.finish(t)
	w2.finish(t)
	e.waitMyCaughtUp(d)
	e.stop(d)
	e.compareMy("ledger2")
}

// TestMariaDBToPostgres moves a MariaDB database with every common type into PostgreSQL under
// a live writer, with a kill during the snapshot, and compares the two sides value by value.
func TestMariaDBToPostgres(t *testing.T) {
	testenv.SkipIfShort(t)
	e := newMyEnv(t, "my2pg")
	pg := testenv.RequirePostgres(t)
	dst, err := pg.CreateDB(context.Background(), "my2pg_dst")
	if err != nil {
		t.Fatal(err)
	}
	e.dstDSN = dst
	e.writeMyConfig("")
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "target:\n  engine: mysql", "target:\n  engine: postgres", 1)), 0o600)
	e.seedMySQL(20000)
	// An AUTO_INCREMENT table whose counter is past its largest id.
	e.seedOrders()
	src := e.conn(e.srcDB)
	for i := range 30 {
		e.mustExec(src, fmt.Sprintf("INSERT INTO orders (acct, amount, side) VALUES (%d, %d, 'source')", 1+i%20, i))
	}
	e.mustExec(src, "DELETE FROM orders WHERE id > 25")
	// A unique key besides the primary key, which the target gets only after the copy.
	e.mustExec(src, "CREATE TABLE handles (id INT PRIMARY KEY, handle VARCHAR(20) NOT NULL, UNIQUE KEY by_handle (handle))")
	e.mustExec(src, "INSERT INTO handles VALUES (1, 'x'), (2, 'z')")
	src.Close()
	w := e.startMyWriter(20000, 2)
	defer w.halt()

	d := e.start()
	e.waitCopying(d, 2000)
	d.kill()
	d = e.start()
	e.waitFor(d, "streaming", 5*time.Minute, func() bool { return e.phase() == "streaming" })
	time.Sleep(time.Second)
	w.finish(t)
	// Row 2 takes the handle row 1 gives up, in one transaction: the target must write the
	// rows in the source's order, not fold row 2's two writes into one ahead of row 1's.
	src = e.conn(e.srcDB)
	e.mustExec(src, "BEGIN")
	e.mustExec(src, "UPDATE handles SET handle = 'w' WHERE id = 2")
	e.mustExec(src, "UPDATE handles SET handle = 'v' WHERE id = 1")
	e.mustExec(src, "UPDATE handles SET handle = 'x' WHERE id = 2")
	e.mustExec(src, "COMMIT")
	src.Close()
	e.waitPGCaughtUp(d)
	if out := e.mustCLI("verify", "--wait"); !strings.Contains(out, "clean") {
		t.Errorf("verify: %s", out)
	}
	// Complete stops the stream, leaves no watermark row of this migration on the source, and
	// readies the target's identities for the application's inserts.
	out := e.mustCLI("complete", "--confirm", e.name)
	if p := e.phase(); p != "completed" || !strings.Contains(out, "1 id counter(s)") {
		t.Errorf("phase after complete: %s:\n%s", p, out)
	}
	if n, err := e.m.QueryString(context.Background(), "SELECT count(*) FROM _migrated.watermark WHERE mark LIKE '%my2pg|%'"); err != nil || n != "0" {
		t.Errorf("after complete the source holds %s watermark rows of the migration (%v)", n, err)
	}
	e.stop(d)
	var next int64
	pgc := e.connect(dst)
	defer pgc.Close(context.Background())
	if err := pgc.QueryRow(context.Background(), fmt.Sprintf(`INSERT INTO %q.orders (acct, amount, side) VALUES (1, 1, 'target') RETURNING id`, e.srcDB)).Scan(&next); err != nil || next != 31 {
		t.Errorf("the first id the target hands out after complete: %d (%v), want 31, the source's AUTO_INCREMENT", next, err)
	}

	my := e.conn("")
	defer my.Close()
	e.mustExec(my, "SET SESSION time_zone = '+00:00'")
	pc := e.connect(dst)
	defer pc.Close(context.Background())
	for _, table := range []string{"every_type", "ledger", "pairs"} {
		src := myRows(t, my, fmt.Sprintf(myTypesSQL[table], "`"+e.srcDB+"`"))
		got := pgRows(t, pc, fmt.Sprintf(pgTypesSQL[table], `"`+e.srcDB+`"`))
		sameRows(t, table, "mariadb", src, "postgresql", got)
	}
	sameRows(t, "handles", "mariadb", myRows(t, my, "SELECT id, handle FROM `"+e.srcDB+"`.handles ORDER BY id"),
		"postgresql", pgRows(t, pc, `SELECT id, handle FROM "`+e.srcDB+`".handles ORDER BY id`))
}

// pgText prints a value PostgreSQL returned the way MariaDB prints the same value.
func pgText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case time.Time:
		return x.Format("2006-01-02")
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case pgtype.Numeric:
		b, _ := x.MarshalJSON()
		return string(b)
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// waitPGCaughtUp waits until the PostgreSQL target's checkpoint contains the source's GTIDs.
func (e *myEnv) waitPGCaughtUp(d *proc) {
	e.t.Helper()
	pc := e.connect(e.dstDSN)
	defer pc.Close(context.Background())
	e.waitCheckpoint(d, func() (string, bool) {
		var have string
		err := pc.QueryRow(context.Background(), "SELECT position FROM _migrated.progress WHERE migration = $1 AND stream = 'forward'", e.name).Scan(&have)
		return have, err == nil
	})
}

// TestMySQLPreflightRefusals: `migrated check` for a MariaDB source with statement binlogs,
// a minimal row image, a table without a key and a column PostgreSQL cannot hold exactly lists
// every problem with its fix, exits non-zero, and leaves both sides untouched.
func TestMySQLPreflightRefusals(t *testing.T) {
	testenv.SkipIfShort(t)
	if os.Getenv(testenv.MariaDBURLEnv) != "" {
		t.Skip("needs its own server with statement binlogs")
	}
	m, err := testenv.StartMariaDB(testenv.MariaDBOptions{Settings: map[string]string{"binlog_format": "STATEMENT", "binlog_row_image": "MINIMAL"}})
	if err != nil {
		testenv.SkipOrFail(t, err)
	}
	defer m.Stop()
	ctx := context.Background()
	if err := m.CreateDB(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE app.no_key (a INT, b VARCHAR(10))",
		"CREATE TABLE app.places (id INT PRIMARY KEY, spot POINT NOT NULL)",
		"CREATE TABLE app.fine (id INT PRIMARY KEY, v TEXT)",
	} {
		if err := m.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	pg := testenv.RequirePostgres(t)
	dst, err := pg.CreateDB(ctx, "mycheck_dst")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "m.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("name: mycheck\nsource:\n  engine: mysql\n  dsn: %s\ntarget:\n  engine: postgres\n  dsn: %s\n", m.DSN("app"), dst)), 0o600)
	out, code := runCLI(t, "check", "--config", config)
	if code == 0 {
		t.Fatalf("check passed:\n%s", out)
	}
	for _, want := range []string{"binlog_format", "SET GLOBAL binlog_format", "binlog_row_image", "app.no_key", "app.places.spot", "tables.types"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "app.fine") {
		t.Errorf("check names a table with no problem:\n%s", out)
	}
	if n, err := m.QueryString(ctx, "SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '_migrated'"); err != nil || n != "0" {
		t.Errorf("check created _migrated on the source (%s, %v)", n, err)
	}
	t.Logf("check output:\n%s", out)
}

// TestPostgresToMariaDB moves a PostgreSQL database with every type that maps exactly into
// MariaDB under a live writer (inserts, updates, deletes, key changes), with a kill during the
// snapshot and one while streaming, and compares the two sides value by value.
func TestPostgresToMariaDB(t *testing.T) {
	testenv.SkipIfShort(t)
	e := newMyEnv(t, "pg2my")
	pg := testenv.RequirePostgres(t)
	ctx := context.Background()
	src, err := pg.CreateDB(ctx, "pg2my_src")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropSlots(t, src) })
	e.srcDSN = src
	e.writeMyConfig("")
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "source:\n  engine: mysql", "source:\n  engine: postgres", 1)), 0o600)
	e.exec(src, pgKindsSQL+`
CREATE TABLE acct (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(18,2) NOT NULL, updated timestamptz NOT NULL);
CREATE UNIQUE INDEX acct_owner ON acct (owner, id);
INSERT INTO acct SELECT g, 'owner' || g, g * 10, now() FROM generate_series(1, 20000) g;
-- A partitioned table becomes one MySQL table; a row moves between partitions when its region
-- changes. The default partition is partitioned again.
CREATE TABLE ev (region int NOT NULL, id bigint NOT NULL, note text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE ev_1 PARTITION OF ev FOR VALUES IN (1);
CREATE TABLE ev_2 PARTITION OF ev FOR VALUES IN (2);
CREATE TABLE ev_rest PARTITION OF ev DEFAULT PARTITION BY RANGE (id);
CREATE TABLE ev_rest_lo PARTITION OF ev_rest FOR VALUES FROM (MINVALUE) TO (3000);
CREATE TABLE ev_rest_hi PARTITION OF ev_rest FOR VALUES FROM (3000) TO (MAXVALUE);
CREATE INDEX ev_note ON ev (note);
INSERT INTO ev SELECT g % 4, g, 'note ' || g FROM generate_series(1, 6000) g;`)
	// Rows that can hold out-of-line values need their whole old rows logged: preflight says
	// so, naming the statement, which then lets the migration start.
	// A partitioned table's partitions log their own rows: each is named, the root is not.
	if out, code := runCLI(t, "check", "--config", e.config); code == 0 ||
		!strings.Contains(out, "ALTER TABLE public.acct REPLICA IDENTITY FULL") || !strings.Contains(out, "ALTER TABLE public.kinds REPLICA IDENTITY FULL") ||
		!strings.Contains(out, "ALTER TABLE public.ev_1 REPLICA IDENTITY FULL") || !strings.Contains(out, "ALTER TABLE public.ev_rest_hi REPLICA IDENTITY FULL") ||
		strings.Contains(out, "ALTER TABLE public.ev REPLICA") || strings.Contains(out, "ALTER TABLE public.ev_rest REPLICA") {
		t.Fatalf("check with text columns and the default replica identity: exit %d:\n%s", code, out)
	}
	e.exec(src, "ALTER TABLE public.acct REPLICA IDENTITY FULL; ALTER TABLE public.kinds REPLICA IDENTITY FULL; "+
		"ALTER TABLE public.ev_1 REPLICA IDENTITY FULL; ALTER TABLE public.ev_2 REPLICA IDENTITY FULL; "+
		"ALTER TABLE public.ev_rest_lo REPLICA IDENTITY FULL; ALTER TABLE public.ev_rest_hi REPLICA IDENTITY FULL")

	// A writer on PostgreSQL.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr atomic.Value
	var next atomic.Int64
	next.Store(20000)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := e.connect(src)
			defer conn.Close(ctx)
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := 1 + r.Int64N(next.Load())
				var q string
				switch r.IntN(6) {
				case 0, 1:
					n := next.Add(1)
					q = fmt.Sprintf("INSERT INTO acct VALUES (%d, 'owner%d', %d.25, now())", n, n, n)
				case 2, 3:
					q = fmt.Sprintf("UPDATE acct SET balance = balance + 1.5, updated = now() WHERE id = %d", id)
				case 4:
					q = fmt.Sprintf("DELETE FROM acct WHERE id = %d", id)
				default:
					n := next.Add(1)
					q = fmt.Sprintf("UPDATE acct SET id = %d WHERE id = %d", n, id)
				}
				if _, err := conn.Exec(ctx, q); err != nil {
					werr.Store(err)
					return
				}
				ev := []string{
					fmt.Sprintf("INSERT INTO ev VALUES (%d, %d, 'new') ON CONFLICT DO NOTHING", r.IntN(4), 6000+r.IntN(100000)),
					fmt.Sprintf("UPDATE ev SET note = note || '+' WHERE id = %d", 1+r.IntN(6000)),
					fmt.Sprintf("UPDATE ev SET region = (region + 1) %% 4 WHERE id = %d", 1+r.IntN(6000)),
					fmt.Sprintf("DELETE FROM ev WHERE id = %d", 1+r.IntN(6000)),
				}[r.IntN(4)]
				if _, err := conn.Exec(ctx, ev); err != nil {
					werr.Store(err)
					return
				}
				if r.IntN(10) == 0 {
					k := r.IntN(3000) + 1
					if _, err := conn.Exec(ctx, "UPDATE kinds SET i = i + 1, t = t || '!', bin = bin || '\\x00'::bytea, tstz = now() WHERE id = $1", k); err != nil {
						werr.Store(err)
						return
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	finish := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		wg.Wait()
		if err, _ := werr.Load().(error); err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	defer finish()

	d := e.start()
	e.waitCopying(d, 2000)
	d.kill()
	d = e.start()
	e.waitFor(d, "streaming", 5*time.Minute, func() bool { return e.phase() == "streaming" })
	time.Sleep(time.Second)
	d.kill()
	d = e.start()
	e.waitFor(d, "streaming again", 2*time.Minute, func() bool { return e.phase() == "streaming" })
	finish()
	e.waitPGSourceCaughtUp(d, src)
	my := e.conn("")
	defer my.Close()
	if out := e.mustCLI("verify", "--wait"); !strings.Contains(out, "clean") {
		t.Errorf("verify: %s", out)
	}
	// Complete stops the stream and gives the slot and publication back to the source.
	e.mustCLI("complete", "--confirm", e.name)
	if p := e.phase(); p != "completed" {
		t.Errorf("phase after complete: %s", p)
	}
	pc := e.connect(src)
	var held int
	if err := pc.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'migrated_pg2my') +
	  (SELECT count(*) FROM pg_publication WHERE pubname = 'migrated_pg2my')`).Scan(&held); err != nil || held != 0 {
		t.Errorf("after complete the source still holds %d slot/publication (%v)", held, err)
	}
	pc.Close(ctx)
	e.stop(d)

	pc = e.connect(src)
	defer pc.Close(ctx)
	e.mustExec(my, "SET SESSION time_zone = '+00:00'")
	for _, table := range []string{"kinds", "acct", "ev"} {
		want := pgRows(t, pc, pgCompare[table])
		got := myRows(t, my, fmt.Sprintf(myCompare[table], "`"+e.dstDB+"`"))
		if !sameRows(t, table, "postgresql", want, "mariadb", got) {
			b, _ := os.ReadFile(filepath.Join(e.dir, "daemon.log"))
			t.Logf("daemon log:\n%s", b[max(0, len(b)-8000):])
		}
	}
}

// myTypesSQL and pgTypesSQL read the tables of seedMySQL in one form on MariaDB and on
// PostgreSQL (each takes the quoted database or schema).
var myTypesSQL = map[string]string{
	"every_type": "SELECT id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, c, vc, tx, HEX(bin), HEX(vb), HEX(bl), dt, dtm, ts, yr+0, js, en, st, CAST(b1 AS UNSIGNED), CAST(b64 AS UNSIGNED), f, d, CAST(TIME_TO_SEC(tm) AS SIGNED) FROM %s.every_type ORDER BY id",
	"ledger":     "SELECT id, account, amount, note, created FROM %s.ledger ORDER BY id",
	"pairs":      "SELECT k, n, v FROM %s.pairs ORDER BY k, n",
}
var pgTypesSQL = map[string]string{
	"every_type": `SELECT id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, c, vc, tx, upper(encode(bin, 'hex')), upper(encode(vb, 'hex')), upper(encode(bl, 'hex')), dt,
	  to_char(dtm, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), yr, js, en, st, b1, b64, f, d, extract(epoch FROM tm)::bigint FROM %s.every_type ORDER BY id`,
	"ledger": `SELECT id, account, amount, note, to_char(created, 'YYYY-MM-DD HH24:MI:SS.US') FROM %s.ledger ORDER BY id`,
	"pairs":  `SELECT k, n, v FROM %s.pairs ORDER BY k COLLATE "C", n`,
}

// waitPGSourceCaughtUp waits until the MariaDB target's checkpoint of the stream from the
// PostgreSQL source src reaches the source's WAL insert position at the call.
func (e *myEnv) waitPGSourceCaughtUp(d *proc, src string) {
	e.t.Helper()
	ctx := context.Background()
	pc := e.connect(src)
	var lsn string
	if err := pc.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	pc.Close(ctx)
	want, err := postgresLSN(lsn)
	if err != nil {
		e.t.Fatal(err)
	}
	my := e.conn(e.dstDB)
	defer my.Close()
	e.waitFor(d, "the stream to reach "+lsn, 3*time.Minute, func() bool {
		r, err := my.Execute("SELECT position FROM _migrated.progress WHERE migration = ? AND stream = 'forward'", e.name)
		if err != nil || r.RowNumber() == 0 {
			return false
		}
		have, _ := r.GetString(0, 0)
		h, err := postgresLSN(have)
		return err == nil && h >= want
	})
}

// dropSlots ends the sessions on the replication slots of dsn's database and drops the slots,
// which a test that failed half-way leaves behind.
func dropSlots(t *testing.T, dsn string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Logf("drop slots: %v", err)
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL`)
	time.Sleep(200 * time.Millisecond)
	conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`)
}

// pgKindsSQL creates and fills a table of every common PostgreSQL type, for the migrations from
// PostgreSQL into MariaDB.
const pgKindsSQL = `
CREATE TABLE kinds (
  id bigint PRIMARY KEY, s smallint, i integer, b bigint, n numeric(20,4), r real, d double precision,
  flag boolean, t text, vc varchar(50), ch char(5), bin bytea, dt date, ts timestamp(6), tstz timestamptz(6),
  tm time(6), u uuid, js json, jsb jsonb, total bigint GENERATED ALWAYS AS (i * 2) STORED
);
CREATE INDEX kinds_vc ON kinds (vc);
INSERT INTO kinds (id, s, i, b, n, r, d, flag, t, vc, ch, bin, dt, ts, tstz, tm, u, js, jsb)
SELECT g, (g % 32000)::smallint, g * 7, g::bigint * 1000000007, g * 1.2345, g / 3.0, g * 1.0e-300, g % 2 = 0,
       'héllo wörld ✓ 🎉 ' || g, 'vc' || g, 'ab', decode(md5(g::text) || '00', 'hex'), DATE '2000-01-01' + g,
       TIMESTAMP '2024-02-29 23:59:59.123456' + g * interval '1 second',
       TIMESTAMPTZ '2024-06-01 12:00:00.5+05:30' + g * interval '1 minute', TIME '23:59:59.999999',
       md5(g::text)::uuid, json_build_object('g', g, 'f', 1.5), jsonb_build_object('g', g, 'ok', true)
  FROM generate_series(1, 3000) g;
INSERT INTO kinds (id) VALUES (0);`

// pgCompare and myCompare read the tables of a PostgreSQL → MariaDB test in one form on both
// sides (myCompare takes the MariaDB database).
var pgCompare = map[string]string{
	"kinds": `SELECT id, s, i, b, n, r::float8, d, CASE WHEN flag THEN 1 WHEN NOT flag THEN 0 END, t, vc, rtrim(ch), upper(encode(bin, 'hex')), dt,
	  to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), tm::text, u::text, js::text, jsb::text FROM kinds ORDER BY id`,
	"acct": `SELECT id, owner, balance, to_char(updated AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM acct ORDER BY id`,
	"ev":   `SELECT region, id, note FROM ev ORDER BY region, id`,
}
var myCompare = map[string]string{
	"kinds": "SELECT id, s, i, b, n, CAST(r AS DOUBLE), d, flag, t, vc, ch, HEX(bin), dt, ts, tstz, tm, u, js, jsb FROM %s.kinds ORDER BY id",
	"acct":  "SELECT id, owner, balance, updated FROM %s.acct ORDER BY id",
	"ev":    "SELECT region, id, note FROM %s.ev ORDER BY region, id",
}

// myRows reads a query's rows from MariaDB, one line per row: NULL as "NULL", strings as they
// are, doubles in their shortest exact form.
func myRows(t *testing.T, c *client.Conn, q string) []string {
	t.Helper()
	r, err := c.Execute(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var rows []string
	for i := range r.RowNumber() {
		var cols []string
		for j := range r.ColumnNumber() {
			v, _ := r.GetValue(i, j)
			switch x := v.(type) {
			case nil:
				cols = append(cols, "NULL")
			case []byte:
				cols = append(cols, string(x))
			case float64:
				cols = append(cols, strconv.FormatFloat(x, 'g', -1, 64))
			default:
				cols = append(cols, fmt.Sprint(x))
			}
		}
		rows = append(rows, strings.Join(cols, "|"))
	}
	return rows
}

// pgRows reads a query's rows from PostgreSQL, each value printed as MariaDB prints it.
func pgRows(t *testing.T, conn *pgx.Conn, q string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, v := range vals {
			cols = append(cols, pgText(v))
		}
		out = append(out, strings.Join(cols, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameRows reports the rows that differ between two sides (the first five) and whether none does.
func sameRows(t *testing.T, table, aName string, a []string, bName string, b []string) bool {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%s: %d rows on %s, %d on %s", table, len(a), aName, len(b), bName)
	}
	diffs := 0
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			if diffs++; diffs <= 5 {
				t.Errorf("%s row %d differs:\n  %-10s %q\n  %-10s %q", table, i, aName, a[i], bName, b[i])
			}
		}
	}
	if diffs > 0 || len(a) != len(b) {
		return false
	}
	if len(a) > 0 {
		t.Logf("%s: %d rows equal; first: %s", table, len(a), a[0])
	}
	return true
}

// postgresLSN parses "X/Y".
func postgresLSN(s string) (uint64, error) {
	var hi, lo uint64
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		return 0, err
	}
	return hi<<32 | lo, nil
}

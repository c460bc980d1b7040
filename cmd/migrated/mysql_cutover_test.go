package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/testenv"
)

// newMyEnvTwo is a MariaDB → MariaDB migration between two servers of the test's own, with an
// application account that a fence stops (it lacks READ ONLY ADMIN).
func newMyEnvTwo(t *testing.T, name string) *myEnv {
	t.Helper()
	testenv.SkipIfShort(t)
	src, dst := appServer(t, "shop"), appServer(t, "shop_new")
	e := &myEnv{m: src, dm: dst, srcDB: "shop", dstDB: "shop_new", serverAddr: src.Addr()}
	e.srcDSN, e.dstDSN = e.m.DSN(e.srcDB), e.dm.DSN(e.dstDB)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e.env = &env{t: t, name: name, dir: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", port)}
	e.writeMyConfig(myCutoverConfig(e.dir))
	if err := os.WriteFile(filepath.Join(e.dir, "route"), []byte("source\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// myCutoverConfig is the config of the MySQL cutover tests: a hook that writes the side taking
// writes into dir/route, generous lag, and a gap of 1000 ids at each switch.
func myCutoverConfig(dir string) string {
	return fmt.Sprintf(`cutover:
  max-lag: 30s
  timeout: 15s
  verify-max-age: 1h
  sequence-gap: 1000
  hooks:
    exec: ["/bin/sh", "-c", "echo $MIGRATED_WRITABLE > %[1]s/route.tmp && mv %[1]s/route.tmp %[1]s/route"]
verify:
  chunk-rows: 500
`, dir)
}

// readOnly reports whether the server holding db is fenced.
func (e *myEnv) readOnly(db string) bool {
	e.t.Helper()
	c := e.conn(db)
	defer c.Close()
	r, err := c.Execute("SELECT @@GLOBAL.read_only")
	if err != nil {
		e.t.Fatal(err)
	}
	v, _ := r.GetInt(0, 0)
	return v == 1
}

// seedOrders creates the tables the routed writer keeps consistent: every order's amount is in
// its account's balance, in one transaction.
func (e *myEnv) seedOrders() {
	c := e.conn(e.srcDB)
	defer c.Close()
	e.mustExec(c,
		"CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)",
		"CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, acct INT NOT NULL, amount INT NOT NULL, side VARCHAR(8) NOT NULL, KEY by_acct (acct))")
	for i := 1; i <= 20; i++ {
		e.mustExec(c, fmt.Sprintf("INSERT INTO accounts VALUES (%d, 0)", i))
	}
}

// routedWriter is the application of a cutover test: it writes to the side the routing hook
// names, as the application account, and keeps the order ids whose commit it was told of.
type routedWriter struct {
	e    *myEnv
	stop chan struct{}
	wg   sync.WaitGroup
	err  atomic.Value

	mu      sync.Mutex
	route   string
	epoch   int               // how many times the route changed
	ids     map[int64]int     // acknowledged order id → epoch of its insert
	acks    map[string]int    // acknowledged transactions per side
	first   map[int]int64     // smallest id inserted in each epoch
	last    map[int]int64     // largest id inserted in each epoch
	open    map[string]string // side → database
	refused atomic.Int64
}

func (e *myEnv) startRoutedWriter(workers int) *routedWriter {
	w := &routedWriter{e: e, stop: make(chan struct{}), route: "source", ids: map[int64]int{}, acks: map[string]int{},
		first: map[int]int64{}, last: map[int]int64{}, open: map[string]string{"source": e.srcDB, "target": e.dstDB}}
	for i := range workers {
		w.wg.Add(1)
		go w.run(rand.New(rand.NewPCG(uint64(i), 7)))
	}
	return w
}

// side reads the route the hook wrote, and counts its changes.
func (w *routedWriter) side() (string, int) {
	b, err := os.ReadFile(filepath.Join(w.e.dir, "route"))
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := strings.TrimSpace(string(b)); err == nil && s != w.route && (s == "source" || s == "target") {
		w.route = s
		w.epoch++
	}
	return w.route, w.epoch
}

// appConn is the writer's session on one side: MariaDB, or the PostgreSQL target of a
// MariaDB → PostgreSQL migration.
type appConn interface {
	exec(q string) error
	// insert runs an INSERT and returns the id it gave the row.
	insert(q string) (int64, error)
	// pair reads two integers of one row; ok is false for no row.
	pair(q string) (a, b int64, ok bool, err error)
	// refused reports whether err says for sure that nothing was committed.
	refused(err error) bool
	close()
}

type myApp struct{ c *client.Conn }

func (m myApp) exec(q string) error { _, err := m.c.Execute(q); return err }
func (m myApp) insert(q string) (int64, error) {
	r, err := m.c.Execute(q)
	if err != nil {
		return 0, err
	}
	return int64(r.InsertId), nil
}
func (m myApp) pair(q string) (int64, int64, bool, error) {
	r, err := m.c.Execute(q)
	if err != nil || r.RowNumber() == 0 {
		return 0, 0, false, err
	}
	a, _ := r.GetInt(0, 0)
	b, _ := r.GetInt(0, 1)
	return a, b, true, nil
}
func (m myApp) refused(err error) bool {
	var myErr *gomysql.MyError
	return asMyErr(err, &myErr)
}
func (m myApp) close() { m.c.Close() }

type pgApp struct{ c *pgx.Conn }

func (p pgApp) exec(q string) error {
	_, err := p.c.Exec(context.Background(), q)
	return err
}
func (p pgApp) insert(q string) (id int64, err error) {
	err = p.c.QueryRow(context.Background(), q+" RETURNING id").Scan(&id)
	return id, err
}
func (p pgApp) pair(q string) (a, b int64, ok bool, err error) {
	err = p.c.QueryRow(context.Background(), q).Scan(&a, &b)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, false, nil
	}
	return a, b, err == nil, err
}
func (p pgApp) refused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "25006" // read-only transaction
}
func (p pgApp) close() { p.c.Close(context.Background()) }

// dial opens the application's session on side.
func (w *routedWriter) dial(side string) (appConn, error) {
	if dsn, schema := w.e.pgApp(side); dsn != "" {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(context.Background(), "SET search_path = "+pgx.Identifier{schema}.Sanitize()); err != nil {
			c.Close(context.Background())
			return nil, err
		}
		return pgApp{c}, nil
	}
	m := w.e.m
	if side == "target" && w.e.dm != nil {
		m = w.e.dm
	}
	c, err := client.Connect(m.Addr(), "app", "app", w.open[side])
	if err != nil {
		return nil, err
	}
	return myApp{c}, nil
}

// pgApp returns the DSN and the schema of side when it is PostgreSQL, or "".
func (e *myEnv) pgApp(side string) (dsn, schema string) {
	switch {
	case side == "target" && e.pgDst != "":
		return e.pgDst, e.srcDB
	case side == "source" && e.pgSrc != "":
		return e.pgSrc, "public"
	}
	return "", ""
}

func (w *routedWriter) run(r *rand.Rand) {
	defer w.wg.Done()
	var c appConn
	var on string
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		side, epoch := w.side()
		if c == nil || on != side {
			if c != nil {
				c.close()
			}
			var err error
			if c, err = w.dial(side); err != nil {
				c = nil
				w.refused.Add(1)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			on = side
		}
		if err := w.step(c, r, side, epoch); err != nil {
			if _, ok := err.(fatalWrite); ok {
				w.err.Store(err)
				return
			}
			// Refused by the fence, or the session was ended: not committed; try again on
			// whatever side the route names now.
			w.refused.Add(1)
			c.close()
			c = nil
			time.Sleep(20 * time.Millisecond)
			continue
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type fatalWrite struct{ error }

// step runs one transaction: an order (insert, and the balance), a cancelled order (delete, and
// the balance back), or an order moved to a new id. It returns an error when nothing committed;
// a COMMIT whose outcome is unknown forgets the ids it touched.
func (w *routedWriter) step(c appConn, r *rand.Rand, side string, epoch int) error {
	if err := c.exec("BEGIN"); err != nil {
		return err
	}
	var touched []int64
	var inserted int64
	switch k := r.IntN(10); {
	case k < 7:
		acct, amount := 1+r.IntN(20), r.IntN(1000)-300
		id, err := c.insert(fmt.Sprintf("INSERT INTO orders (acct, amount, side) VALUES (%d, %d, '%s')", acct, amount, side))
		if err != nil {
			return err
		}
		inserted = id
		if err := c.exec(fmt.Sprintf("UPDATE accounts SET balance = balance + %d WHERE id = %d", amount, acct)); err != nil {
			return err
		}
	default:
		id, ok := w.pick(r)
		if !ok {
			_ = c.exec("ROLLBACK")
			return nil
		}
		touched = []int64{id}
		acct, amount, found, err := c.pair(fmt.Sprintf("SELECT acct, amount FROM orders WHERE id = %d FOR UPDATE", id))
		if err != nil {
			return err
		}
		if !found {
			_ = c.exec("ROLLBACK")
			return nil
		}
		if k == 7 {
			if err := c.exec(fmt.Sprintf("DELETE FROM orders WHERE id = %d", id)); err != nil {
				return err
			}
			if err := c.exec(fmt.Sprintf("UPDATE accounts SET balance = balance - %d WHERE id = %d", amount, acct)); err != nil {
				return err
			}
		} else {
			if id >= 1e9 {
				_ = c.exec("ROLLBACK")
				return nil
			}
			if err := c.exec(fmt.Sprintf("UPDATE orders SET id = %d WHERE id = %d", id+1e9, id)); err != nil {
				return err
			}
			touched = append(touched, id+1e9)
		}
	}
	err := c.exec("COMMIT")
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if c.refused(err) {
			return err // refused: nothing committed
		}
		for _, id := range touched { // unknown outcome
			delete(w.ids, id)
		}
		return err
	}
	w.acks[side]++
	if inserted != 0 {
		w.ids[inserted] = epoch
		if f, ok := w.first[epoch]; !ok || inserted < f {
			w.first[epoch] = inserted
		}
		w.last[epoch] = max(w.last[epoch], inserted)
	}
	if len(touched) == 1 { // deleted
		delete(w.ids, touched[0])
	}
	if len(touched) == 2 {
		w.ids[touched[1]] = w.ids[touched[0]]
		delete(w.ids, touched[0])
	}
	return nil
}

func (w *routedWriter) pick(r *rand.Rand) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := r.IntN(len(w.ids) + 1)
	for id := range w.ids {
		if n == 0 {
			return id, true
		}
		n--
	}
	return 0, false
}

func (w *routedWriter) acked(side string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acks[side]
}

// halt stops the writer if it still runs.
func (w *routedWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
		w.wg.Wait()
	}
}

func (w *routedWriter) finish(t *testing.T) {
	t.Helper()
	w.halt()
	if err, _ := w.err.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("routed writer: %v acknowledged per side, %d writes refused and retried", w.acks, w.refused.Load())
}

// waitAcked waits until the writer has n more acknowledged transactions on side.
func (e *myEnv) waitAcked(d *proc, w *routedWriter, side string, n int) {
	e.t.Helper()
	want := w.acked(side) + n
	e.waitFor(d, fmt.Sprintf("%d writes on the %s", n, side), time.Minute, func() bool { return w.acked(side) >= want })
}

// checkLedger checks, on db, what the application relies on: every acknowledged order is there,
// and every balance is the sum of its account's orders.
func (e *myEnv) checkLedger(w *routedWriter, db string) {
	e.t.Helper()
	c := e.conn(db)
	defer c.Close()
	r, err := c.Execute("SELECT id FROM orders")
	if err != nil {
		e.t.Fatal(err)
	}
	have := map[int64]bool{}
	for i := range r.RowNumber() {
		id, _ := r.GetInt(i, 0)
		have[id] = true
	}
	lost := 0
	for id := range w.ids {
		if !have[id] {
			lost++
			if lost <= 5 {
				e.t.Errorf("%s: acknowledged order %d is missing", db, id)
			}
		}
	}
	if lost > 0 {
		e.t.Errorf("%s: %d acknowledged orders lost", db, lost)
	}
	r, err = c.Execute("SELECT a.id, a.balance, coalesce(sum(o.amount), 0) FROM accounts a LEFT JOIN orders o ON o.acct = a.id GROUP BY a.id, a.balance HAVING a.balance <> coalesce(sum(o.amount), 0)")
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range r.RowNumber() {
		id, _ := r.GetInt(i, 0)
		bal, _ := r.GetInt(i, 1)
		sum, _ := r.GetString(i, 2)
		e.t.Errorf("%s: account %d balance %d, orders sum %s: a transaction was applied in part", db, id, bal, sum)
	}
}

// TestMariaDBCutoverAndRollback moves a MariaDB database to another server under a live writer,
// cuts over with the writer following the routing hook, writes on the new side (through a kill
// and restart of migrated in the dual-write phase), rolls back, writes on the old side again,
// and ends with both sides equal and nothing the application was told of lost.
func TestMariaDBCutoverAndRollback(t *testing.T) {
	e := newMyEnvTwo(t, "mycut")
	e.seedMySQL(5000)
	e.seedOrders()
	w := e.startMyWriter(5000, 2)
	defer w.halt()
	d := e.start()
	e.waitFor(d, "streaming", 5*time.Minute, func() bool { return e.phase() == "streaming" })
	w.finish(t)
	e.waitMyCaughtUp(d)
	if out := e.mustCLI("verify", "--wait"); !strings.Contains(out, "clean") {
		t.Fatalf("verify: %s", out)
	}

	rw := e.startRoutedWriter(2)
	defer rw.halt()
	e.waitAcked(d, rw, "source", 50)

	// A paused stream refuses the cutover, and resumes.
	if out := e.mustCLI("pause"); e.statusField("paused") != true {
		t.Fatalf("after pause: status paused = %v:\n%s", e.statusField("paused"), out)
	}
	if out, code := e.cli("cutover", "--confirm", e.name); code == 0 || !strings.Contains(out, "paused") {
		t.Fatalf("cutover while paused: exit %d, want a refusal naming the pause:\n%s", code, out)
	}
	e.mustCLI("resume")

	// A crash before the commit undoes the cutover; the verify result survives the restart.
	ready := func() bool { return e.phase() == "streaming" && e.statusField("stream", "connected") == true }
	d = e.crashAt(d, "drain", ready, "cutover", "--confirm", e.name)
	e.waitRecovered(d, "streaming", "drain")
	if e.readOnly(e.srcDB) || e.readOnly(e.dstDB) {
		t.Fatalf("after the undone cutover: source read_only %v, target read_only %v", e.readOnly(e.srcDB), e.readOnly(e.dstDB))
	}
	if r := strings.TrimSpace(readFile(t, filepath.Join(e.dir, "route"))); r != "source" {
		t.Fatalf("the undone cutover routed to %q", r)
	}
	e.waitAcked(d, rw, "source", 50)

	// A crash after the commit rolls the cutover forward.
	d = e.crashAt(d, "target-writable", ready, "cutover", "--confirm", e.name)
	e.waitRecovered(d, "switched", "target-writable")
	t.Logf("cutover after a crash at target-writable: %v", e.statusField("operation", "step_seconds"))
	if !e.readOnly(e.srcDB) || e.readOnly(e.dstDB) {
		t.Fatalf("after the cutover: source read_only %v, target read_only %v", e.readOnly(e.srcDB), e.readOnly(e.dstDB))
	}
	e.waitFor(d, "the hook to route to the target", time.Minute, func() bool {
		return strings.TrimSpace(readFile(t, filepath.Join(e.dir, "route"))) == "target"
	})
	e.waitAcked(d, rw, "target", 50)
	d.kill()
	t.Log("killed in the dual-write phase")
	d = e.start()
	e.waitFor(d, "the reverse stream to run again", 2*time.Minute, func() bool {
		return e.phase() == "switched" && e.statusField("reverse", "connected") == true
	})
	e.waitAcked(d, rw, "target", 50)

	out := e.mustCLI("rollback", "--confirm", e.name)
	t.Logf("rollback:\n%s", out)
	if p := e.phase(); p != "streaming" {
		t.Fatalf("phase after the rollback %s", p)
	}
	if e.readOnly(e.srcDB) || !e.readOnly(e.dstDB) {
		t.Fatalf("after the rollback: source read_only %v, target read_only %v", e.readOnly(e.srcDB), e.readOnly(e.dstDB))
	}
	e.waitAcked(d, rw, "source", 50)
	rw.finish(t)
	e.waitMyCaughtUp(d)
	e.stop(d)

	e.compareMy("accounts", "orders")
	e.checkLedger(rw, e.srcDB)
	e.checkLedger(rw, e.dstDB)
	// Each side that took writes started its ids past the other side's by the gap.
	if rw.first[1] <= rw.last[0]+1000 {
		t.Errorf("first id on the target %d, last on the source before the cutover %d: the target's AUTO_INCREMENT was not moved past the source's", rw.first[1], rw.last[0])
	}
	if rw.first[2] <= rw.last[1]+1000 {
		t.Errorf("first id on the source after the rollback %d, last on the target %d: the source's AUTO_INCREMENT was not moved past the target's", rw.first[2], rw.last[1])
	}
	c := e.conn(e.dstDB)
	defer c.Close()
	r, err := c.Execute("SELECT op, outcome, write_unavailable_seconds FROM _migrated.operations WHERE migration = ? ORDER BY id", e.name)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for i := range r.RowNumber() {
		op, _ := r.GetString(i, 0)
		outcome, _ := r.GetString(i, 1)
		secs, _ := r.GetFloat(i, 2)
		ops = append(ops, op+":"+outcome)
		t.Logf("%s %s, write pause %.3f s", op, outcome, secs)
	}
	if strings.Join(ops, ",") != "cutover:aborted,cutover:done,rollback:done" {
		t.Errorf("operations recorded %v", ops)
	}

	// Once more, to the end: the rollback made the last verify stale, so a cutover needs a new
	// one; complete then ends the dual-write phase and removes the reverse checkpoint.
	d = e.start()
	e.waitFor(d, "streaming", time.Minute, ready)
	if out, code := e.cli("cutover", "--confirm", e.name); code == 0 || !strings.Contains(out, "verify") {
		t.Fatalf("cutover with the verify made stale by the rollback: exit %d:\n%s", code, out)
	}
	e.mustCLI("verify", "--wait")
	e.mustCLI("cutover", "--confirm", e.name)
	out = e.mustCLI("complete", "--confirm", e.name)
	if p := e.phase(); p != "completed" || !strings.Contains(out, "read-only") {
		t.Fatalf("complete: phase %s:\n%s", p, out)
	}
	src := e.conn(e.srcDB)
	defer src.Close()
	if r, err := src.Execute("SELECT count(*) FROM _migrated.progress WHERE migration = ?", e.name); err != nil {
		t.Fatal(err)
	} else if n, _ := r.GetInt(0, 0); n != 0 {
		t.Errorf("complete left %d checkpoint(s) on the old source", n)
	}
	if !e.readOnly(e.srcDB) || e.readOnly(e.dstDB) {
		t.Errorf("after complete: source read_only %v, target read_only %v", e.readOnly(e.srcDB), e.readOnly(e.dstDB))
	}
	e.stop(d)
}

// appServer starts a MariaDB server for the test alone (a fence makes a whole server
// read-only), with database db and the application's account 'app', which may change its rows
// and nothing more: a fence stops it.
func appServer(t *testing.T, db string) *testenv.MariaDB {
	t.Helper()
	testenv.SkipIfShort(t)
	m, err := testenv.StartMariaDB(testenv.MariaDBOptions{})
	if err != nil {
		testenv.SkipOrFail(t, err)
	}
	t.Cleanup(func() { m.Stop() })
	ctx := context.Background()
	if err := m.CreateDB(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE USER 'app'@'%' IDENTIFIED BY 'app'",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON `" + db + "`.* TO 'app'@'%'",
	} {
		if err := m.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return m
}

// newCrossEnv is a cutover test between a MariaDB server of its own, holding database myDB and
// an application account, and a new PostgreSQL database pgDB: the source when pgIsSource, else
// the target (whose tables are then in the schema named myDB).
func newCrossEnv(t *testing.T, name, myDB, pgDB string, pgIsSource bool) *myEnv {
	t.Helper()
	m := appServer(t, myDB)
	pgDSN, err := testenv.RequirePostgres(t).CreateDB(context.Background(), pgDB)
	if err != nil {
		t.Fatal(err)
	}
	e := &myEnv{m: m, serverAddr: m.Addr()}
	engine := "target"
	if pgIsSource {
		e.pgSrc, e.srcDB, e.dstDB = pgDSN, "public", myDB
		e.srcDSN, e.dstDSN = pgDSN, m.DSN(myDB)
		engine = "source"
		t.Cleanup(func() { dropSlots(t, pgDSN) })
	} else {
		e.pgDst, e.srcDB = pgDSN, myDB
		e.srcDSN, e.dstDSN = m.DSN(myDB), pgDSN
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e.env = &env{t: t, name: name, dir: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", port)}
	e.writeMyConfig(myCutoverConfig(e.dir))
	cfg, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(cfg), engine+":\n  engine: mysql", engine+":\n  engine: postgres", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "route"), []byte("source\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestMariaDBToPostgresCutoverAndRollback moves a MariaDB database into PostgreSQL under a live
// writer, cuts over with the writer following the hook to PostgreSQL, writes there with the
// reverse stream carrying the writes back into MariaDB, rolls back, writes on MariaDB again, and
// ends with both sides equal and nothing the application was told of lost.
func TestMariaDBToPostgresCutoverAndRollback(t *testing.T) {
	e := newCrossEnv(t, "mycutpg", "shop", "mycutpg_dst", false)
	ctx := context.Background()
	e.seedMySQL(2000)
	e.seedOrders()

	d := e.start()
	ready := func() bool { return e.phase() == "streaming" && e.statusField("stream", "connected") == true }
	e.waitFor(d, "streaming", 5*time.Minute, ready)
	e.waitPGCaughtUp(d)
	if out := e.mustCLI("verify", "--wait"); !strings.Contains(out, "clean") {
		t.Fatalf("verify: %s", out)
	}
	rw := e.startRoutedWriter(2)
	defer rw.halt()
	e.waitAcked(d, rw, "source", 50)
	out := e.mustCLI("cutover", "--confirm", e.name)
	t.Logf("cutover:\n%s", out)
	if p := e.phase(); p != "switched" || !e.readOnly(e.srcDB) || e.fenced(e.pgDst) {
		t.Fatalf("after the cutover: phase %s, source read_only %v, target fenced %v\nlog:\n%s", p, e.readOnly(e.srcDB), e.fenced(e.pgDst), e.logTail())
	}
	e.waitAcked(d, rw, "target", 50)
	e.waitFor(d, "the reverse stream to run", time.Minute, func() bool { return e.statusField("reverse", "connected") == true })
	// Every type written on PostgreSQL goes back into MariaDB's own types. (jsonb is written in
	// its own key order, which the reverse stream sends as its text.)
	e.exec(e.pgDst, `SET search_path = shop;
UPDATE every_type SET ti = -1, tiu = 200, si = -2, siu = 60000, mi = -3, miu = 16000000, i = 42, iu = 4000000000,
  bi = -5, biu = 18446744073709551614, dec65 = 1.5, f = 0.25, d = -2.5, c = 'bck', vc = 'réponse 🚀', tx = 'text ✓',
  bin = '\x0102030405060708090a0b0c0d0e0f10', vb = '\x00ff00', bl = '\xcafe', dt = '2001-02-03',
  dtm = '2001-02-03 04:05:06.000007', ts = '2030-01-01 00:00:00.5+00', tm = '-12:34:56.000001', yr = 1999,
  js = '{"back": [true, 1.5]}', en = 'large', st = 'b,c', b1 = 0, b64 = 12345
 WHERE id = 1;
INSERT INTO every_type (id, i, yr, st, b1) VALUES (3, 9, 2000, '', 1);
DELETE FROM every_type WHERE id = 2;
UPDATE ledger SET amount = amount + 0.0001, note = note || ' ↺' WHERE id <= 10;
DELETE FROM ledger WHERE id BETWEEN 11 AND 20;
UPDATE pairs SET n = n + 1000 WHERE k = 'k000';`)
	e.waitAcked(d, rw, "target", 50)
	out = e.mustCLI("rollback", "--confirm", e.name)
	t.Logf("rollback:\n%s", out)
	if p := e.phase(); p != "streaming" || e.readOnly(e.srcDB) || !e.fenced(e.pgDst) {
		t.Fatalf("after the rollback: phase %s, source read_only %v, target fenced %v\nlog:\n%s", p, e.readOnly(e.srcDB), e.fenced(e.pgDst), e.logTail())
	}
	if s := e.slots(e.pgDst); s != "" {
		t.Errorf("the rollback left slots on the target: %s", s)
	}
	e.waitAcked(d, rw, "source", 50)
	rw.finish(t)
	e.waitPGCaughtUp(d)
	e.stop(d)

	e.checkLedger(rw, e.srcDB)
	my := e.conn(e.srcDB)
	defer my.Close()
	pc := e.connect(e.pgDst)
	defer pc.Close(ctx)
	for _, q := range [][2]string{
		{"SELECT id, balance FROM accounts ORDER BY id", `SELECT id, balance FROM shop.accounts ORDER BY id`},
		{"SELECT id, acct, amount, side FROM orders ORDER BY id", `SELECT id, acct, amount, side FROM shop.orders ORDER BY id`},
	} {
		sameRows(t, q[0], "mariadb", myRows(t, my, q[0]), "postgresql", pgRows(t, pc, q[1]))
	}
	e.mustExec(my, "SET SESSION time_zone = '+00:00'")
	for _, table := range []string{"every_type", "ledger", "pairs"} {
		sameRows(t, table, "mariadb", myRows(t, my, fmt.Sprintf(myTypesSQL[table], "`shop`")), "postgresql", pgRows(t, pc, fmt.Sprintf(pgTypesSQL[table], `"shop"`)))
	}
	if rw.first[1] <= rw.last[0]+1000 {
		t.Errorf("first id on PostgreSQL %d, last on MariaDB before the cutover %d: the identity was not moved past AUTO_INCREMENT", rw.first[1], rw.last[0])
	}
	if rw.first[2] <= rw.last[1]+1000 {
		t.Errorf("first id on MariaDB after the rollback %d, last on PostgreSQL %d: AUTO_INCREMENT was not moved past the identity", rw.first[2], rw.last[1])
	}
}

// TestPostgresToMariaDBCutoverAndRollback moves a PostgreSQL database into MariaDB under a live
// writer, cuts over with the writer following the hook to MariaDB, writes there (every common
// type, through a kill and restart of migrated) with the reverse stream carrying the writes back
// into PostgreSQL, rolls back, writes on PostgreSQL again, and ends with both sides equal and
// nothing the application was told of lost.
func TestPostgresToMariaDBCutoverAndRollback(t *testing.T) {
	e := newCrossEnv(t, "pgcutmy", "shop", "pgcutmy_src", true)
	ctx := context.Background()
	e.exec(e.pgSrc, pgKindsSQL+`
CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE orders (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, acct integer NOT NULL, amount integer NOT NULL, side varchar(8) NOT NULL);
CREATE INDEX by_acct ON orders (acct);
INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 20) g;
ALTER TABLE kinds REPLICA IDENTITY FULL;
CREATE TABLE ev (region int NOT NULL, id bigint NOT NULL, note varchar(40), PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE ev_1 PARTITION OF ev FOR VALUES IN (1);
CREATE TABLE ev_rest PARTITION OF ev DEFAULT;
INSERT INTO ev SELECT g % 3, g, 'note ' || g FROM generate_series(1, 300) g;`)

	d := e.start()
	ready := func() bool { return e.phase() == "streaming" && e.statusField("stream", "connected") == true }
	e.waitFor(d, "streaming", 5*time.Minute, ready)
	// Verify under the live writer, whose accounts rows are hot: the recheck holds them still.
	rw := e.startRoutedWriter(2)
	defer rw.halt()
	e.waitAcked(d, rw, "source", 50)
	if out := e.mustCLI("verify", "--wait"); !strings.Contains(out, "clean") {
		t.Fatalf("verify: %s", out)
	}
	e.waitAcked(d, rw, "source", 50)
	if out := e.mustCLI("cutover", "--dry-run", "--confirm", e.name); !strings.Contains(out, "every check passed") || !strings.Contains(out, "binary log can feed") {
		t.Fatalf("cutover --dry-run:\n%s", out)
	} else {
		t.Logf("cutover --dry-run:\n%s", out)
	}
	out := e.mustCLI("cutover", "--confirm", e.name)
	t.Logf("cutover:\n%s", out)
	if p := e.phase(); p != "switched" || !e.fenced(e.pgSrc) || e.readOnly(e.dstDB) {
		t.Fatalf("after the cutover: phase %s, source fenced %v, target read_only %v\nlog:\n%s", p, e.fenced(e.pgSrc), e.readOnly(e.dstDB), e.logTail())
	}
	if s := e.slots(e.pgSrc); s != "" {
		t.Errorf("the cutover left slots on the old source, holding its WAL: %s", s)
	}
	e.waitAcked(d, rw, "target", 50)

	// Every type written on MariaDB goes back into PostgreSQL's own types. (jsonb keeps its keys
	// in its own order, so the test writes them in that order to compare the text.)
	my := e.conn(e.dstDB)
	e.mustExec(my,
		"SET SESSION time_zone = '+00:00'",
		`UPDATE kinds SET s = -5, i = i + 1, b = -9007199254740993, n = 12.3400, r = 0.5, d = 2.5e-300, flag = 1 - flag,
		  t = CONCAT(t, ' ↺ 🚀'), vc = 'back', ch = 'xy', bin = UNHEX('DEADBEEF00'), dt = '1999-12-31',
		  ts = '2025-01-02 03:04:05.678901', tstz = '2025-06-07 08:09:10.000011', tm = '01:02:03.000004',
		  u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', js = '{"back": [1, 2.5, null]}', jsb = '{"n": [1, "two"], "ok": false}'
		  WHERE id BETWEEN 10 AND 19`,
		"DELETE FROM kinds WHERE id BETWEEN 20 AND 24",
		`INSERT INTO kinds (id, flag, bin, tstz, jsb) VALUES (100001, 0, UNHEX('00FF'), '2030-01-01 00:00:00.000001', '{"new": true}'), (100002, NULL, NULL, NULL, NULL)`,
		"UPDATE kinds SET id = 100003 WHERE id = 30",
		// A partitioned table on PostgreSQL: rows move between its partitions.
		"UPDATE ev SET region = 1 WHERE region = 2 AND id < 100",
		"UPDATE ev SET note = 'back' WHERE id BETWEEN 100 AND 150",
		"DELETE FROM ev WHERE id > 290",
		"INSERT INTO ev VALUES (0, 1000, 'new'), (1, 1001, 'new'), (7, 1002, 'new')")
	my.Close()

	d.kill()
	t.Log("killed in the dual-write phase")
	d = e.start()
	e.waitFor(d, "the reverse stream to run again", 2*time.Minute, func() bool {
		return e.phase() == "switched" && e.statusField("reverse", "connected") == true
	})
	e.waitAcked(d, rw, "target", 50)

	out = e.mustCLI("rollback", "--confirm", e.name)
	t.Logf("rollback:\n%s", out)
	if p := e.phase(); p != "streaming" || e.fenced(e.pgSrc) || !e.readOnly(e.dstDB) {
		t.Fatalf("after the rollback: phase %s, source fenced %v, target read_only %v\nlog:\n%s", p, e.fenced(e.pgSrc), e.readOnly(e.dstDB), e.logTail())
	}
	e.waitAcked(d, rw, "source", 50)
	rw.finish(t)
	e.waitPGSourceCaughtUp(d, e.pgSrc)

	// Once more, to the end: a new verify, the cutover, and complete in the dual-write phase,
	// which leaves no slot and no reverse checkpoint on the old source, and it fenced.
	if out := e.mustCLI("verify", "--wait"); !strings.Contains(out, "clean") {
		t.Fatalf("verify after the rollback: %s", out)
	}
	e.mustCLI("cutover", "--confirm", e.name)
	out = e.mustCLI("complete", "--confirm", e.name)
	t.Logf("complete:\n%s", out)
	if p := e.phase(); p != "completed" || !strings.Contains(out, "default_transaction_read_only") {
		t.Errorf("complete in the dual-write phase: phase %s:\n%s", p, out)
	}
	if s := e.slots(e.pgSrc); s != "" {
		t.Errorf("complete left slots on the source: %s", s)
	}
	var left int
	old := e.connect(e.pgSrc)
	if err := old.QueryRow(ctx, "SELECT count(*) FROM _migrated.progress WHERE migration = $1", e.name).Scan(&left); err != nil || left != 0 {
		t.Errorf("complete left %d checkpoint(s) on the old source (%v)", left, err)
	}
	old.Close(ctx)
	if !e.fenced(e.pgSrc) || e.readOnly(e.dstDB) {
		t.Errorf("after complete: source fenced %v, target read_only %v", e.fenced(e.pgSrc), e.readOnly(e.dstDB))
	}
	e.stop(d)

	e.checkLedger(rw, e.dstDB)
	pc := e.connect(e.pgSrc)
	defer pc.Close(ctx)
	my = e.conn(e.dstDB)
	defer my.Close()
	e.mustExec(my, "SET SESSION time_zone = '+00:00'")
	for _, q := range [][2]string{
		{"SELECT id, balance FROM accounts ORDER BY id", "SELECT id, balance FROM accounts ORDER BY id"},
		{"SELECT id, acct, amount, side FROM orders ORDER BY id", "SELECT id, acct, amount, side FROM orders ORDER BY id"},
		{fmt.Sprintf(myCompare["kinds"], "shop"), pgCompare["kinds"]},
		{fmt.Sprintf(myCompare["ev"], "shop"), pgCompare["ev"]},
	} {
		sameRows(t, q[0], "mariadb", myRows(t, my, q[0]), "postgresql", pgRows(t, pc, q[1]))
	}
	var moved int
	if err := pc.QueryRow(ctx, "SELECT count(*) FROM ev_1 WHERE id < 100 AND id % 3 = 2").Scan(&moved); err != nil || moved == 0 {
		t.Errorf("rows moved to region 1 on MariaDB are not in partition ev_1 on PostgreSQL: %d (%v)", moved, err)
	}
	var total, want int64
	if err := pc.QueryRow(ctx, "SELECT total, i * 2 FROM kinds WHERE id = 10").Scan(&total, &want); err != nil || total != want {
		t.Errorf("generated column on PostgreSQL after rows came back: %d, want %d (%v)", total, want, err)
	}
	if rw.first[1] <= rw.last[0]+1000 {
		t.Errorf("first id on MariaDB %d, last on PostgreSQL before the cutover %d: AUTO_INCREMENT was not moved past the identity", rw.first[1], rw.last[0])
	}
	if rw.first[2] <= rw.last[1]+1000 {
		t.Errorf("first id on PostgreSQL after the rollback %d, last on MariaDB %d: the identity was not moved past AUTO_INCREMENT", rw.first[2], rw.last[1])
	}
}

package mysql

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/state"
	"github.com/migrated/migrated/internal/testenv"
)

// ownServer starts a server for this test alone: a fence makes a whole server read-only.
func ownServer(t *testing.T) *testenv.MariaDB {
	t.Helper()
	testenv.SkipIfShort(t)
	m, err := testenv.StartMariaDB(testenv.MariaDBOptions{})
	if err != nil {
		testenv.SkipOrFail(t, err)
	}
	t.Cleanup(func() { m.Stop() })
	return m
}

func rawConn(t *testing.T, m *testenv.MariaDB, user, password, db string) *client.Conn {
	t.Helper()
	c, err := client.Connect(m.Addr(), user, password, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func myCode(err error) uint16 {
	var e *mysql.MyError
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// TestFence checks what a cutover relies on: after Fence, no application session can commit a
// write, the application's sessions on the database and in transactions are gone, migrated's own
// sessions and other databases' idle sessions are left alone, and Unfence opens the server again.
func TestFence(t *testing.T) {
	m := ownServer(t)
	mustExec(t, m,
		"CREATE DATABASE fencedb", "CREATE DATABASE other",
		"CREATE TABLE fencedb.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
		"CREATE USER 'app'@'%' IDENTIFIED BY 'pw'",
		"GRANT SELECT, INSERT, UPDATE, DELETE, LOCK TABLES ON fencedb.* TO 'app'@'%'",
		"GRANT SELECT ON other.* TO 'app'@'%'")
	addr := Addr{Host: m.Host(), Port: uint16(m.Port()), User: m.User(), Password: m.Password(), DB: "fencedb"}

	inTxn := rawConn(t, m, "app", "pw", "fencedb")
	for _, q := range []string{"BEGIN", "INSERT INTO t (v) VALUES (1)"} {
		if _, err := inTxn.Execute(q); err != nil {
			t.Fatal(err)
		}
	}
	idle := rawConn(t, m, "app", "pw", "fencedb")
	elsewhere := rawConn(t, m, "app", "pw", "other")
	mine := connectAs(t, m, m.User(), m.Password(), "fencedb") // registered as migrated's own
	for _, q := range []string{"BEGIN", "INSERT INTO t (v) VALUES (2)"} {
		if _, err := mine.Execute(q); err != nil {
			t.Fatal(err)
		}
	}

	fc := connectAs(t, m, m.User(), m.Password(), "fencedb")
	ctx := context.Background()
	killed, err := Fence(ctx, fc, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if killed != 2 {
		t.Errorf("killed %d sessions, want 2 (the one in a transaction and the idle one on fencedb)", killed)
	}
	if _, err := inTxn.Execute("COMMIT"); err == nil {
		t.Error("a transaction that wrote before the fence committed after it")
	}
	if _, err := idle.Execute("SELECT 1"); err == nil {
		t.Error("the idle application session on the fenced database survived the fence")
	}
	if _, err := elsewhere.Execute("SELECT 1"); err != nil {
		t.Errorf("an idle session on another database was ended: %v", err)
	}
	if _, err := mine.Execute("COMMIT"); err != nil {
		t.Errorf("migrated's own session was ended or refused: %v", err)
	}
	fresh := rawConn(t, m, "app", "pw", "fencedb")
	if _, err := fresh.Execute("INSERT INTO t (v) VALUES (3)"); myCode(err) != mysql.ER_OPTION_PREVENTS_STATEMENT {
		t.Errorf("an application write under the fence: %v, want error %d", err, mysql.ER_OPTION_PREVENTS_STATEMENT)
	}
	if on, err := Fenced(fc); err != nil || !on {
		t.Errorf("Fenced = %v, %v", on, err)
	}
	// Again: idempotent; the session opened under the fence is ended too.
	if killed, err := Fence(ctx, fc, addr, 5*time.Second); err != nil || killed != 1 {
		t.Errorf("second fence: killed %d, %v; want the one session opened since", killed, err)
	}
	for range 2 {
		if err := Unfence(fc); err != nil {
			t.Fatal(err)
		}
	}
	fresh = rawConn(t, m, "app", "pw", "fencedb")
	if _, err := fresh.Execute("INSERT INTO t (v) VALUES (4)"); err != nil {
		t.Errorf("a write after Unfence: %v", err)
	}
	rows, err := QueryStrings(fc, "SELECT v FROM t ORDER BY v")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, *r[0])
	}
	if strings.Join(got, ",") != "2,4" {
		t.Errorf("rows %v, want 2,4: only migrated's write under the fence and the write after it", got)
	}

	// The account checks.
	if err := CheckFence(fc); err != nil {
		t.Errorf("root cannot fence: %v", err)
	}
	app := connectAs(t, m, "app", "pw", "fencedb")
	err = CheckFence(app)
	if err == nil {
		t.Fatal("CheckFence passed for an application account")
	}
	wantIn(t, err.Error(), "GRANT READ ONLY ADMIN, CONNECTION ADMIN, PROCESS ON *.*")
	// The statement the error gives is the fix.
	mustExec(t, m, "GRANT READ ONLY ADMIN, CONNECTION ADMIN, PROCESS ON *.* TO 'app'@'%'")
	if err := CheckFence(connectAs(t, m, "app", "pw", "fencedb")); err != nil {
		t.Errorf("after the GRANT the error gave: %v", err)
	}
	mustExec(t, m, "REVOKE READ ONLY ADMIN, CONNECTION ADMIN, PROCESS ON *.* FROM 'app'@'%'")

	// A table lock makes read_only wait: the fence gives up after its wait and leaves the
	// server writable.
	locker := rawConn(t, m, "app", "pw", "fencedb")
	if _, err := locker.Execute("LOCK TABLES t WRITE"); err != nil {
		t.Fatal(err)
	}
	if _, err := Fence(ctx, fc, addr, time.Second); err == nil || !strings.Contains(err.Error(), "could not be made read-only") {
		t.Errorf("fence against a table lock: %v", err)
	}
	if on, _ := Fenced(fc); on {
		t.Error("a fence that gave up left the server read-only")
	}
	_, _ = locker.Execute("UNLOCK TABLES")
}

func TestSyncAutoIncrement(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	mustExec(t, m,
		"DROP DATABASE IF EXISTS ai_from", "DROP DATABASE IF EXISTS ai_to",
		"CREATE DATABASE ai_from", "CREATE DATABASE ai_to",
		"CREATE TABLE ai_from.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY)",
		"CREATE TABLE ai_to.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY)",
		"CREATE TABLE ai_from.plain (id INT PRIMARY KEY)", "CREATE TABLE ai_to.plain (id INT PRIMARY KEY)",
		"INSERT INTO ai_from.orders VALUES (4999)", "INSERT INTO ai_to.orders VALUES (10)")
	from := connectAs(t, m, m.User(), m.Password(), "ai_from")
	to := connectAs(t, m, m.User(), m.Password(), "ai_to")
	moved, err := SyncAutoIncrement(from, "ai_from", to, "ai_to", []string{"orders", "plain"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 || moved[0].Table != "orders" || moved[0].To != 5100 {
		t.Fatalf("moved %+v, want orders to 5100", moved)
	}
	if _, err := to.Execute("INSERT INTO orders () VALUES ()"); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := QueryString(to, "SELECT max(id) FROM orders"); id != "5100" {
		t.Errorf("the next id on the side taking writes is %s, want 5100", id)
	}
	// Never back.
	if moved, err := SyncAutoIncrement(from, "ai_from", to, "ai_to", []string{"orders"}, 0); err != nil || len(moved) != 0 {
		t.Errorf("second sync moved %+v, %v", moved, err)
	}
}

// TestOpStore round-trips an operation and its journal, and the phase each write records.
func TestOpStore(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	c := connectAs(t, m, m.User(), m.Password(), "")
	if err := EnsureState(c); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Execute("DELETE FROM _migrated.migration WHERE name = 'opstore'")
	if err := CreateMigration(c, "opstore", "forward", "0-1-1", nil); err != nil {
		t.Fatal(err)
	}
	if err := EnsureOperations(c); err != nil {
		t.Fatal(err)
	}
	s := &OpStore{Do: func(fn func(*client.Conn) error) error { return fn(c) }, Migration: "opstore"}
	ctx := context.Background()
	phase := func() string {
		m, _, err := LoadMigration(c, "opstore")
		if err != nil {
			t.Fatal(err)
		}
		return m.Phase
	}
	o, err := s.BeginOperation(ctx, "cutover", state.PhaseCuttingOver)
	if err != nil {
		t.Fatal(err)
	}
	if p := phase(); p != string(state.PhaseCuttingOver) {
		t.Errorf("phase after begin %s", p)
	}
	if err := s.Journal(ctx, o, state.JournalEntry{Step: "fence-source", State: "started"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Journal(ctx, o, state.JournalEntry{Step: "fence-source", State: "done", Detail: "fenced at 0-1-9"}, state.PhaseSwitched); err != nil {
		t.Fatal(err)
	}
	if p := phase(); p != string(state.PhaseSwitched) {
		t.Errorf("phase after the journal entry with a phase: %s", p)
	}
	o.FencePosition, o.StepSeconds["fence-source"] = "0-1-9", 0.25
	if err := s.SaveOperation(ctx, o); err != nil {
		t.Fatal(err)
	}
	last, err := s.LastOperation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last.ID != o.ID || last.Op != "cutover" || last.Outcome != "running" || last.FinishedAt != nil || last.FencePosition != "0-1-9" ||
		last.StepSeconds["fence-source"] != 0.25 || len(last.Journal) != 2 || last.Journal[1].Detail != "fenced at 0-1-9" {
		t.Errorf("read back %+v", last)
	}
	o.Outcome, o.WriteUnavailableSeconds = "done", 0.5
	if err := s.FinishOperation(ctx, o, state.PhaseSwitched); err != nil {
		t.Fatal(err)
	}
	last, err = s.LastOperation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last.FinishedAt == nil || last.Outcome != "done" || last.WriteUnavailableSeconds != 0.5 {
		t.Errorf("finished read back %+v", last)
	}
}

func TestBinlogDistance(t *testing.T) {
	logs := []binlogFile{{"bin.000007", 1000}, {"bin.000008", 500}, {"bin.000009", 120}}
	for _, tt := range []struct {
		from Position
		want int64
	}{
		{Position{File: "bin.000009", Offset: 120}, 0},
		{Position{File: "bin.000009", Offset: 100}, 20},
		{Position{File: "bin.000008", Offset: 400}, 100 + 120},
		{Position{File: "bin.000007", Offset: 4}, 996 + 500 + 120},
		{Position{File: "bin.000006", Offset: 4}, 1000 + 500 + 120}, // purged since: at least this
	} {
		if got := binlogDistance(logs, tt.from); got != tt.want {
			t.Errorf("from %s:%d: %d, want %d", tt.from.File, tt.from.Offset, got, tt.want)
		}
	}

	// On a real server: the distance from the current end grows by what is written after it.
	m := testenv.RequireMariaDB(t)
	c := connectAs(t, m, m.User(), m.Password(), "")
	end := func() Position {
		rows, err := QueryStrings(c, "SHOW MASTER STATUS")
		if err != nil || len(rows) == 0 {
			t.Fatalf("SHOW MASTER STATUS: %v", err)
		}
		off, _ := strconv.ParseUint(*rows[0][1], 10, 32)
		return Position{File: *rows[0][0], Offset: uint32(off)}
	}
	from := end()
	if n, ok, err := BinlogDistance(c, from); err != nil || !ok || n != 0 {
		t.Fatalf("distance from the end = %d, %v, %v", n, ok, err)
	}
	mustExec(t, m, "CREATE DATABASE IF NOT EXISTS lagbytes", "CREATE TABLE IF NOT EXISTS lagbytes.t (id INT PRIMARY KEY, v TEXT)",
		"REPLACE INTO lagbytes.t VALUES (1, REPEAT('x', 5000))")
	now := end()
	n, ok, err := BinlogDistance(c, from)
	if err != nil || !ok || (now.File == from.File && n != int64(now.Offset-from.Offset)) || n < 5000 {
		t.Errorf("after a 5000-byte row: distance %d (%v, %v); the log moved from %v to %v", n, ok, err, from, now)
	}
	if _, ok, _ := BinlogDistance(c, Position{GTID: "0-1-1"}); ok {
		t.Error("a position without coordinates has a distance")
	}
}

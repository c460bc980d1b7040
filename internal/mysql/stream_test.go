package mysql

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
	"go.uber.org/zap/zaptest"
)

// waitFor bounds every wait of these tests; none asserts on timing.
const waitFor = 60 * time.Second

var streamServerID atomic.Uint32

// streamRun is a Stream running in the background, its events collected.
type streamRun struct {
	events chan cdc.Event
	done   chan error
	cancel context.CancelFunc
	err    error
	exited bool
}

func (f *streamFixture) startStream(t *testing.T, tables []*schema.Table, resume Position, heartbeat time.Duration) *streamRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &streamRun{events: make(chan cdc.Event, 100000), done: make(chan error, 1), cancel: cancel}
	s := NewStream(StreamOptions{
		Addr:      f.addr,
		ServerID:  f.m.ServerID() + 100 + streamServerID.Add(1),
		Tables:    tables,
		Resume:    resume,
		Heartbeat: heartbeat,
		Log:       zaptest.NewLogger(t),
	})
	go func() { r.done <- s.Run(ctx, r.events) }()
	t.Cleanup(func() {
		cancel()
		if !r.exited {
			if err := <-r.done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("stream ended with %v", err)
			}
		}
	})
	return r
}

// next returns the next event, failing the test if the stream ends or nothing comes.
func (r *streamRun) next(t *testing.T) cdc.Event {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case err := <-r.done:
		r.exited = true
		t.Fatalf("stream ended: %v", err)
	case <-time.After(waitFor):
		t.Fatal("no event from the stream")
	}
	return cdc.Event{}
}

// wait returns the error the stream ends with, draining its events.
func (r *streamRun) wait(t *testing.T) error {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case <-r.events:
		case err := <-r.done:
			r.exited = true
			return err
		case <-deadline:
			t.Fatal("the stream did not end")
		}
	}
}

// txn is one streamed transaction.
type txn struct {
	begin, commit cdc.Event
	changes       []*cdc.Change
}

// nextTxn returns the next transaction, skipping heartbeats, and checks its framing.
func (r *streamRun) nextTxn(t *testing.T) txn {
	t.Helper()
	var x txn
	for {
		ev := r.next(t)
		switch ev.Kind {
		case cdc.EventHeartbeat:
			if x.begin.Kind != 0 {
				t.Fatal("heartbeat inside a transaction")
			}
		case cdc.EventBegin:
			if x.begin.Kind != 0 {
				t.Fatal("begin inside a transaction")
			}
			x.begin = ev
		case cdc.EventChange:
			if x.begin.Kind == 0 {
				t.Fatal("change outside a transaction")
			}
			x.changes = append(x.changes, ev.Change)
		case cdc.EventCommit:
			if x.begin.Kind == 0 {
				t.Fatal("commit without begin")
			}
			if _, ok := ev.Position.(Position); !ok {
				t.Fatalf("commit position is %T", ev.Position)
			}
			x.commit = ev
			return x
		}
	}
}

// changes returns the next n row changes, from whole transactions.
func (r *streamRun) changes(t *testing.T, n int) []*cdc.Change {
	t.Helper()
	var out []*cdc.Change
	for len(out) < n {
		out = append(out, r.nextTxn(t).changes...)
	}
	if len(out) != n {
		t.Fatalf("got %d changes, want %d", len(out), n)
	}
	return out
}

func (f *streamFixture) position(t *testing.T) Position {
	t.Helper()
	p, err := CurrentPosition(f.conn)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sameValues(t *testing.T, what string, rel *cdc.Relation, got, want []cdc.Value) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	for i := range got {
		if got[i].Kind != want[i].Kind || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("%s column %s: stream %s, select %s", what, rel.Columns[i].Name, showValue(got[i]), showValue(want[i]))
		}
	}
}

// TestStreamValuesMatchSelect is the exactness proof: every value the binlog stream decodes
// equals, byte for byte, what SelectList and RowValues read for the same row.
func TestStreamValuesMatchSelect(t *testing.T) {
	testValuesMatchSelect(t, newStreamFixture(t))
}

// TestStreamValuesMatchSelectFullMetadata repeats the proof on a server that logs full row
// metadata: go-mysql then decodes unsigned integers as unsigned, and the stream checks the
// binlog's column names against the catalog.
func TestStreamValuesMatchSelectFullMetadata(t *testing.T) {
	testenv.SkipIfShort(t)
	m, err := testenv.StartMariaDB(testenv.MariaDBOptions{Settings: map[string]string{"binlog_row_metadata": "FULL"}})
	if errors.Is(err, testenv.ErrExternalSettings) {
		t.Skip(err)
	}
	if err != nil {
		testenv.SkipOrFail(t, err)
	}
	t.Cleanup(func() { m.Stop() })
	testValuesMatchSelect(t, newStreamFixtureOn(t, m))
}

func testValuesMatchSelect(t *testing.T, f *streamFixture) {
	f.exec(t, allTypesDDL)
	tbl := f.table(t, "alltypes")
	start := f.position(t)
	run := f.startStream(t, f.tables, start, 0)

	f.exec(t, allTypesInserts...)
	f.exec(t, "SET SESSION sql_mode = ''", allTypesLoose, sessionSetup)
	inserted := f.selectRows(t, tbl)

	f.exec(t,
		"UPDATE alltypes SET vc = 'changed 🚀', f = f / 3, d = d / 3, st = 'y', en = 'a', b64 = b64 >> 1, tm = '-01:02:03.000004', "+
			"yr = 1999, js = '{\"k\": \"v\"}', n1 = 7, bin = X'FF', i = 5, de = -de WHERE id = 1",
		"UPDATE alltypes SET id = 20, c = 'moved' WHERE id = 2",
		"UPDATE alltypes SET c = 'x', ts = '2001-02-03 04:05:06.7', dt = '0000-00-00', yr = 0, b1 = 1 WHERE id = 4",
		"UPDATE alltypes SET c = NULL, f = NULL, mt = NULL WHERE id = 3")
	updated := f.selectRows(t, tbl)
	f.exec(t, "BEGIN", "DELETE FROM alltypes WHERE id = 3", "DELETE FROM alltypes WHERE id = 5", "COMMIT")

	rel := Relation(tbl)
	changes := run.changes(t, len(allTypesInserts)+1+4+2)
	inserts := len(allTypesInserts) + 1
	for i, c := range changes {
		if c.Relation.Table != tbl.ID || len(c.Relation.Columns) != len(rel.Columns) {
			t.Fatalf("change %d: relation %v with %d columns, want %v with %d", i, c.Relation.Table, len(c.Relation.Columns), tbl.ID, len(rel.Columns))
		}
		for j, col := range c.Relation.Columns {
			if col != rel.Columns[j] {
				t.Fatalf("change %d: relation column %d = %+v, want %+v", i, j, col, rel.Columns[j])
			}
		}
	}
	id := func(vals []cdc.Value) string { return string(vals[0].Data) }
	for _, c := range changes[:inserts] {
		if c.Op != cdc.OpInsert || c.Old != nil {
			t.Fatalf("want an insert, got %v (old %v)", c.Op, c.Old)
		}
		sameValues(t, "insert "+id(c.New), rel, c.New, inserted[id(c.New)])
	}
	for _, c := range changes[inserts : inserts+4] {
		if c.Op != cdc.OpUpdate {
			t.Fatalf("want an update, got %v", c.Op)
		}
		sameValues(t, "update "+id(c.New), rel, c.New, updated[id(c.New)])
		switch id(c.New) {
		case "20":
			if c.Old == nil {
				t.Fatal("the key change has no old row")
			}
			sameValues(t, "update old 2", rel, c.Old, inserted["2"])
		default:
			if c.Old != nil {
				t.Errorf("update of %s keeps its key but has an old row", id(c.New))
			}
		}
	}
	for _, c := range changes[inserts+4:] {
		if c.Op != cdc.OpDelete || c.New != nil {
			t.Fatalf("want a delete, got %v", c.Op)
		}
		sameValues(t, "delete "+id(c.Old), rel, c.Old, updated[id(c.Old)])
	}
}

// TestStreamResume starts in the middle of a run of transactions and gets exactly the later
// ones, with increasing positions that parse back.
func TestStreamResume(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE r (id INT PRIMARY KEY, v VARCHAR(10))")
	tables := f.readCatalog(t)
	var positions []Position
	for i := 1; i <= 5; i++ {
		f.exec(t, "INSERT INTO r VALUES ("+strconv.Itoa(i)+", 'v')")
		positions = append(positions, f.position(t))
	}
	run := f.startStream(t, tables, positions[1], 0)
	prev, err := parseGTIDSet(positions[1].Flavor, positions[1].GTID)
	if err != nil {
		t.Fatal(err)
	}
	for i := 3; i <= 5; i++ {
		x := run.nextTxn(t)
		if len(x.changes) != 1 || x.changes[0].Op != cdc.OpInsert {
			t.Fatalf("transaction %d: %d changes", i, len(x.changes))
		}
		if got, want := string(x.changes[0].New[0].Data), strconv.Itoa(i); got != want {
			t.Errorf("transaction %d inserted id %s, want %s", i, got, want)
		}
		pos := x.commit.Position.(Position)
		if got, want := pos, positions[i-1]; got.GTID != want.GTID {
			t.Errorf("commit %d at %+v, want %+v", i, got, want)
		}
		parsed, err := ParsePosition(pos.Flavor, pos.String())
		if err != nil || parsed.GTID != pos.GTID {
			t.Fatalf("ParsePosition(%q) = %+v, %v", pos, parsed, err)
		}
		set, _ := parseGTIDSet(pos.Flavor, pos.GTID)
		if !set.Contain(prev) || set.Equal(prev) {
			t.Errorf("position %s does not follow %s", set, prev)
		}
		prev = set
		if x.begin.CommitTime.IsZero() || x.commit.CommitTime.IsZero() {
			t.Error("transaction without a commit time")
		}
	}
}

// TestStreamStatementFormat stops at a statement-based change of a migrated table, and only
// there.
func TestStreamStatementFormat(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE m (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
	tables := []*schema.Table{f.table(t, "m")}
	run := f.startStream(t, tables, f.position(t), 0)
	f.exec(t, "SET SESSION binlog_format = 'STATEMENT'", "INSERT INTO other VALUES (1)",
		"SET SESSION binlog_format = 'ROW'", "INSERT INTO m VALUES (1)")
	if x := run.nextTxn(t); len(x.changes) != 1 || x.changes[0].Relation.Table.Name != "m" {
		t.Fatalf("want the row insert into m, got %d changes", len(x.changes))
	}
	f.exec(t, "SET SESSION binlog_format = 'STATEMENT'", "INSERT INTO m VALUES (2)", "SET SESSION binlog_format = 'ROW'")
	err := run.wait(t)
	var de *cdc.DecodeError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "binlog_format") || !strings.Contains(err.Error(), f.db+".m") {
		t.Fatalf("stream ended with %v, want a DecodeError about binlog_format naming %s.m", err, f.db)
	}
}

// TestStreamDDL ignores DDL on other tables, passes DDL that leaves a migrated table's
// columns alone, stops at DDL that changes them, and passes it after a restart with the new
// catalog.
func TestStreamDDL(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE m (id INT PRIMARY KEY, v INT)", "CREATE TABLE other (id INT PRIMARY KEY)")
	tables := []*schema.Table{f.table(t, "m")}
	run := f.startStream(t, tables, f.position(t), 0)

	f.exec(t, "ALTER TABLE other ADD COLUMN x INT", "CREATE INDEX v_idx ON m (v)", "INSERT INTO m VALUES (1, 1)")
	x := run.nextTxn(t)
	if len(x.changes) != 1 || string(x.changes[0].New[0].Data) != "1" {
		t.Fatalf("want the insert after the DDL, got %d changes", len(x.changes))
	}
	checkpoint := x.commit.Position.(Position)

	f.exec(t, "ALTER TABLE m ADD COLUMN w VARCHAR(5) /* widen */", "INSERT INTO m VALUES (2, 2, 'two')")
	err := run.wait(t)
	var de *cdc.DecodeError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "DDL on migrated table "+f.db+".m: ALTER TABLE m ADD COLUMN w") ||
		!strings.Contains(err.Error(), "paused at "+checkpoint.GTID) || !strings.Contains(err.Error(), "apply the same change to the target") {
		t.Fatalf("stream ended with %v, want a DecodeError about the DDL on %s.m paused at %s", err, f.db, checkpoint)
	}

	// The operator altered the target; migrated restarts with the new catalog.
	f.readCatalog(t)
	run = f.startStream(t, []*schema.Table{f.table(t, "m")}, checkpoint, 0)
	x = run.nextTxn(t)
	if len(x.changes) != 1 || len(x.changes[0].New) != 3 || string(x.changes[0].New[2].Data) != "two" {
		t.Fatalf("want the insert after the DDL with 3 values, got %+v", x.changes)
	}
}

// TestStreamMinimalRowImage stops at a row image that lacks columns.
func TestStreamMinimalRowImage(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE m (id INT PRIMARY KEY, v INT)", "INSERT INTO m VALUES (1, 1)")
	run := f.startStream(t, []*schema.Table{f.table(t, "m")}, f.position(t), 0)
	f.exec(t, "SET SESSION binlog_row_image = 'MINIMAL'", "UPDATE m SET v = 2 WHERE id = 1", "SET SESSION binlog_row_image = 'FULL'")
	err := run.wait(t)
	var de *cdc.DecodeError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "binlog_row_image=FULL") {
		t.Fatalf("stream ended with %v, want a DecodeError about binlog_row_image", err)
	}
}

// TestStreamRowsAfterUnseenDDL stops when a row no longer has the columns of the catalog.
func TestStreamRowsAfterUnseenDDL(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE m (id INT PRIMARY KEY, v INT)")
	old := f.readCatalog(t)
	start := f.position(t)
	f.exec(t, "ALTER TABLE m DROP COLUMN v", "INSERT INTO m VALUES (1)")
	// The stream starts after the DDL but with the catalog from before it.
	run := f.startStream(t, old, f.positionAfterDDL(t, start), 0)
	err := run.wait(t)
	var de *cdc.DecodeError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "has 1 columns in the binlog but 2") {
		t.Fatalf("stream ended with %v, want a DecodeError about the column count", err)
	}
}

// positionAfterDDL returns start plus the next transaction: the DDL that follows start.
func (f *streamFixture) positionAfterDDL(t *testing.T, start Position) Position {
	t.Helper()
	set, err := parseGTIDSet(start.Flavor, start.GTID)
	if err != nil {
		t.Fatal(err)
	}
	ms := set.(*mysql.MariadbGTIDSet)
	if len(ms.Sets) != 1 {
		t.Skipf("position %s has several domains", start)
	}
	for _, g := range ms.Sets {
		g.SequenceNumber++
	}
	return Position{Flavor: start.Flavor, GTID: set.String()}
}

func TestStreamTruncate(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE m (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
	tables := []*schema.Table{f.table(t, "m")}
	run := f.startStream(t, tables, f.position(t), 0)
	f.exec(t, "INSERT INTO m VALUES (1)", "TRUNCATE TABLE other", "TRUNCATE TABLE m")
	if x := run.nextTxn(t); len(x.changes) != 1 || x.changes[0].Op != cdc.OpInsert {
		t.Fatalf("want the insert, got %d changes", len(x.changes))
	}
	x := run.nextTxn(t)
	if len(x.changes) != 1 {
		t.Fatalf("want one change, got %d", len(x.changes))
	}
	c := x.changes[0]
	if c.Op != cdc.OpTruncate || c.Relation != nil || len(c.Truncated) != 1 || c.Truncated[0].Table != tables[0].ID {
		t.Fatalf("want a truncate of %s, got %+v", tables[0].ID, c)
	}
	if got, want := x.commit.Position.(Position), f.position(t); got.GTID != want.GTID || got.File == "" {
		t.Errorf("truncate commits at %s, want %s", got, want)
	}
}

// TestStreamWatermark passes the watermark table's rows through and skips migrated's other
// tables and unmigrated ones, whose transactions still move the position.
func TestStreamWatermark(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE m (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)",
		"CREATE DATABASE IF NOT EXISTS "+Quote(StateDB),
		"CREATE TABLE IF NOT EXISTS `_migrated`.`watermark` (`id` BIGINT PRIMARY KEY, `mark` VARCHAR(255))",
		"CREATE TABLE IF NOT EXISTS `_migrated`.`stream_test_other` (`id` BIGINT PRIMARY KEY)")
	tables := []*schema.Table{f.table(t, "m")}
	run := f.startStream(t, tables, f.position(t), time.Hour)
	mark := strconv.FormatInt(time.Now().UnixNano(), 10)
	f.exec(t, "INSERT INTO other VALUES (1)", "REPLACE INTO `_migrated`.`stream_test_other` VALUES ("+mark+")",
		"INSERT INTO `_migrated`.`watermark` VALUES ("+mark+", 'low 😀')")
	end := f.position(t)
	x := run.nextTxn(t)
	if len(x.changes) != 1 {
		t.Fatalf("want the watermark change, got %d changes", len(x.changes))
	}
	c := x.changes[0]
	want := WatermarkRelation()
	if c.Relation.Table != want.Table || len(c.Relation.Columns) != 2 || c.Relation.Columns[0] != want.Columns[0] || c.Relation.Columns[1] != want.Columns[1] {
		t.Fatalf("watermark relation %+v, want %+v", c.Relation, want)
	}
	if !c.Relation.Columns[0].Key || c.Relation.Columns[1].Key {
		t.Errorf("watermark key columns %+v, want id only", c.Relation.Columns)
	}
	if got := string(c.New[1].Data); c.Op != cdc.OpInsert && c.Op != cdc.OpUpdate || string(c.New[0].Data) != mark || got != "low 😀" {
		t.Errorf("watermark change %v %s %s", c.Op, showValue(c.New[0]), showValue(c.New[1]))
	}
	if got := x.commit.Position.(Position); got.GTID != end.GTID || got.File == "" || got.Offset == 0 {
		t.Errorf("watermark commits at %s, want %s", got, end)
	}
}

// TestStreamHeartbeat reports the position on an idle source.
func TestStreamHeartbeat(t *testing.T) {
	f := newStreamFixture(t)
	f.exec(t, "CREATE TABLE m (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
	tables := []*schema.Table{f.table(t, "m")}
	f.exec(t, "INSERT INTO other VALUES (1)")
	start := f.position(t)
	run := f.startStream(t, tables, start, 200*time.Millisecond)
	for range 3 {
		ev := run.next(t)
		if ev.Kind != cdc.EventHeartbeat {
			t.Fatalf("got event kind %d, want heartbeats", ev.Kind)
		}
		if got := ev.Position.(Position); got.GTID != start.GTID {
			t.Errorf("heartbeat at %s, want %s", got, start)
		}
	}
	// A transaction of an unmigrated table becomes a heartbeat at its position.
	f.exec(t, "INSERT INTO other VALUES (2)")
	end := f.position(t)
	for {
		ev := run.next(t)
		if ev.Kind != cdc.EventHeartbeat {
			t.Fatalf("got event kind %d, want heartbeats", ev.Kind)
		}
		if ev.Position.(Position).GTID == end.GTID {
			break
		}
	}
}

func TestReadQuery(t *testing.T) {
	id := func(db, name string) cdc.TableID { return cdc.TableID{Schema: db, Name: name} }
	tests := []struct {
		query  string
		kind   queryKind
		tables []cdc.TableID
		dbs    []string
	}{
		{"BEGIN", queryBegin, nil, nil},
		{"COMMIT", queryCommit, nil, nil},
		{"ROLLBACK", queryCommit, nil, nil},
		{"ROLLBACK TO SAVEPOINT `s`", queryOther, nil, nil},
		{"SAVEPOINT `s`", queryOther, nil, nil},
		{"ALTER TABLE t ADD COLUMN x INT", queryDDL, []cdc.TableID{id("d", "t")}, nil},
		{"alter online ignore table `o`.`t``x` add column x int", queryDDL, []cdc.TableID{id("o", "t`x")}, nil},
		{"/* c */ ALTER TABLE IF EXISTS o.t DROP x", queryDDL, []cdc.TableID{id("o", "t")}, nil},
		{"/*!40000 ALTER TABLE `t` DISABLE KEYS */", queryDDL, []cdc.TableID{id("d", "t")}, nil},
		{"ALTER DATABASE d CHARACTER SET utf8mb4", queryOther, nil, nil},
		{"DROP TABLE IF EXISTS `a`, b.c /* generated by server */", queryDDL, []cdc.TableID{id("d", "a"), id("b", "c")}, nil},
		{"DROP TEMPORARY TABLE IF EXISTS t", queryOther, nil, nil},
		{"RENAME TABLE a TO b, c.d TO e", queryDDL, []cdc.TableID{id("d", "a"), id("d", "b"), id("c", "d"), id("d", "e")}, nil},
		{"CREATE UNIQUE INDEX i ON t (x)", queryDDL, []cdc.TableID{id("d", "t")}, nil},
		{"DROP INDEX IF EXISTS i ON o.t", queryDDL, []cdc.TableID{id("o", "t")}, nil},
		{"CREATE TABLE t (x INT)", queryOther, nil, nil},
		{"CREATE OR REPLACE TABLE t (x INT)", queryDDL, []cdc.TableID{id("d", "t")}, nil},
		{"DROP DATABASE IF EXISTS `x`", queryDDL, nil, []string{"x"}},
		{"TRUNCATE TABLE t", queryTruncate, []cdc.TableID{id("d", "t")}, nil},
		{"truncate o.t", queryTruncate, []cdc.TableID{id("o", "t")}, nil},
		{"INSERT INTO o.t VALUES ('t')", queryDML, []cdc.TableID{id("o", "t")}, nil},
		{"update t1 join x.t2 set a = t2.b", queryDML, []cdc.TableID{id("d", "t1"), id("x", "t2")}, nil},
		{"GRANT SELECT ON *.* TO x", queryOther, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got := readQuery([]byte(tt.query), "d")
			if tt.kind == queryDML { // DML lists every name it mentions: check the ones that matter
				got.tables = slices.DeleteFunc(got.tables, func(id cdc.TableID) bool { return !slices.Contains(tt.tables, id) })
				got.tables = slices.CompactFunc(got.tables, func(a, b cdc.TableID) bool { return a == b })
			}
			if got.kind != tt.kind || !slices.Equal(got.tables, tt.tables) || strings.Join(got.dbs, ",") != strings.Join(tt.dbs, ",") {
				t.Errorf("readQuery = %+v, want kind %d tables %v dbs %v", got, tt.kind, tt.tables, tt.dbs)
			}
		})
	}
}

func FuzzReadQuery(f *testing.F) {
	for _, s := range []string{"ALTER TABLE `a`.b ADD x", "/*!5 DROP TABLE a */", "INSERT INTO 'x", "RENAME TABLE a TO", "-- x\n#\n/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		readQuery([]byte(q), "d")
	})
}

// TestBehind: a source position read before a commit is behind the commit's position; one read
// after it, or at it, is not.
func TestBehind(t *testing.T) {
	const uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	for _, tt := range []struct {
		flavor, seen, applied string
		want                  bool
	}{
		{mysql.MariaDBFlavor, "0-1-5", "0-1-7", true},
		{mysql.MariaDBFlavor, "0-1-7", "0-1-7", false},
		{mysql.MariaDBFlavor, "0-1-9", "0-1-7", false},
		{mysql.MariaDBFlavor, "0-1-9", "0-1-7,1-2-3", true}, // a domain not seen yet
		{mysql.MariaDBFlavor, "", "0-1-7", true},
		{mysql.MySQLFlavor, uuid + ":1-5", uuid + ":1-7", true},
		{mysql.MySQLFlavor, uuid + ":1-9", uuid + ":1-7", false},
		{mysql.MariaDBFlavor, "not a set", "0-1-7", false},
	} {
		if got := Behind(tt.flavor, tt.seen, tt.applied); got != tt.want {
			t.Errorf("Behind(%s, %q, %q) = %v, want %v", tt.flavor, tt.seen, tt.applied, got, tt.want)
		}
	}
}

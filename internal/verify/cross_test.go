package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/mysql"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

// The engine adapters are what Cross takes.
var (
	_ CrossSource = (*mysql.VerifyRows)(nil)
	_ CrossTarget = (*mysql.VerifyRows)(nil)
	_ CrossSource = (*postgres.VerifyRows)(nil)
	_ CrossTarget = (*postgres.VerifyRows)(nil)
)

// memTable is a table in memory, keyed by its first column, for testing Cross's own logic. It is
// both a CrossSource and a CrossTarget.
type memTable struct {
	mu   sync.Mutex
	rows map[string][]cdc.Value
}

func newMemTable(rows ...string) *memTable {
	m := &memTable{rows: map[string][]cdc.Value{}}
	for _, r := range rows {
		m.set(r)
	}
	return m
}

// set stores a row written "key=value", or deletes "key=" .
func (m *memTable) set(row string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, v, _ := strings.Cut(row, "=")
	if v == "" {
		delete(m.rows, k)
		return
	}
	m.rows[k] = []cdc.Value{{Data: []byte(k)}, {Data: []byte(v)}}
}

func (m *memTable) Rows(_ context.Context, _ *schema.Table, after []string, limit int) ([][]cdc.Value, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.rows {
		if after == nil || k > after[0] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out [][]cdc.Value
	for _, k := range keys[:min(limit, len(keys))] {
		out = append(out, m.rows[k])
	}
	return out, nil
}

func (m *memTable) Keys(ctx context.Context, t *schema.Table, after []string, limit int) ([][]string, error) {
	rows, _ := m.Rows(ctx, t, after, limit)
	var keys [][]string
	for _, r := range rows {
		keys = append(keys, []string{string(r[0].Data)})
	}
	return keys, nil
}

func (m *memTable) Lookup(_ context.Context, _ *schema.Table, keys [][]string) ([][]cdc.Value, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]cdc.Value, len(keys))
	for i, k := range keys {
		out[i] = m.rows[k[0]]
	}
	return out, nil
}

func (m *memTable) Exists(ctx context.Context, t *schema.Table, keys [][]string) ([]bool, error) {
	rows, _ := m.Lookup(ctx, t, keys)
	ok := make([]bool, len(rows))
	for i, r := range rows {
		ok[i] = r != nil
	}
	return ok, nil
}

func (m *memTable) Compare(ctx context.Context, t *schema.Table, rows [][]cdc.Value) (map[int]string, error) {
	diff := map[int]string{}
	for i, row := range rows {
		have, _ := m.Lookup(ctx, t, [][]string{{string(row[0].Data)}})
		switch {
		case have[0] == nil:
			diff[i] = ""
		case !bytes.Equal(have[0][1].Data, row[1].Data):
			diff[i] = "v"
		}
	}
	return diff, nil
}

var memSchema = &schema.Table{ID: cdc.TableID{Schema: "s", Name: "t"}, Key: []string{"id"}, Columns: []schema.Column{{Name: "id"}, {Name: "v"}}}

// mismatches lists a result's mismatches as "kind table key column", sorted.
func mismatches(res CrossResult) []string {
	var out []string
	for _, t := range res.Tables {
		for _, m := range t.Mismatches {
			out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", m.Kind, m.Table, m.Key, m.Column)))
		}
	}
	slices.Sort(out)
	return out
}

func TestCrossRecheck(t *testing.T) {
	for _, tt := range []struct {
		name     string
		src, dst []string
		// applied is what the stream applies to the target at each WaitCaughtUp; a row
		// written "s:key=value" is written to the source instead.
		applied   [][]string
		rechecks  int
		want      []string
		wantWaits int
	}{
		{name: "equal", src: []string{"01=a", "02=b"}, dst: []string{"01=a", "02=b"}},
		{name: "in flight, settled by the stream",
			src: []string{"01=a", "02=b", "03=c"}, dst: []string{"01=a", "02=old", "04=gone"},
			applied: [][]string{{"02=b", "03=c"}, {"04="}}, wantWaits: 2},
		{name: "deleted on both sides while in flight",
			src: []string{"01=a", "02=b"}, dst: []string{"01=a"},
			applied: [][]string{{"s:02="}}, wantWaits: 2},
		{name: "persistent differences",
			src: []string{"01=a", "02=b", "03=c"}, dst: []string{"01=a", "02=x", "04=d"},
			want:      []string{"different s.t (t02) v", "extra s.t (t04)", "missing s.t (t03)"},
			wantWaits: 6},
		{name: "one recheck", rechecks: 1,
			src: []string{"01=a", "02=b", "03=c"}, dst: []string{"01=a", "02=x", "04=d"},
			want:      []string{"different s.t (t02) v", "extra s.t (t04)", "missing s.t (t03)"},
			wantWaits: 2},
		{name: "the kind a key has when reported",
			src: []string{"01=a", "02=b"}, dst: []string{"01=x", "02=b"},
			applied: [][]string{{"01="}, {}, {}}, want: []string{"missing s.t (t01)"}, wantWaits: 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The target's keys carry a "t" the converter adds and KeyToSource takes away.
			src := newMemTable()
			for _, r := range tt.src {
				src.set("t" + r)
			}
			dst := newMemTable()
			for _, r := range tt.dst {
				dst.set("t" + r)
			}
			waits := 0
			var progress []int64
			c := &Cross{Source: src, Target: dst, ChunkRows: 2, Rechecks: tt.rechecks,
				WaitCaughtUp: func(context.Context) error {
					if waits < len(tt.applied) {
						for _, r := range tt.applied[waits] {
							if r, ok := strings.CutPrefix(r, "s:"); ok {
								src.set("t" + r)
							} else {
								dst.set("t" + r)
							}
						}
					}
					waits++
					return nil
				},
				Progress: func(r CrossTableResult) { progress = append(progress, r.Rows) },
			}
			res, err := c.Run(t.Context(), []CrossTable{{Source: memSchema, Target: memSchema}})
			if err != nil {
				t.Fatal(err)
			}
			if got := mismatches(res); !slices.Equal(got, tt.want) {
				t.Errorf("mismatches = %q, want %q", got, tt.want)
			}
			if res.Clean != (len(tt.want) == 0) || !res.Tables[0].Done {
				t.Errorf("result = %+v", res)
			}
			if waits != tt.wantWaits {
				t.Errorf("WaitCaughtUp called %d times, want %d", waits, tt.wantWaits)
			}
			if got, want := progress[len(progress)-1], int64(len(tt.src)); got != want {
				t.Errorf("last progress = %d, want %d", got, want)
			}
		})
	}
}

func TestCrossConvertAndErrors(t *testing.T) {
	src := newMemTable("1=a", "2=b", "3=c")
	dst := newMemTable("k1=A", "k2=B", "k3=C", "k9=Z")
	noWait := func(context.Context) error { return nil }
	c := &Cross{Source: src, Target: dst, WaitCaughtUp: noWait,
		Convert: func(_ *schema.Table, row []cdc.Value) ([]cdc.Value, error) {
			return []cdc.Value{{Data: append([]byte("k"), row[0].Data...)}, {Data: bytes.ToUpper(row[1].Data)}}, nil
		},
		KeyToSource: func(_ *schema.Table, key []string) ([]string, error) {
			return []string{strings.TrimPrefix(key[0], "k")}, nil
		},
	}
	res, err := c.Run(t.Context(), []CrossTable{{Source: memSchema, Target: memSchema}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mismatches(res), []string{"extra s.t (9)"}; !slices.Equal(got, want) {
		t.Errorf("mismatches = %q, want %q", got, want)
	}
	sum := res.Summary()
	if sum.Clean || sum.Tables != 1 || sum.TablesDone != 1 || sum.Chunks != 2 || sum.Mismatched != 1 ||
		len(sum.Samples) != 1 || sum.Samples[0] != (Mismatch{"s.t", "(9)", KindExtra}) {
		t.Errorf("Summary = %+v", sum)
	}

	broken := errors.New("broken")
	for _, tt := range []struct {
		name string
		c    Cross
		tbl  CrossTable
		want string
	}{
		{"no wait", Cross{Source: src, Target: dst}, CrossTable{memSchema, memSchema}, "WaitCaughtUp are required"},
		{"no key", Cross{Source: src, Target: dst, WaitCaughtUp: noWait},
			CrossTable{&schema.Table{ID: memSchema.ID, Columns: memSchema.Columns}, memSchema}, "no primary key"},
		{"column missing on the target", Cross{Source: src, Target: dst, WaitCaughtUp: noWait},
			CrossTable{memSchema, &schema.Table{ID: memSchema.ID, Key: []string{"id"}, Columns: memSchema.Columns[:1]}}, "column v is missing from the target"},
		{"extra column on the target", Cross{Source: src, Target: dst, WaitCaughtUp: noWait},
			CrossTable{memSchema, &schema.Table{ID: memSchema.ID, Key: []string{"id"}, Columns: append(slices.Clone(memSchema.Columns), schema.Column{Name: "w"})}}, "has a column w"},
		{"other key", Cross{Source: src, Target: dst, WaitCaughtUp: noWait},
			CrossTable{memSchema, &schema.Table{ID: memSchema.ID, Key: []string{"v"}, Columns: memSchema.Columns}}, "not in the key of the target"},
		{"convert fails", Cross{Source: src, Target: dst, WaitCaughtUp: noWait,
			Convert: func(*schema.Table, []cdc.Value) ([]cdc.Value, error) { return nil, broken }},
			CrossTable{memSchema, memSchema}, "convert the source row (1) into the target's form: broken"},
		{"wait fails", Cross{Source: src, Target: dst, WaitCaughtUp: func(context.Context) error { return broken }},
			CrossTable{memSchema, memSchema}, "wait for the target to catch up with the source: broken"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.c.Run(t.Context(), []CrossTable{tt.tbl})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v, want an error with %q", err, tt.want)
			}
			if res.Clean {
				t.Error("a failed run is clean")
			}
		})
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Run(ctx, []CrossTable{{memSchema, memSchema}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a done context: %v", err)
	}
}

func TestFormatCrossKey(t *testing.T) {
	if got, want := formatCrossKey([]string{"1", "a b", "\x00\xff", "é😀", "tab\t"}), `(1,a b,\x00ff,é😀,\x74616209)`; got != want {
		t.Errorf("formatCrossKey = %s, want %s", got, want)
	}
}

// crossMariaDB creates a MariaDB database and returns its address and a session on it.
func crossMariaDB(t *testing.T, db string) (mysql.Addr, *client.Conn) {
	t.Helper()
	m := testenv.RequireMariaDB(t)
	if err := m.CreateDB(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	a, err := mysql.ParseDSN(m.DSN(db), m.Password())
	if err != nil {
		t.Fatal(err)
	}
	c, err := mysql.Connect(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return a, c
}

func myExec(t *testing.T, c *client.Conn, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := c.Execute(q); err != nil {
			t.Fatalf("%.200s: %v", q, err)
		}
	}
}

func myTables(t *testing.T, c *client.Conn, db string) []*schema.Table {
	t.Helper()
	tables, err := mysql.Tables(c, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

// crossPG creates a PostgreSQL database and returns its DSN and a pool whose sessions are in UTC,
// as the migration's writer must be for MySQL's TIMESTAMP values.
func crossPG(t *testing.T, db string) (string, *pgxpool.Pool) {
	t.Helper()
	pg := testenv.RequirePostgres(t)
	dsn, err := pg.CreateDB(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	return dsn, connect(t, dsn, map[string]string{"TimeZone": "UTC"})
}

// pairTables pairs source and target tables by name.
func pairTables(t *testing.T, src, dst []*schema.Table) []CrossTable {
	t.Helper()
	var out []CrossTable
	for _, s := range src {
		i := slices.IndexFunc(dst, func(d *schema.Table) bool { return d.ID.Name == s.ID.Name })
		if i < 0 {
			t.Fatalf("no target table %s", s.ID.Name)
		}
		out = append(out, CrossTable{Source: s, Target: dst[i]})
	}
	return out
}

// readAll reads every row of t.
func readAll(t *testing.T, src CrossSource, tbl *schema.Table) [][]cdc.Value {
	t.Helper()
	rows, err := src.Rows(t.Context(), tbl, nil, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// mysqlToPG is the migration's conversion of MySQL rows for PostgreSQL: binary values become
// bytea hex (daemon.toBytea).
func mysqlToPG(t *schema.Table, row []cdc.Value) ([]cdc.Value, error) {
	out := slices.Clone(row)
	for i, c := range mysql.CopyColumns(t) {
		switch c.DataType {
		case "binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob":
			if out[i].Kind == cdc.ValueText {
				out[i].Data = fmt.Appendf(nil, `\x%x`, out[i].Data)
			}
		}
	}
	return out, nil
}

// upsertPG writes converted rows into a PostgreSQL table as the writer does: text cast to the
// column types.
func upsertPG(ctx context.Context, pool *pgxpool.Pool, tbl *schema.Table, rows [][]cdc.Value) error {
	cols := tbl.CopyColumns()
	var names, params, set []string
	for i, c := range cols {
		j := slices.IndexFunc(tbl.Columns, func(col schema.Column) bool { return col.Name == c })
		names = append(names, pgx.Identifier{c}.Sanitize())
		params = append(params, fmt.Sprintf("$%d::text::%s", i+1, tbl.Columns[j].Type))
		set = append(set, pgx.Identifier{c}.Sanitize()+" = EXCLUDED."+pgx.Identifier{c}.Sanitize())
	}
	keys := make([]string, len(tbl.Key))
	for i, k := range tbl.Key {
		keys[i] = pgx.Identifier{k}.Sanitize()
	}
	sql := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s", pgx.Identifier{tbl.ID.Schema, tbl.ID.Name}.Sanitize(),
		strings.Join(names, ", "), strings.Join(params, ", "), strings.Join(keys, ", "), strings.Join(set, ", "))
	b := &pgx.Batch{}
	for _, row := range rows {
		args := make([]any, len(row))
		for i, v := range row {
			if v.Kind == cdc.ValueText {
				args[i] = string(v.Data)
			}
		}
		b.Queue(sql, args...)
	}
	return pool.SendBatch(ctx, b).Close()
}

type testPos string

func (p testPos) String() string { return string(p) }

// writeMySQL writes converted rows into MySQL tables with the migration's own writer. mine are
// the MySQL tables, src the tables whose IDs the rows carry.
func writeMySQL(t *testing.T, a mysql.Addr, mine []*schema.Table, src *schema.Table, rows [][]cdc.Value) {
	t.Helper()
	i := slices.IndexFunc(mine, func(m *schema.Table) bool { return m.ID.Name == src.ID.Name })
	view := *mine[i]
	view.ID = src.ID
	w, err := mysql.NewTarget(t.Context(), a, "m", "forward", []*schema.Table{&view})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	txn, err := w.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rel := view.Relation()
	for _, row := range rows {
		if err := txn.Add(t.Context(), &cdc.Change{Op: cdc.OpInsert, Relation: rel, New: row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.Commit(t.Context(), testPos("p"), time.Now()); err != nil {
		t.Fatal(err)
	}
}

func runCross(t *testing.T, c *Cross, tables []CrossTable) CrossResult {
	t.Helper()
	if c.WaitCaughtUp == nil {
		c.WaitCaughtUp = func(context.Context) error { return nil }
	}
	c.ChunkRows = 50
	res, err := c.Run(t.Context(), tables)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range res.Tables {
		if !tr.Done || tr.Rows == 0 || tr.TargetRows == 0 {
			t.Errorf("table result %+v: not done, or nothing compared", tr)
		}
	}
	return res
}

func checkMismatches(t *testing.T, res CrossResult, want []string) {
	t.Helper()
	slices.Sort(want)
	if got := mismatches(res); !slices.Equal(got, want) {
		t.Errorf("mismatches =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Clean != (len(want) == 0) {
		t.Errorf("Clean = %v with %d mismatches", res.Clean, len(want))
	}
}

// mysqlAllTypes is a MariaDB table with every type the canonical form treats specially: 240
// generated rows and two of extremes.
var mysqlAllTypes = []string{
	"CREATE TABLE alltypes (id INT NOT NULL PRIMARY KEY, tiu TINYINT UNSIGNED, biu BIGINT UNSIGNED, de DECIMAL(65,30), " +
		"f FLOAT, d DOUBLE, bin BINARY(16), vb VARBINARY(32), vc VARCHAR(100) CHARACTER SET utf8mb4, dtm DATETIME(6), " +
		"ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), yr YEAR, js JSON, en ENUM('a','b','c d'), st SET('x','y','z'), " +
		"b64 BIT(64), n INT NULL, g BIGINT AS (id * 2) STORED)",
	"INSERT INTO alltypes (id, tiu, biu, de, f, d, bin, vb, vc, dtm, ts, tm, yr, js, en, st, b64) " +
		"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 240) " +
		"SELECT i, i % 256, 18446744073709551615 - i, CONCAT(i, '.', REPEAT('1', 30)), i / 7, i / 3, UNHEX(LPAD(HEX(i), 4, '0')), " +
		"UNHEX(REPEAT('00', i % 4)), CONCAT('emoji 😀 ünï ', i), TIMESTAMP('2024-02-29 23:59:59.999999') + INTERVAL i MINUTE, " +
		"TIMESTAMP('2038-01-19 03:14:07.999999') - INTERVAL i HOUR, SEC_TO_TIME(i * 3600 - 3000000) + INTERVAL 1 MICROSECOND, " +
		"IF(i % 10 = 0, 0, 1901 + i), CONCAT('{\"i\":', i, '}'), ELT(1 + i % 3, 'a', 'b', 'c d'), ELT(1 + i % 4, '', 'x', 'x,z', 'x,y,z'), i FROM s",
	"INSERT INTO alltypes (id, tiu, biu, de, f, d, bin, vb, vc, dtm, ts, tm, yr, js, en, st, b64, n) VALUES " +
		"(1001, 255, 18446744073709551615, '12345678901234567890123456789012345.123456789012345678901234567890', 3.40282e38, " +
		"1.7976931348623157e308, X'0102', X'00FF00', 'emoji 😀🎉 ünïcödé \\'q\\' \\\\', '9999-12-31 23:59:59.999999', " +
		"'2038-01-19 03:14:07.999999', '-838:59:59', 0, '{\"a\": [1, 2.5, \"x\"], \"b\": null}', 'c d', 'z,x', 0xFFFFFFFFFFFFFFFF, NULL), " +
		"(1002, 0, 0, '-0.000000000000000000000000000001', -1.2345678, -0.1, X'', X'', '', '1000-01-01 00:00:00', " +
		"'1970-01-01 00:00:01', '838:59:59', 2155, '[]', 'a', '', 0, 0)",
	"CREATE TABLE bk (id BINARY(16) NOT NULL, at TIMESTAMP(6) NOT NULL DEFAULT '2000-01-01', v INT, PRIMARY KEY (id, at))",
	"INSERT INTO bk WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 60) " +
		"SELECT UNHEX(LPAD(HEX(i), 4, '0')), TIMESTAMP('2024-01-01') + INTERVAL i MICROSECOND, i FROM s",
}

// TestCrossMariaDB verifies MariaDB → MariaDB: equal, then with a changed value per tricky type
// (a bit of a binary value, the 30th decimal digit, a microsecond, a space in JSON), a missing
// row and an extra one; a key changed only in case counts as one key missing and one extra.
func TestCrossMariaDB(t *testing.T) {
	srcAddr, src := crossMariaDB(t, "cross_src")
	dstAddr, dst := crossMariaDB(t, "cross_dst")
	ddl := append(slices.Clone(mysqlAllTypes),
		"CREATE TABLE pairs (name VARCHAR(20) NOT NULL, n INT NOT NULL, v VARCHAR(10), PRIMARY KEY (name, n))",
		"INSERT INTO pairs VALUES ('ABC', 1, 'x'), ('abd', 1, NULL), ('b', 2, ''), ('😀', 1, 'e')")
	myExec(t, src, ddl...)
	myExec(t, dst, ddl...)
	srcRows, dstRows := mysql.NewVerifyRows(srcAddr), mysql.NewVerifyRows(dstAddr)
	t.Cleanup(srcRows.Close)
	t.Cleanup(dstRows.Close)
	tables := pairTables(t, myTables(t, src, "cross_src"), myTables(t, dst, "cross_dst"))

	c := &Cross{Source: srcRows, Target: dstRows}
	checkMismatches(t, runCross(t, c, tables), nil)

	myExec(t, dst,
		"UPDATE alltypes SET bin = X'000B' WHERE id = 10",
		"UPDATE alltypes SET de = '20.111111111111111111111111111112' WHERE id = 20",
		"UPDATE alltypes SET dtm = dtm + INTERVAL 1 MICROSECOND WHERE id = 30",
		`UPDATE alltypes SET js = '{"i": 40}' WHERE id = 40`,
		"UPDATE alltypes SET bin = X'01020000000000000000000000000001' WHERE id = 1001",
		"DELETE FROM alltypes WHERE id = 50",
		"INSERT INTO alltypes (id) VALUES (5000)",
		"UPDATE pairs SET name = 'abc' WHERE name = 'ABC'",
		"DELETE FROM bk WHERE v = 5")
	checkMismatches(t, runCross(t, c, tables), []string{
		"different cross_src.alltypes (10) bin",
		"different cross_src.alltypes (20) de",
		"different cross_src.alltypes (30) dtm",
		"different cross_src.alltypes (40) js",
		"different cross_src.alltypes (1001) bin",
		"missing cross_src.alltypes (50)",
		"extra cross_src.alltypes (5000)",
		"missing cross_src.pairs (ABC,1)",
		"extra cross_src.pairs (abc,1)",
		`missing cross_src.bk (\x00050000000000000000000000000000,2024-01-01 00:00:00.000005)`,
	})
}

// TestCrossMariaDBToPostgres verifies MariaDB → PostgreSQL, with the target built by the type map
// and written with the migration's conversion.
func TestCrossMariaDBToPostgres(t *testing.T) {
	srcAddr, src := crossMariaDB(t, "cross_my")
	myExec(t, src, mysqlAllTypes...)
	srcTables := myTables(t, src, "cross_my")
	dsn, pool := crossPG(t, "cross_pg")
	dstTables := foreignPG(t, pool, srcTables)
	srcRows := mysql.NewVerifyRows(srcAddr)
	t.Cleanup(srcRows.Close)
	dstRows, err := postgres.NewVerifyRows(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dstRows.Close)
	tables := pairTables(t, srcTables, dstTables)
	for _, tb := range tables {
		rows := mysqlToPGRows(readAll(t, srcRows, tb.Source), tb.Source)
		if err := upsertPG(t.Context(), pool, tb.Target, rows); err != nil {
			t.Fatal(err)
		}
	}

	c := &Cross{Source: srcRows, Target: dstRows, Convert: mysqlToPG, KeyToSource: mysql.KeyFromPostgres}
	checkMismatches(t, runCross(t, c, tables), nil)

	exec(t, pool, `
UPDATE cross_my.alltypes SET bin = set_byte(bin, 1, get_byte(bin, 1) # 1) WHERE id = 10;
UPDATE cross_my.alltypes SET de = de + 1e-30 WHERE id = 20;
UPDATE cross_my.alltypes SET dtm = dtm + interval '1 microsecond' WHERE id = 30;
UPDATE cross_my.alltypes SET js = '{"i": 40}' WHERE id = 40;
UPDATE cross_my.alltypes SET tm = tm - interval '1 microsecond' WHERE id = 1001;
UPDATE cross_my.alltypes SET f = 3.4028e38 WHERE id = 1002;
DELETE FROM cross_my.alltypes WHERE id = 50;
INSERT INTO cross_my.alltypes (id) VALUES (5000);
DELETE FROM cross_my.bk WHERE v = 5;
INSERT INTO cross_my.bk VALUES ('\x00ff', '2030-01-01 00:00:00.5+00', 1);`)
	checkMismatches(t, runCross(t, c, tables), []string{
		"different cross_my.alltypes (10) bin",
		"different cross_my.alltypes (20) de",
		"different cross_my.alltypes (30) dtm",
		"different cross_my.alltypes (40) js",
		"different cross_my.alltypes (1001) tm",
		"different cross_my.alltypes (1002) f",
		"missing cross_my.alltypes (50)",
		"extra cross_my.alltypes (5000)",
		`missing cross_my.bk (\x00050000000000000000000000000000,2024-01-01 00:00:00.000005)`,
		`extra cross_my.bk (\x00ff,2030-01-01 00:00:00.500000)`,
	})
}

func mysqlToPGRows(rows [][]cdc.Value, t *schema.Table) [][]cdc.Value {
	out := make([][]cdc.Value, len(rows))
	for i, r := range rows {
		out[i], _ = mysqlToPG(t, r)
	}
	return out
}

// foreignPG creates the PostgreSQL tables of MySQL tables through the type map, and returns
// them as the PostgreSQL catalog reads them.
func foreignPG(t *testing.T, pool *pgxpool.Pool, tables []*schema.Table) []*schema.Table {
	t.Helper()
	pre, _, _, err := postgres.ForeignSchema(tables, nil, schema.TypeMap{Dir: schema.DirMySQLToPostgres})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range pre {
		exec(t, pool, q)
	}
	out, err := postgres.Tables(t.Context(), pool, func(s, _ string) bool { return s == tables[0].ID.Schema })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCrossPostgresToMariaDB verifies PostgreSQL → MariaDB, with the target built by the type map
// (and an override for a binary key) and written by the migration's converter and writer.
func TestCrossPostgresToMariaDB(t *testing.T) {
	dsn, pool := crossPG(t, "cross_pgsrc")
	exec(t, pool, `
CREATE SCHEMA shop;
CREATE TABLE shop.items (id bigint PRIMARY KEY, si smallint, n65 numeric(65,30), r real, d double precision, b boolean,
  t text, vc varchar(20), c5 char(5), raw bytea, dt date, ts timestamp(6), tstz timestamptz(6), tm time(6), u uuid,
  j json, jb jsonb, twice int GENERATED ALWAYS AS (si * 2) STORED);
INSERT INTO shop.items (id, si, n65, r, d, b, t, vc, c5, raw, dt, ts, tstz, tm, u, j, jb)
SELECT g, g % 32767, g + 0.111111111111111111111111111111, g / 7.0, g / 3.0, g % 2 = 0, 'emoji 😀 ünï ' || g, 'v' || g,
       'c' || (g % 100), decode(lpad(to_hex(g), 4, '0'), 'hex'), date '2024-02-29' + g,
       timestamp '2024-02-29 23:59:59.999999' + g * interval '1 minute',
       timestamptz '2024-06-30 23:59:59.999999-12:00' + g * interval '1 hour 1 microsecond',
       time '12:00:00.000001' + g * interval '1 second', md5(g::text)::uuid, ('{"i":' || g || '}')::json,
       jsonb_build_object('i', g, 'a', 'é')
  FROM generate_series(1, 240) g;
INSERT INTO shop.items (id, si, n65, r, d, b, t, vc, c5, raw, dt, ts, tstz, tm, u, j, jb) VALUES
 (9223372036854775807, 32767, 99999999999999999999999999999999999.999999999999999999999999999999, 3.4028235e38,
  1.7976931348623157e308, true, E'multi\nline ''q'' \\ tab\t', 'héllo 🎉', 'ab', '\x0001000000', '9999-12-31',
  '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00+00', '24:00:00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '{"b": 1, "a" : [1,2], "a": 3}', '{"z": {"y": [true, null, 1.50]}}'),
 (-9223372036854775808, -32768, -0.000000000000000000000000000001, 1e-45, 5e-324, false, '', '', '', '',
  '1000-01-01', '1000-01-01 00:00:00', '2024-07-01 12:00:00.000001 America/New_York', '00:00:00',
  '00000000-0000-0000-0000-000000000000', '[]', '{}'),
 (0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE shop.bk (id bytea, at timestamptz(6), v int, PRIMARY KEY (id, at));
INSERT INTO shop.bk SELECT decode(lpad(to_hex(g), 4, '0'), 'hex'), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 microsecond', g
  FROM generate_series(1, 60) g;`)
	srcTables, err := postgres.Tables(t.Context(), pool, func(s, _ string) bool { return s == "shop" })
	if err != nil {
		t.Fatal(err)
	}
	tm := schema.TypeMap{Dir: schema.DirPostgresToMySQL, Flavor: schema.FlavorMariaDB, Overrides: map[string]string{"shop.bk.id": "varbinary(16)"}}
	dstAddr, dst := crossMariaDB(t, "cross_mydst")
	pre, _, _, err := mysql.ForeignTables("cross_mydst", srcTables, nil, tm)
	if err != nil {
		t.Fatal(err)
	}
	myExec(t, dst, pre...)
	dstTables := myTables(t, dst, "cross_mydst")

	srcRows, err := postgres.NewVerifyRows(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srcRows.Close)
	dstRows := mysql.NewVerifyRows(dstAddr)
	t.Cleanup(dstRows.Close)
	conv := map[cdc.TableID]*mysql.PGConverter{}
	for _, tb := range srcTables {
		if conv[tb.ID], err = mysql.NewPGConverter(tb, tm); err != nil {
			t.Fatal(err)
		}
	}
	convert := func(t *schema.Table, row []cdc.Value) ([]cdc.Value, error) { return conv[t.ID].Row(row) }
	tables := pairTables(t, srcTables, dstTables)
	for _, tb := range tables {
		rows := readAll(t, srcRows, tb.Source)
		for i := range rows {
			if rows[i], err = convert(tb.Source, rows[i]); err != nil {
				t.Fatal(err)
			}
		}
		writeMySQL(t, dstAddr, dstTables, tb.Source, rows)
	}

	c := &Cross{Source: srcRows, Target: dstRows, Convert: convert, KeyToSource: postgres.KeyFromMySQL}
	checkMismatches(t, runCross(t, c, tables), nil)

	myExec(t, dst,
		"UPDATE items SET raw = X'000B' WHERE id = 10",
		"UPDATE items SET n65 = '20.111111111111111111111111111112' WHERE id = 20",
		"UPDATE items SET tstz = tstz + INTERVAL 1 MICROSECOND WHERE id = 30",
		`UPDATE items SET j = '{"i": 40}' WHERE id = 40`,
		"UPDATE items SET b = 0 WHERE id = 42",
		"UPDATE items SET r = 3.4028e38 WHERE id = 9223372036854775807",
		"DELETE FROM items WHERE id = 50",
		"INSERT INTO items (id, vc) VALUES (5000, '')",
		"DELETE FROM bk WHERE v = 5",
		"INSERT INTO bk VALUES (X'00ff', '2030-01-01 00:00:00.5', 1)")
	checkMismatches(t, runCross(t, c, tables), []string{
		"different shop.items (10) raw",
		"different shop.items (20) n65",
		"different shop.items (30) tstz",
		"different shop.items (40) j",
		"different shop.items (42) b",
		"different shop.items (9223372036854775807) r",
		"missing shop.items (50)",
		"extra shop.items (5000)",
		`missing shop.bk (\x0005,2024-01-01 00:00:00.000005+00)`,
		`extra shop.bk (\x00ff,2030-01-01 00:00:00.500000)`,
	})
}

// liveCross is a MariaDB database and its PostgreSQL copy, for verifies under writes.
type liveCross struct {
	addr    mysql.Addr
	src     *client.Conn
	srcRows *mysql.VerifyRows
	dstRows *postgres.VerifyRows
	pool    *pgxpool.Pool
	tables  []CrossTable
}

// newLiveCross creates MariaDB database db with ddl, its tables in PostgreSQL database db+"pg"
// as the migration would, and copies the rows of the first table there.
func newLiveCross(t *testing.T, db string, ddl ...string) *liveCross {
	t.Helper()
	l := &liveCross{}
	l.addr, l.src = crossMariaDB(t, db)
	myExec(t, l.src, ddl...)
	srcTables := myTables(t, l.src, db)
	var dsn string
	dsn, l.pool = crossPG(t, db+"pg")
	dstTables := foreignPG(t, l.pool, srcTables)
	l.srcRows = mysql.NewVerifyRows(l.addr)
	t.Cleanup(l.srcRows.Close)
	var err error
	if l.dstRows, err = postgres.NewVerifyRows(t.Context(), dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.dstRows.Close)
	l.tables = pairTables(t, srcTables, dstTables)
	first, firstPG := l.tables[0].Source, l.tables[0].Target
	if err := upsertPG(t.Context(), l.pool, firstPG, mysqlToPGRows(readAll(t, l.srcRows, first), first)); err != nil {
		t.Fatal(err)
	}
	return l
}

// liveWrite is a write the test's "stream" copies to the target: the seq-th, to key id.
type liveWrite struct {
	seq int64
	id  int
	at  time.Time
}

// stream copies each write's row, as it is on the source then, into the first table on the
// target 20 ms after the write, in order, and records the last seq copied in applied.
func (l *liveCross) stream(t *testing.T, writes <-chan liveWrite, applied *atomic.Int64) {
	src, dst := l.tables[0].Source, l.tables[0].Target
	del := "DELETE FROM " + pgx.Identifier{dst.ID.Schema, dst.ID.Name}.Sanitize() + " WHERE id = $1"
	for w := range writes {
		time.Sleep(time.Until(w.at.Add(20 * time.Millisecond)))
		got, err := l.srcRows.Lookup(context.Background(), src, [][]string{{fmt.Sprint(w.id)}})
		if err == nil {
			if got[0] == nil {
				_, err = l.pool.Exec(context.Background(), del, w.id)
			} else {
				err = upsertPG(context.Background(), l.pool, dst, mysqlToPGRows(got, src))
			}
		}
		if err != nil {
			t.Error(err)
			return
		}
		applied.Store(w.seq)
	}
}

// TestCrossLiveWrites verifies MariaDB → PostgreSQL while a writer changes the source and a
// lagging "stream" copies each changed row to the target some milliseconds later. A
// WaitCaughtUp that really waits for that stream must leave every run clean.
func TestCrossLiveWrites(t *testing.T) {
	l := newLiveCross(t, "cross_live",
		"CREATE TABLE hot (id INT NOT NULL PRIMARY KEY, v INT NOT NULL, b VARBINARY(8), at TIMESTAMP(6) NULL)",
		"INSERT INTO hot WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) "+
			"SELECT i, 0, UNHEX(HEX(i)), NOW(6) FROM s")
	src, srcRows, dstRows, tables := l.src, l.srcRows, l.dstRows, l.tables

	// The writer counts each write once committed, under mu, so that WaitCaughtUp sees every
	// write committed before it was called. The stream applies writes in order, each a delay
	// after it was made, by copying the row's current state on the source.
	var mu sync.Mutex
	var written int64
	var applied atomic.Int64
	writes := make(chan liveWrite, 1<<16)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(writes)
		stmts := []string{
			"UPDATE hot SET v = v + 1, at = NOW(6) WHERE id = %d",
			"DELETE FROM hot WHERE id = %d",
			"INSERT INTO hot VALUES (%d, 0, X'FF', NOW(6)) ON DUPLICATE KEY UPDATE v = v + 100, b = CONCAT(b, X'00')",
		}
		for ctx.Err() == nil {
			id := 1 + rand.IntN(1100)
			mu.Lock()
			_, err := src.Execute(fmt.Sprintf(stmts[rand.IntN(len(stmts))], id))
			if err == nil {
				written++
				writes <- liveWrite{seq: written, id: id, at: time.Now()}
			}
			mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		l.stream(t, writes, &applied)
	}()
	defer func() { stop(); wg.Wait() }()

	waits := 0
	c := &Cross{Source: srcRows, Target: dstRows, Convert: mysqlToPG, KeyToSource: mysql.KeyFromPostgres,
		WaitCaughtUp: func(ctx context.Context) error {
			waits++
			mu.Lock()
			target := written
			mu.Unlock()
			return waitApplied(ctx, &applied, target)
		}}
	for i := range 5 {
		mu.Lock()
		before := written
		mu.Unlock()
		res := runCross(t, c, tables)
		mu.Lock()
		after := written
		mu.Unlock()
		if !res.Clean {
			t.Errorf("run %d under writes: %q, want clean", i, mismatches(res))
		}
		if after == before {
			t.Errorf("run %d: no writes happened while it ran", i)
		}
	}
	mu.Lock()
	t.Logf("%d writes, %d waits", written, waits)
	mu.Unlock()
	if waits == 0 {
		t.Error("no run had a row in flight to wait for; the test proves nothing")
	}
}

// plainSource hides a source's LockRows: the verify sees only a CrossSource.
type plainSource struct{ CrossSource }

// TestCrossHotRow verifies MariaDB → PostgreSQL while a writer updates one row as fast as it
// can, and a "stream" copies the row to the target some milliseconds after each commit: the row
// is never the same on both sides at one moment, so only holding it still on the source lets
// the recheck compare it. With the source's LockRows the run is clean; without (the source seen
// as a plain CrossSource) the row is reported.
func TestCrossHotRow(t *testing.T) {
	l := newLiveCross(t, "cross_hot",
		"CREATE TABLE hot (id INT NOT NULL PRIMARY KEY, v INT NOT NULL)",
		"INSERT INTO hot WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200) SELECT i, 0 FROM s",
		// The stream's position: a counter each write moves in its own transaction, kept out of
		// the verified database.
		"CREATE DATABASE IF NOT EXISTS cross_hot_pos",
		"CREATE OR REPLACE TABLE cross_hot_pos.pos (id INT PRIMARY KEY, n BIGINT NOT NULL)",
		"INSERT INTO cross_hot_pos.pos VALUES (1, 0)")
	srcAddr, srcRows, dstRows, tables := l.addr, l.srcRows, l.dstRows, l.tables

	var applied atomic.Int64
	writes := make(chan liveWrite, 1<<16)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(writes)
		w, err := mysql.Connect(ctx, srcAddr)
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Close()
		for ctx.Err() == nil {
			var n int64
			err := w.Begin()
			if err == nil {
				_, err = w.Execute("UPDATE hot SET v = v + 1 WHERE id = 7")
			}
			if err == nil {
				_, err = w.Execute("UPDATE cross_hot_pos.pos SET n = n + 1 WHERE id = 1")
			}
			if err == nil {
				var r *gomysql.Result
				if r, err = w.Execute("SELECT n FROM cross_hot_pos.pos WHERE id = 1"); err == nil {
					n, _ = r.GetInt(0, 0)
					err = w.Commit()
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			writes <- liveWrite{seq: n, id: 7, at: time.Now()}
		}
	}()
	go func() {
		defer wg.Done()
		l.stream(t, writes, &applied)
	}()
	defer func() { stop(); wg.Wait() }()

	pos, err := mysql.Connect(t.Context(), srcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pos.Close()
	waitCaughtUp := func(ctx context.Context) error {
		r, err := pos.Execute("SELECT n FROM cross_hot_pos.pos WHERE id = 1")
		if err != nil {
			return err
		}
		target, _ := r.GetInt(0, 0)
		return waitApplied(ctx, &applied, target)
	}
	for i := range 3 {
		c := &Cross{Source: srcRows, Target: dstRows, Convert: mysqlToPG, KeyToSource: mysql.KeyFromPostgres, WaitCaughtUp: waitCaughtUp}
		if res := runCross(t, c, tables); !res.Clean {
			t.Errorf("run %d with the row held still: %q, want clean", i, mismatches(res))
		}
	}
	// Without the lock the hot row is reported: the lock above is what made it comparable.
	reported := false
	for range 3 {
		c := &Cross{Source: plainSource{srcRows}, Target: dstRows, Convert: mysqlToPG, KeyToSource: mysql.KeyFromPostgres, WaitCaughtUp: waitCaughtUp}
		if res := runCross(t, c, tables); slices.Equal(mismatches(res), []string{"different cross_hot.hot (7) v"}) {
			reported = true
			break
		}
	}
	if !reported {
		t.Error("without the lock the hot row was never reported; the test proves nothing")
	}
}

// TestLockRowsHold checks both engines' LockRows: it returns the rows as Lookup does, a writer
// of a locked row waits until release, and a writer of another row does not.
func TestLockRowsHold(t *testing.T) {
	ctx := t.Context()
	myAddr, my := crossMariaDB(t, "cross_lock")
	myExec(t, my, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)", "INSERT INTO t VALUES (1, 10), (2, 20)")
	myTable := myTables(t, my, "cross_lock")[0]
	myRows := mysql.NewVerifyRows(myAddr)
	t.Cleanup(myRows.Close)
	myWriter, err := mysql.Connect(ctx, myAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer myWriter.Close()
	myExec(t, myWriter, "SET SESSION innodb_lock_wait_timeout = 1")

	dsn, pool := crossPG(t, "cross_lockpg")
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 10), (2, 20)"); err != nil {
		t.Fatal(err)
	}
	pgTables, err := postgres.Tables(ctx, pool, func(s, n string) bool { return s == "public" && n == "t" })
	if err != nil {
		t.Fatal(err)
	}
	pgRows, err := postgres.NewVerifyRows(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pgRows.Close)

	for _, c := range []struct {
		name   string
		src    CrossLocker
		table  *schema.Table
		update func(id int) error
	}{
		{"mariadb", myRows, myTable, func(id int) error {
			_, err := myWriter.Execute(fmt.Sprintf("UPDATE t SET v = v + 1 WHERE id = %d", id))
			return err
		}},
		{"postgresql", pgRows, pgTables[0], func(id int) error {
			_, err := pool.Exec(ctx, fmt.Sprintf("SET lock_timeout = '1s'; UPDATE t SET v = v + 1 WHERE id = %d", id))
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows, release, err := c.src.LockRows(ctx, c.table, [][]string{{"1"}, {"3"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || rows[0] == nil || string(rows[0][1].Data) != "10" || rows[1] != nil {
				t.Errorf("LockRows returned %v, want the row (1, 10) and nothing for key 3", rows)
			}
			if err := c.update(2); err != nil {
				t.Errorf("a writer of an unlocked row: %v", err)
			}
			if err := c.update(1); err == nil {
				t.Error("a writer of the locked row did not wait")
			}
			release()
			if err := c.update(1); err != nil {
				t.Errorf("a writer of the row after release: %v", err)
			}
		})
	}
}

// waitApplied waits until a test stream has applied the write numbered target.
func waitApplied(ctx context.Context, applied *atomic.Int64, target int64) error {
	for applied.Load() < target {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

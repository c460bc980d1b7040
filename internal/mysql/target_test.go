package mysql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

func TestAppendLiteral(t *testing.T) {
	txt := func(s string) cdc.Value { return cdc.Value{Kind: cdc.ValueText, Data: []byte(s)} }
	for _, tt := range []struct {
		name     string
		dataType string
		v        cdc.Value
		want     string
		err      error
	}{
		{"null", "int", cdc.Value{Kind: cdc.ValueNull}, "NULL", nil},
		{"null string", "varchar", cdc.Value{Kind: cdc.ValueNull}, "NULL", nil},
		{"unchanged", "varchar", cdc.Value{Kind: cdc.ValueUnchanged}, "", ErrUnchangedValue},
		{"int", "int", txt("-2147483648"), "-2147483648", nil},
		{"unsigned bigint", "bigint", txt("18446744073709551615"), "18446744073709551615", nil},
		{"decimal", "decimal", txt("-0.000000000000000000000000000001"), "-0.000000000000000000000000000001", nil},
		{"double exponent", "double", txt("1e+300"), "1e+300", nil},
		// FLOAT is written with the digits of its exact double value, which reads back as the same float32.
		{"float", "float", txt("-3.25E-10"), "-3.2499999913504496e-10", nil},
		{"float max", "float", txt("3.4028235e+38"), "3.4028234663852886e+38", nil},
		{"leading dot", "double", txt(".5"), ".5", nil},
		{"year zero", "year", txt("0000"), "0000", nil},
		{"bit", "bit", txt("18446744073709551615"), "18446744073709551615", nil},
		{"injection in a number", "int", txt("1); DROP TABLE t; --"), "", ErrBadNumber},
		{"expression in a number", "bigint", txt("1-1"), "", ErrBadNumber},
		{"empty number", "int", txt(""), "", ErrBadNumber},
		{"sign only", "int", txt("-"), "", ErrBadNumber},
		{"exponent without digits", "double", txt("1e"), "", ErrBadNumber},
		{"hex number", "int", txt("0x10"), "", ErrBadNumber},
		{"nan", "double", txt("NaN"), "", ErrBadNumber},
		{"space", "int", txt(" 1"), "", ErrBadNumber},
		{"plain string", "varchar", txt("abc"), "'abc'", nil},
		{"empty string", "varchar", txt(""), "''", nil},
		{"escapes", "text", txt("a\\b'c\"d\x00e\nf\rg\x1ah"), `'a\\b\'c\"d\0e\nf\rg\Zh'`, nil},
		{"emoji", "varchar", txt("héllo 🎉"), "'héllo 🎉'", nil},
		{"percent and underscore stay", "varchar", txt("50%_x"), "'50%_x'", nil},
		{"json", "json", txt(`{"a": "b\"c"}`), `'{\"a\": \"b\\\"c\"}'`, nil},
		{"datetime", "datetime", txt("2024-02-29 23:59:59.999999"), "'2024-02-29 23:59:59.999999'", nil},
		{"binary", "binary", txt("\x00'\\\xff"), "X'00275cff'", nil},
		{"empty blob", "blob", txt(""), "X''", nil},
		{"geometry", "point", txt("\x00\x00\x00\x00\x01"), "X'0000000001'", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			col := &schema.Column{DataType: tt.dataType}
			got, err := appendLiteral([]byte("x="), literalClassOf(col), tt.v)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(got), "x="+tt.want; got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestAppendLiteralAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	v := cdc.Value{Data: []byte("it's a \"quoted\"\nline 🎉")}
	num := cdc.Value{Data: []byte("-12.5e3")}
	n := testing.AllocsPerRun(100, func() {
		buf, _ = appendLiteral(buf[:0], literalString, v)
		buf, _ = appendLiteral(buf, literalBytes, v)
		buf, _ = appendLiteral(buf, literalNumber, num)
	})
	if n != 0 {
		t.Errorf("appendLiteral allocates %v times per run, want 0", n)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, key := range [][]string{
		{},
		{"42"},
		{"a\"b", "\x00\n", "🎉"},
		{"\xff\x00\x00\x00", "7"}, // BINARY(4) key: not UTF-8
	} {
		enc := encodeCursor(key)
		got, err := decodeCursor(enc)
		if err != nil {
			t.Fatalf("decode %s: %v", enc, err)
		}
		if !slices.Equal(got, key) {
			t.Errorf("cursor %q -> %s -> %q", key, enc, got)
		}
	}
	if got, want := encodeCursor([]string{"1", "\xab"}), `["1",{"hex":"ab"}]`; got != want {
		t.Errorf("encodeCursor = %s, want %s", got, want)
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		err       error
		transient bool
	}{
		{&mysql.MyError{Code: 1213, State: "40001"}, true},
		{&mysql.MyError{Code: 1205, State: "HY000"}, true},
		{&mysql.MyError{Code: 1053, State: "08S01"}, true},
		{fmt.Errorf("wrapped: %w", &mysql.MyError{Code: 1213}), true},
		{io.EOF, true},
		{mysql.ErrBadConn, true},
		{&mysql.MyError{Code: 1062, State: "23000"}, false},
		{&mysql.MyError{Code: 1290, State: "HY000"}, false},
		{&mysql.MyError{Code: 1836, State: "HY000"}, false},
		{context.Canceled, false},
	} {
		if got := apply.IsTransient(classify(tt.err)); got != tt.transient {
			t.Errorf("classify(%v) transient = %v, want %v", tt.err, got, tt.transient)
		}
	}
	if err := classify(&mysql.MyError{Code: 1290}); !strings.Contains(err.Error(), "read-only") {
		t.Errorf("a read-only refusal should say so: %v", err)
	}
}

func TestShapeSQL(t *testing.T) {
	tbl := &schema.Table{
		ID: cdc.TableID{Schema: "src", Name: "t`x"},
		Columns: []schema.Column{
			{Name: "note", DataType: "varchar"}, {Name: "tenant", DataType: "int"},
			{Name: "g", DataType: "int", Generated: true}, {Name: "id", DataType: "binary"},
		},
		Key: []string{"tenant", "id"},
	}
	s, err := newShape("dst", tbl, Relation(tbl))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ got, want string }{
		{s.upsertPrefix, "INSERT INTO `dst`.`t``x` (`note`, `tenant`, `id`) VALUES "},
		{s.upsertSuffix, " ON DUPLICATE KEY UPDATE `note` = VALUES(`note`)"},
		{s.deletePrefix, "DELETE FROM `dst`.`t``x` WHERE (`tenant`, `id`) IN ("},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	r, err := s.appendRow(nil, stmtDelete, textValues("n", "7", "\x01"))
	if err != nil || string(r) != "(7, X'01')" {
		t.Errorf("delete row = %s, %v", r, err)
	}
	r, err = s.appendRow(nil, stmtUpsert, textValues("it's", "7", "\x01"))
	if err != nil || string(r) != `('it\'s', 7, X'01')` {
		t.Errorf("upsert row = %s, %v", r, err)
	}

	keyOnly := &schema.Table{ID: cdc.TableID{Schema: "src", Name: "k"}, Columns: []schema.Column{{Name: "id", DataType: "int"}}, Key: []string{"id"}}
	s, err = newShape("dst", keyOnly, Relation(keyOnly))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.upsertSuffix, " ON DUPLICATE KEY UPDATE `id` = `id`"; got != want {
		t.Errorf("key-only upsert suffix = %s, want %s", got, want)
	}
	if got, want := s.deletePrefix, "DELETE FROM `dst`.`k` WHERE `id` IN ("; got != want {
		t.Errorf("single-key delete prefix = %s, want %s", got, want)
	}
	noKey := &schema.Table{ID: cdc.TableID{Schema: "src", Name: "n"}, Columns: []schema.Column{{Name: "a", DataType: "int"}}}
	if _, err := newShape("dst", noKey, Relation(noKey)); err == nil {
		t.Error("a table without a key has a shape")
	}
}

// targetFixture is a source and a target database on the test server, the source's catalog,
// and a Target writing into the target database.
type targetFixture struct {
	ctx       context.Context
	src, dst  string
	addr      Addr // of the target database
	migration string
	srcConn   *client.Conn
	dstConn   *client.Conn
	tables    []*schema.Table
	target    *Target
}

// newTargetFixture creates databases <name>_src and <name>_dst, runs ddl in both, and opens a
// Target on the second.
func newTargetFixture(t *testing.T, name string, ddl ...string) *targetFixture {
	t.Helper()
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	f := &targetFixture{ctx: ctx, src: name + "_src", dst: name + "_dst", migration: "m-" + name}
	for _, db := range []string{f.src, f.dst} {
		if err := m.CreateDB(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	f.srcConn = dialTestDB(t, m, f.src)
	f.dstConn = dialTestDB(t, m, f.dst)
	for _, q := range ddl {
		for _, c := range []*client.Conn{f.srcConn, f.dstConn} {
			if _, err := c.Execute(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	var err error
	if f.tables, err = Tables(f.srcConn, f.src, nil); err != nil {
		t.Fatal(err)
	}
	a, err := ParseDSN(m.DSN(f.dst), m.Password())
	if err != nil {
		t.Fatal(err)
	}
	f.addr = a
	f.target = f.newTarget(t, 1)
	return f
}

// newTarget opens another Target on the target database, with lanes sessions.
func (f *targetFixture) newTarget(t *testing.T, lanes int) *Target {
	t.Helper()
	tg, err := NewTarget(f.ctx, f.addr, f.migration, "forward", f.tables)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	if err := tg.Spread(f.ctx, f.addr, lanes); err != nil {
		t.Fatal(err)
	}
	return tg
}

func dialTestDB(t *testing.T, m *testenv.MariaDB, db string) *client.Conn {
	t.Helper()
	a, err := ParseDSN(m.DSN(db), m.Password())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Connect(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rel returns the stream's relation of a source table.
func (f *targetFixture) rel(t *testing.T, name string) *cdc.Relation {
	t.Helper()
	for _, tbl := range f.tables {
		if tbl.ID.Name == name {
			return Relation(tbl)
		}
	}
	t.Fatalf("no source table %s", name)
	return nil
}

// row builds a row image; a nil entry is NULL.
func valuesOf(vals ...*string) []cdc.Value {
	out := make([]cdc.Value, len(vals))
	for i, v := range vals {
		if v == nil {
			out[i] = cdc.Value{Kind: cdc.ValueNull}
		} else {
			out[i] = cdc.Value{Kind: cdc.ValueText, Data: []byte(*v)}
		}
	}
	return out
}

func strPtr(s string) *string { return &s }

// textRow builds a row image of non-NULL values.
func textValues(vals ...string) []cdc.Value {
	ptrs := make([]*string, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	return valuesOf(ptrs...)
}

type fakePos string

func (p fakePos) String() string { return string(p) }

// apply runs changes in one target transaction committed at pos.
func (f *targetFixture) apply(t *testing.T, pos string, changes ...*cdc.Change) error {
	t.Helper()
	return f.write(t, f.target.Begin, fakePos(pos), time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC), changes)
}

// fresh writes changes as a snapshot chunk: a fresh transaction committed without a checkpoint.
func (f *targetFixture) fresh(t *testing.T, changes ...*cdc.Change) error {
	t.Helper()
	return f.write(t, f.target.BeginFresh, nil, time.Time{}, changes)
}

// write runs changes in one target transaction opened by begin and committed at pos.
func (f *targetFixture) write(t *testing.T, begin func(context.Context) (apply.Txn, error), pos cdc.Position, at time.Time, changes []*cdc.Change) error {
	t.Helper()
	txn, err := begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if err := txn.Add(f.ctx, c); err != nil {
			txn.Rollback(f.ctx)
			return err
		}
	}
	if err := txn.Commit(f.ctx, pos, at); err != nil {
		txn.Rollback(f.ctx)
		return err
	}
	return nil
}

// dump returns a query's rows on the target as text, NULL as "<nil>", one string per row.
func (f *targetFixture) dump(t *testing.T, query string) []string {
	t.Helper()
	rows, err := QueryStrings(f.dstConn, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		cells := make([]string, len(r))
		for j, v := range r {
			cells[j] = "<nil>"
			if v != nil {
				cells[j] = fmt.Sprintf("%q", *v)
			}
		}
		out[i] = strings.Join(cells, " ")
	}
	return out
}

// TestTargetTypes writes a value of every type through upserts and through a fresh chunk's
// LOAD DATA, and reads each back exactly.
func TestTargetTypes(t *testing.T) {
	t.Run("upserts", func(t *testing.T) { testTargetTypes(t, false) })
	t.Run("fresh", func(t *testing.T) { testTargetTypes(t, true) })
}

func testTargetTypes(t *testing.T, fresh bool) {
	name := "tgt_types"
	if fresh {
		name = "tgt_types_fresh"
	}
	f := newTargetFixture(t, name, `CREATE TABLE types (
  id int NOT NULL,
  ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned,
  mi mediumint, miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned,
  de decimal(65,30), fl float, du double,
  ch char(10) CHARACTER SET utf8mb4, vc varchar(100) CHARACTER SET utf8mb4, tx text CHARACTER SET utf8mb4,
  bn binary(16), vb varbinary(64), bl blob,
  dt date, dtm datetime(6), ts timestamp(6) NULL DEFAULT NULL, tm time(6), y year,
  j json, e enum('a','b','c d'), st set('x','y','z'), b1 bit(1), b64 bit(64),
  pt point, g bigint AS (i * 2) VIRTUAL,
  PRIMARY KEY (id))`)
	// POINT(1 2) in MySQL's internal form: SRID 0, then WKB.
	point := "\x00\x00\x00\x00\x01\x01\x00\x00\x00" + "\x00\x00\x00\x00\x00\x00\xf0\x3f" + "\x00\x00\x00\x00\x00\x00\x00\x40"
	var all256 []byte
	for i := range 256 {
		all256 = append(all256, byte(i))
	}
	// The canonical text of each row, in column order (without the generated column).
	rows := [][]*string{
		{strPtr("1"), strPtr("-128"), strPtr("0"), strPtr("-32768"), strPtr("0"), strPtr("-8388608"), strPtr("0"), strPtr("-2147483648"), strPtr("0"),
			strPtr("-9223372036854775808"), strPtr("0"),
			strPtr("-99999999999999999999999999999999999.999999999999999999999999999999"), strPtr("-3.25"), strPtr("1e+300"),
			strPtr("🎉é"), strPtr("it's \"q\" \\ back\x00slash\n\r\x1a🎉"), strPtr(strings.Repeat("long 🎉 text\n", 500)),
			strPtr("\xff" + strings.Repeat("\x00", 15)), strPtr("\x00'\\\xff"), strPtr(string(all256)),
			strPtr("1000-01-01"), strPtr("1000-01-01 00:00:00.000000"), strPtr("1970-01-01 00:00:01.000000"), strPtr("-838:59:59.000000"), strPtr("0000"),
			strPtr(`{"a": [1, 2.5, "x\"y"], "b": null}`), strPtr("c d"), strPtr(""), strPtr("0"), strPtr("0"), strPtr(point)},
		{strPtr("2"), strPtr("127"), strPtr("255"), strPtr("32767"), strPtr("65535"), strPtr("8388607"), strPtr("16777215"), strPtr("2147483647"), strPtr("4294967295"),
			strPtr("9223372036854775807"), strPtr("18446744073709551615"),
			strPtr("0.000000000000000000000000000001"), strPtr("1.5"), strPtr("2.718281828459045"),
			strPtr(`\N`), strPtr(""), strPtr("tab\there\\N\\\n"),
			strPtr(strings.Repeat("\x00", 16)), strPtr(""), strPtr(""),
			strPtr("9999-12-31"), strPtr("9999-12-31 23:59:59.999999"), strPtr("2038-01-19 03:14:07.999999"), strPtr("-00:00:01.500000"), strPtr("2024"),
			strPtr(`[]`), strPtr("a"), strPtr("x,z"), strPtr("1"), strPtr("18446744073709551615"), nil},
		{strPtr("3"), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
			nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
	}
	rel := f.rel(t, "types")
	if got, want := len(rel.Columns), len(rows[0]); got != want {
		t.Fatalf("relation has %d columns, test rows %d", got, want)
	}
	var changes []*cdc.Change
	for _, r := range rows {
		changes = append(changes, &cdc.Change{Op: cdc.OpInsert, Relation: rel, New: valuesOf(r...)})
	}
	if fresh {
		loads, inserts := comLoad(t, f)
		if err := f.fresh(t, changes...); err != nil {
			t.Fatal(err)
		}
		if l, i := comLoad(t, f); l != loads+1 || i != inserts {
			t.Fatalf("the fresh chunk took %d LOAD DATA and %d INSERT statements, want 1 and 0", l-loads, i-inserts)
		}
	} else if err := f.apply(t, "1", changes...); err != nil {
		t.Fatal(err)
	}
	var sel []string
	for _, c := range rel.Columns {
		switch c.Name {
		case "b1", "b64":
			sel = append(sel, "CAST("+Quote(c.Name)+" AS UNSIGNED)")
		case "y":
			sel = append(sel, "CAST("+Quote(c.Name)+" AS CHAR)")
		default:
			sel = append(sel, Quote(c.Name))
		}
	}
	got, err := QueryStrings(f.dstConn, "SELECT "+strings.Join(sel, ", ")+", `g` FROM `types` ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rows) {
		t.Fatalf("got %d rows, want %d", len(got), len(rows))
	}
	for i, want := range rows {
		for j, w := range want {
			g := got[i][j]
			if (g == nil) != (w == nil) || (g != nil && *g != *w) {
				t.Errorf("row %d column %s = %s, want %s", i+1, rel.Columns[j].Name, targetCell(g), targetCell(w))
			}
		}
	}
	if g := got[0][len(rel.Columns)]; g == nil || *g != "-4294967296" {
		t.Errorf("generated column g = %s, want -4294967296", targetCell(g))
	}
}

func targetCell(s *string) string {
	if s == nil {
		return "NULL"
	}
	if len(*s) > 80 {
		return fmt.Sprintf("%q…", (*s)[:80])
	}
	return fmt.Sprintf("%q", *s)
}

const kvDDL = "CREATE TABLE kv (id int NOT NULL, v varchar(20) NOT NULL, n int, PRIMARY KEY (id))"

func kvChange(rel *cdc.Relation, op cdc.Op, id, v string) *cdc.Change {
	c := &cdc.Change{Op: op, Relation: rel}
	if op == cdc.OpDelete {
		c.Old = textValues(id, v, "0")
	} else {
		c.New = textValues(id, v, "0")
	}
	return c
}

func TestTargetIdempotentChanges(t *testing.T) {
	f := newTargetFixture(t, "tgt_idem", kvDDL,
		"CREATE TABLE pair (a int NOT NULL, b varbinary(8) NOT NULL, v varchar(10), PRIMARY KEY (a, b))",
		"CREATE TABLE ci (k varchar(10) COLLATE utf8mb4_general_ci NOT NULL, v int, PRIMARY KEY (k))")
	kv, pair, ci := f.rel(t, "kv"), f.rel(t, "pair"), f.rel(t, "ci")
	moved := kvChange(kv, cdc.OpUpdate, "30", "three")
	moved.Old = textValues("3", "c", "0")
	batch := []*cdc.Change{
		kvChange(kv, cdc.OpInsert, "1", "a"),
		kvChange(kv, cdc.OpInsert, "2", "b"),
		kvChange(kv, cdc.OpInsert, "3", "c"),
		kvChange(kv, cdc.OpInsert, "4", "d"),
		kvChange(kv, cdc.OpUpdate, "2", "b2"),
		moved, // key 3 becomes 30
		kvChange(kv, cdc.OpDelete, "4", "d"),
		kvChange(kv, cdc.OpInsert, "4", "d again"),
		kvChange(kv, cdc.OpInsert, "5", "e"),
		kvChange(kv, cdc.OpDelete, "5", "e"),
		{Op: cdc.OpInsert, Relation: pair, New: textValues("1", "\x00\xff", "x")},
		{Op: cdc.OpInsert, Relation: pair, New: textValues("1", "b", "y")},
		{Op: cdc.OpInsert, Relation: pair, New: textValues("2", "b", "z")},
		{Op: cdc.OpDelete, Relation: pair, Old: textValues("1", "\x00\xff", "x")},
		{Op: cdc.OpDelete, Relation: pair, Old: textValues("2", "b", "z")},
		kvChange(kv, cdc.OpUpdate, "1", "a2"),
		// A key that changes only in case is still moved: deleted by the old key, then written.
		{Op: cdc.OpInsert, Relation: ci, New: textValues("abc", "1")},
		{Op: cdc.OpUpdate, Relation: ci, Old: textValues("abc", "1"), New: textValues("ABC", "2")},
	}
	wantKV := []string{`"1" "a2" "0"`, `"2" "b2" "0"`, `"4" "d again" "0"`, `"30" "three" "0"`}
	wantPair := []string{`"1" "b" "y"`}
	for run := 1; run <= 2; run++ {
		if err := f.apply(t, fmt.Sprint(run), batch...); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if got := f.dump(t, "SELECT id, v, n FROM kv ORDER BY id"); !slices.Equal(got, wantKV) {
			t.Errorf("run %d: kv = %q, want %q", run, got, wantKV)
		}
		if got := f.dump(t, "SELECT a, b, v FROM pair ORDER BY a, b"); !slices.Equal(got, wantPair) {
			t.Errorf("run %d: pair = %q, want %q", run, got, wantPair)
		}
		if got, want := f.dump(t, "SELECT k, v FROM ci"), []string{`"ABC" "2"`}; !slices.Equal(got, want) {
			t.Errorf("run %d: ci = %q, want %q", run, got, want)
		}
	}

	// A truncate empties the table inside the transaction, keeping what comes after it.
	if err := f.apply(t, "3",
		kvChange(kv, cdc.OpInsert, "7", "g"),
		&cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{kv, pair}},
		kvChange(kv, cdc.OpInsert, "8", "h"),
	); err != nil {
		t.Fatal(err)
	}
	if got, want := f.dump(t, "SELECT id, v, n FROM kv ORDER BY id"), []string{`"8" "h" "0"`}; !slices.Equal(got, want) {
		t.Errorf("after truncate: kv = %q, want %q", got, want)
	}
	if got := f.dump(t, "SELECT count(*) FROM pair"); !slices.Equal(got, []string{`"0"`}) {
		t.Errorf("after truncate: pair has %q rows", got)
	}
}

func TestTargetStatementLimits(t *testing.T) {
	f := newTargetFixture(t, "tgt_limits", kvDDL)
	kv := f.rel(t, "kv")
	var batch []*cdc.Change
	for i := range 2500 {
		batch = append(batch, kvChange(kv, cdc.OpInsert, fmt.Sprint(i), fmt.Sprint("v", i)))
	}
	inserts := func() int {
		t.Helper()
		rows, err := QueryStrings(f.target.conn, "SHOW SESSION STATUS LIKE 'Com_insert'")
		if err != nil || len(rows) != 1 {
			t.Fatalf("Com_insert: %v", err)
		}
		n, _ := strconv.Atoi(*rows[0][1])
		return n
	}
	before := inserts()
	if err := f.apply(t, "1", batch...); err != nil {
		t.Fatal(err)
	}
	// 1000 rows a statement, and the checkpoint.
	if got, want := inserts()-before, 3+1; got != want {
		t.Errorf("2500 inserts took %d INSERT statements, want %d", got, want)
	}
	// A tiny statement cap: every row goes alone, and they all arrive.
	f.target.maxBytes = 10
	batch = batch[:0]
	for i := range 50 {
		batch = append(batch, kvChange(kv, cdc.OpUpdate, fmt.Sprint(i), "small"))
	}
	if err := f.apply(t, "2", batch...); err != nil {
		t.Fatal(err)
	}
	if got, want := f.dump(t, "SELECT count(*), sum(v = 'small') FROM kv"), []string{`"2500" "50"`}; !slices.Equal(got, want) {
		t.Errorf("kv = %q, want %q", got, want)
	}
	// A row larger than max_allowed_packet is refused before it is sent, with what to do.
	f.target.maxPacket = 4 * packetSlack
	err := f.apply(t, "3", kvChange(kv, cdc.OpInsert, "9999", strings.Repeat("x", 5*packetSlack)))
	var ce *apply.ChangeError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "max_allowed_packet") || ce.Key != "id=9999" {
		t.Errorf("oversized row: err = %v, want a ChangeError for id=9999 naming max_allowed_packet", err)
	}
}

func TestTargetCheckpointAtomicity(t *testing.T) {
	f := newTargetFixture(t, "tgt_atomic", kvDDL)
	kv := f.rel(t, "kv")
	if err := f.apply(t, "0-1-5", kvChange(kv, cdc.OpInsert, "1", "a")); err != nil {
		t.Fatal(err)
	}
	pos, at, ok, err := ReadPosition(f.dstConn, f.migration, "forward")
	if err != nil || !ok || pos != "0-1-5" || !at.Equal(time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)) {
		t.Fatalf("ReadPosition = %q, %v, %v, %v", pos, at, ok, err)
	}

	nullV := kvChange(kv, cdc.OpInsert, "101", "")
	nullV.New[1] = cdc.Value{Kind: cdc.ValueNull}
	for _, tt := range []struct {
		name    string
		changes []*cdc.Change
		key     string
		state   string
		err     error
	}{
		{
			name:    "NOT NULL violation in a multi-row statement",
			changes: []*cdc.Change{kvChange(kv, cdc.OpInsert, "100", "ok"), nullV, kvChange(kv, cdc.OpInsert, "102", "ok")},
			key:     "id=101", state: "23000",
		},
		{
			name:    "value too long",
			changes: []*cdc.Change{kvChange(kv, cdc.OpInsert, "200", "ok"), kvChange(kv, cdc.OpInsert, "201", strings.Repeat("x", 21))},
			key:     "id=201", state: "22001",
		},
		{
			name:    "text into an int column is refused before it is sent",
			changes: []*cdc.Change{kvChange(kv, cdc.OpInsert, "300", "ok"), {Op: cdc.OpInsert, Relation: kv, New: textValues("301", "x", "abc")}},
			key:     "id=301", state: "none", err: ErrBadNumber,
		},
		{
			name:    "unchanged value",
			changes: []*cdc.Change{{Op: cdc.OpInsert, Relation: kv, New: []cdc.Value{{Data: []byte("400")}, {Kind: cdc.ValueUnchanged}, {Kind: cdc.ValueNull}}}},
			key:     "id=400", state: "none", err: ErrUnchangedValue,
		},
		{
			name:    "a change to migrated's own table",
			changes: []*cdc.Change{{Op: cdc.OpInsert, Relation: &cdc.Relation{Table: cdc.TableID{Schema: StateDB, Name: "watermark"}, Columns: []cdc.Column{{Name: "id", Key: true}}}, New: textValues("1")}},
			key:     "id=1", state: "none", err: ErrStateTable,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := f.apply(t, "9-9-9", tt.changes...)
			var ce *apply.ChangeError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ChangeError", err)
			}
			if ce.Key != tt.key || ce.SQLState != tt.state || (tt.err != nil && !errors.Is(err, tt.err)) {
				t.Errorf("ChangeError key %q state %q err %v; want key %q state %q err %v", ce.Key, ce.SQLState, ce.Err, tt.key, tt.state, tt.err)
			}
			if tt.err != ErrStateTable && ce.Table != f.dst+".kv" {
				t.Errorf("ChangeError table = %q, want %s.kv", ce.Table, f.dst)
			}
			if apply.IsTransient(err) {
				t.Errorf("a rejected change is not transient: %v", err)
			}
			if got, want := f.dump(t, "SELECT id FROM kv ORDER BY id"), []string{`"1"`}; !slices.Equal(got, want) {
				t.Errorf("data moved: kv = %q, want %q", got, want)
			}
			if pos, _, _, _ := ReadPosition(f.dstConn, f.migration, "forward"); pos != "0-1-5" {
				t.Errorf("position moved to %q", pos)
			}
		})
	}

	// The connection is reused after a failed transaction.
	if err := f.apply(t, "0-1-6", kvChange(kv, cdc.OpInsert, "2", "b")); err != nil {
		t.Fatal(err)
	}
	if pos, _, _, _ := ReadPosition(f.dstConn, f.migration, "forward"); pos != "0-1-6" {
		t.Errorf("position = %q, want 0-1-6", pos)
	}
}

func TestTargetMarksAndPosition(t *testing.T) {
	f := newTargetFixture(t, "tgt_marks", kvDDL,
		"CREATE TABLE bin (id binary(4) NOT NULL, PRIMARY KEY (id))")
	kv, bin := f.rel(t, "kv"), f.rel(t, "bin")

	if _, _, ok, err := ReadPosition(f.dstConn, "no-such-migration", "forward"); ok || err != nil {
		t.Errorf("ReadPosition of an unknown migration: ok %v, err %v", ok, err)
	}
	if err := f.apply(t, "0-1-1",
		kvChange(kv, cdc.OpInsert, "1", "a"),
		&cdc.Change{Op: cdc.OpMark, Relation: kv, Mark: &cdc.SnapshotMark{Cursor: []string{"1"}, Rows: 1}},
		&cdc.Change{Op: cdc.OpMark, Relation: bin, Mark: &cdc.SnapshotMark{}},
	); err != nil {
		t.Fatal(err)
	}
	if err := f.apply(t, "0-1-2",
		&cdc.Change{Op: cdc.OpMark, Relation: bin, Mark: &cdc.SnapshotMark{Cursor: []string{"\xff\x00\x00\x00"}, Rows: 12345678901, Done: true}},
	); err != nil {
		t.Fatal(err)
	}
	marks, err := ReadMarks(f.dstConn, f.migration)
	if err != nil {
		t.Fatal(err)
	}
	want := map[cdc.TableID]cdc.SnapshotMark{
		{Schema: f.src, Name: "kv"}:  {Cursor: []string{"1"}, Rows: 1},
		{Schema: f.src, Name: "bin"}: {Cursor: []string{"\xff\x00\x00\x00"}, Rows: 12345678901, Done: true},
	}
	if len(marks) != len(want) {
		t.Errorf("ReadMarks = %v, want %v", marks, want)
	}
	for id, w := range want {
		g, ok := marks[id]
		if !ok || !slices.Equal(g.Cursor, w.Cursor) || g.Rows != w.Rows || g.Done != w.Done {
			t.Errorf("mark of %s = %+v, want %+v", id, g, w)
		}
	}

	// A zero commit time (a lone position) keeps the last source commit time.
	txn, err := f.target.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(f.ctx, fakePos("0-1-3"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	pos, at, ok, err := ReadPosition(f.dstConn, f.migration, "forward")
	if err != nil || !ok || pos != "0-1-3" || !at.Equal(time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)) {
		t.Errorf("ReadPosition = %q, %v, %v, %v", pos, at, ok, err)
	}

	// A rolled-back mark leaves nothing behind.
	txn, err = f.target.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Add(f.ctx, &cdc.Change{Op: cdc.OpMark, Relation: kv, Mark: &cdc.SnapshotMark{Cursor: []string{"99"}, Rows: 99}}); err != nil {
		t.Fatal(err)
	}
	txn.Rollback(f.ctx)
	if marks, err := ReadMarks(f.dstConn, f.migration); err != nil || marks[cdc.TableID{Schema: f.src, Name: "kv"}].Rows != 1 {
		t.Errorf("after rollback: marks %v, err %v", marks, err)
	}
}

func TestTargetLockWait(t *testing.T) {
	f := newTargetFixture(t, "tgt_lockwait", kvDDL)
	kv := f.rel(t, "kv")
	if err := f.apply(t, "1", kvChange(kv, cdc.OpInsert, "1", "a")); err != nil {
		t.Fatal(err)
	}
	holder := dialTestDB(t, testenv.RequireMariaDB(t), f.dst)
	for _, q := range []string{"START TRANSACTION", "SELECT * FROM kv WHERE id = 1 FOR UPDATE"} {
		if _, err := holder.Execute(q); err != nil {
			t.Fatal(err)
		}
	}
	defer holder.Execute("ROLLBACK")

	// A lock wait timeout is transient, and the connection stays usable.
	if err := f.target.exec(f.ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
		t.Fatal(err)
	}
	err := f.apply(t, "2", kvChange(kv, cdc.OpUpdate, "1", "b"))
	var ce *apply.ChangeError
	if !apply.IsTransient(err) || errors.As(err, &ce) {
		t.Errorf("lock wait timeout: err = %v (%T), want a transient error", err, err)
	}
	if f.target.broken {
		t.Error("a server error broke the connection")
	}

	// A context that ends while a statement waits interrupts it and retires the connection.
	if err := f.target.exec(f.ctx, "SET SESSION innodb_lock_wait_timeout = 50"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 300*time.Millisecond)
	defer cancel()
	txn, err := f.target.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Add(ctx, kvChange(kv, cdc.OpUpdate, "1", "c")); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	err = txn.Commit(ctx, fakePos("3"), time.Time{})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(started) > 10*time.Second {
		t.Errorf("commit interrupted by its context: err = %v after %s", err, time.Since(started))
	}
	txn.Rollback(f.ctx)
	if _, err := f.target.Begin(f.ctx); !apply.IsTransient(err) {
		t.Errorf("Begin on an interrupted connection: err = %v, want a transient error", err)
	}
}

func TestTargetInterrupted(t *testing.T) {
	f := newTargetFixture(t, "tgt_interrupt", kvDDL)
	ctx, cancel := context.WithCancel(f.ctx)
	txn, err := f.target.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Add(ctx, kvChange(f.rel(t, "kv"), cdc.OpInsert, "1", "a")); err != nil {
		t.Fatal(err)
	}
	cancel()
	err = txn.Commit(ctx, fakePos("1"), time.Time{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("commit after cancel: err = %v, want context.Canceled", err)
	}
	txn.Rollback(f.ctx)
	if got := f.dump(t, "SELECT count(*) FROM kv"); !slices.Equal(got, []string{`"0"`}) {
		t.Errorf("kv has %q rows after an interrupted transaction", got)
	}
}

// TestTargetFolding: in a table whose only unique key is a numeric primary key, a transaction's
// changes are folded to each row's last image, whatever their order, and sent as a few
// statements. A random mix of inserts, updates, deletes and key changes must leave what
// applying them one by one would.
func TestTargetFolding(t *testing.T) {
	f := newTargetFixture(t, "tgt_fold", kvDDL)
	kv := f.rel(t, "kv")
	if !f.target.foldable[kv.Table] {
		t.Fatal("kv is not foldable")
	}
	model := map[int]string{}
	batch := kvWorkload(rand.New(rand.NewPCG(1, 2)), kv, model, 3000, 200)
	count := func(what string) int {
		rows, err := QueryStrings(f.target.conn, "SHOW SESSION STATUS LIKE '"+what+"'")
		if err != nil || len(rows) != 1 {
			t.Fatalf("%s: %v", what, err)
		}
		n, _ := strconv.Atoi(*rows[0][1])
		return n
	}
	inserts, deletes := count("Com_insert"), count("Com_delete")
	if err := f.apply(t, "1", batch...); err != nil {
		t.Fatal(err)
	}
	if got := count("Com_insert") - inserts; got > 2 {
		t.Errorf("%d changes took %d INSERT statements (with the checkpoint), want at most 2", len(batch), got)
	}
	if got := count("Com_delete") - deletes; got > 1 {
		t.Errorf("%d changes took %d DELETE statements, want at most 1", len(batch), got)
	}
	if got, want := f.kvRows(t), modelRows(model); !slices.Equal(got, want) {
		t.Errorf("folded batch left %d rows, applying one by one leaves %d", len(got), len(want))
	}
}

// kvWorkload makes n random changes to kv over keys below keys (moved keys go up to twice
// that): inserts, updates, deletes and key changes, applied to model as they are made.
func kvWorkload(r *rand.Rand, kv *cdc.Relation, model map[int]string, n, keys int) []*cdc.Change {
	var batch []*cdc.Change
	for i := range n {
		k := r.IntN(keys)
		v := fmt.Sprint("v", i)
		_, exists := model[k]
		switch op := r.IntN(4); {
		case !exists:
			model[k] = v
			batch = append(batch, kvChange(kv, cdc.OpInsert, fmt.Sprint(k), v))
		case op == 0:
			delete(model, k)
			batch = append(batch, kvChange(kv, cdc.OpDelete, fmt.Sprint(k), ""))
		case op == 1:
			n := keys + r.IntN(keys)
			if _, taken := model[n]; taken {
				continue
			}
			delete(model, k)
			model[n] = v
			c := kvChange(kv, cdc.OpUpdate, fmt.Sprint(n), v)
			c.Old = textValues(fmt.Sprint(k), "", "0")
			batch = append(batch, c)
		default:
			model[k] = v
			batch = append(batch, kvChange(kv, cdc.OpUpdate, fmt.Sprint(k), v))
		}
	}
	return batch
}

// kvRows returns kv's rows on the target as `"id" "v"`, sorted.
func (f *targetFixture) kvRows(t *testing.T) []string {
	t.Helper()
	got := f.dump(t, "SELECT id, v FROM kv")
	slices.Sort(got)
	return got
}

// modelRows renders a kv model as kvRows does.
func modelRows(model map[int]string) []string {
	var want []string
	for k, v := range model {
		want = append(want, fmt.Sprintf("%q %q", fmt.Sprint(k), v))
	}
	slices.Sort(want)
	return want
}

// TestOneRowDeleteUsesKey checks on the real server that the statement a one-row delete of a
// composite-key table sends is planned by the key, not as a scan of the whole table (which a
// single-tuple IN gets on MariaDB 10.11), and deletes that row alone.
func TestOneRowDeleteUsesKey(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	mustExec(t, m, "DROP DATABASE IF EXISTS onedel", "CREATE DATABASE onedel",
		"CREATE TABLE onedel.items (o INT NOT NULL, n INT NOT NULL, v INT, PRIMARY KEY (o, n))",
		"INSERT INTO onedel.items SELECT seq DIV 10, seq MOD 10, seq FROM onedel.seq_1_to_5000",
		"ANALYZE TABLE onedel.items")
	c := connectAs(t, m, m.User(), m.Password(), "onedel")
	tables, err := Tables(c, "onedel", nil)
	if err != nil || len(tables) != 1 {
		t.Fatalf("tables %v, %v", tables, err)
	}
	s, err := newShape("onedel", tables[0], Relation(tables[0]))
	if err != nil {
		t.Fatal(err)
	}
	prefix, suffix := s.sql(stmtDelete)
	stmt := []byte(prefix)
	stmt, err = s.appendRow(stmt, stmtDelete, textValues("42", "7", "427"))
	if err != nil {
		t.Fatal(err)
	}
	stmt = append(s.onePlan(stmtDelete, stmt, len(prefix), len(stmt)), suffix...)
	rows, err := QueryStrings(c, "EXPLAIN "+string(stmt))
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", stmt, err)
	}
	if typ := deref(rows[0][3]); typ == "ALL" || typ == "index" {
		t.Errorf("%s is planned as %s, a scan of the table", stmt, typ)
	}
	if _, err := c.Execute(string(stmt)); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := QueryString(c, "SELECT count(*) FROM items"); n != "4999" {
		t.Errorf("%s left %s rows, want 4999", stmt, n)
	}
	if n, _, _ := QueryString(c, "SELECT count(*) FROM items WHERE o = 42 AND n = 7"); n != "0" {
		t.Errorf("the row is still there")
	}
}

// comLoad counts the LOAD DATA and INSERT statements the target session has run.
func comLoad(t *testing.T, f *targetFixture) (loads, inserts int) {
	t.Helper()
	rows, err := QueryStrings(f.target.conn, "SHOW SESSION STATUS WHERE Variable_name IN ('Com_load', 'Com_insert')")
	if err != nil || len(rows) != 2 {
		t.Fatalf("Com_load, Com_insert: %v", err)
	}
	for _, r := range rows {
		n, _ := strconv.Atoi(*r[1])
		if strings.EqualFold(*r[0], "Com_load") {
			loads = n
		} else {
			inserts = n
		}
	}
	return loads, inserts
}

// TestTargetFreshChunks covers a snapshot chunk written by LOAD DATA: over rows the stream
// wrote first, with its mark, with a row the target refuses, and on a server that does not
// allow LOCAL.
func TestTargetFreshChunks(t *testing.T) {
	const odd = "(id int NOT NULL PRIMARY KEY, y year, s varchar(10), l varchar(10) CHARACTER SET latin1, z datetime, c char(5), b varbinary(4))"
	f := newTargetFixture(t, "tgt_fresh", kvDDL, "CREATE TABLE odd_up "+odd, "CREATE TABLE odd_load "+odd)
	kv := f.rel(t, "kv")

	// Values at the edges of the two forms, written as upserts into odd_up and as a fresh
	// chunk into odd_load, read back the same: a year given as the number 0 (0000, where the
	// text '0' would be 2000), the text NULL, a lone backslash, latin1, a zero date, trailing
	// spaces, an empty binary string.
	rows := [][]*string{
		{strPtr("1"), strPtr("0"), strPtr("NULL"), strPtr("é"), strPtr("0000-00-00 00:00:00"), strPtr("ab  "), strPtr("")},
		{strPtr("2"), strPtr("69"), strPtr(`\`), strPtr("a\tb"), strPtr("2024-02-29 23:59:59"), strPtr(" "), strPtr("\x00\t\n\\")},
		{strPtr("3"), strPtr("2155"), strPtr(""), nil, nil, strPtr(""), nil},
	}
	write := map[string]func(*testing.T, ...*cdc.Change) error{
		"odd_up":   func(t *testing.T, c ...*cdc.Change) error { return f.apply(t, "0", c...) },
		"odd_load": f.fresh,
	}
	for table, w := range write {
		var changes []*cdc.Change
		for _, r := range rows {
			changes = append(changes, &cdc.Change{Op: cdc.OpInsert, Relation: f.rel(t, table), New: valuesOf(r...)})
		}
		if err := w(t, changes...); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
	}
	const readOdd = "SELECT id, CAST(y AS CHAR), s, l, CAST(z AS CHAR), c, hex(b) FROM %s ORDER BY id"
	up, load := f.dump(t, fmt.Sprintf(readOdd, "odd_up")), f.dump(t, fmt.Sprintf(readOdd, "odd_load"))
	if !slices.Equal(up, load) || len(up) != 3 || !strings.HasPrefix(up[0], `"1" "0000" "NULL" "é"`) {
		t.Errorf("the same rows read back differently:\n upserts %q\n fresh   %q", up, load)
	}
	// The stream wrote rows 1..3 first; the chunk holds 2..2001 as read after.
	if err := f.apply(t, "1", kvChange(kv, cdc.OpInsert, "1", "stream"), kvChange(kv, cdc.OpInsert, "2", "stream"),
		kvChange(kv, cdc.OpInsert, "3", "stream")); err != nil {
		t.Fatal(err)
	}
	var chunk []*cdc.Change
	for i := 2; i <= 2001; i++ {
		chunk = append(chunk, kvChange(kv, cdc.OpInsert, fmt.Sprint(i), fmt.Sprint("chunk\t", i)))
	}
	mark := &cdc.Change{Op: cdc.OpMark, Relation: kv, Mark: &cdc.SnapshotMark{Cursor: []string{"2001"}, Rows: 2000}}
	loads, inserts := comLoad(t, f)
	if err := f.fresh(t, append(chunk, mark)...); err != nil {
		t.Fatal(err)
	}
	// One LOAD DATA for the rows, one INSERT for the mark.
	if l, i := comLoad(t, f); l != loads+1 || i != inserts+1 {
		t.Errorf("the chunk took %d LOAD DATA and %d INSERT statements, want 1 and 1", l-loads, i-inserts)
	}
	want := []string{`"2001" "1" "1" "2000"`}
	if got := f.dump(t, "SELECT count(*), sum(v = 'stream'), sum(id = 1), sum(v LIKE 'chunk\t%') FROM kv"); !slices.Equal(got, want) {
		t.Errorf("kv (rows, stream rows, row 1, chunk rows) = %q, want %q", got, want)
	}
	marks, err := ReadMarks(f.dstConn, f.migration)
	if err != nil || marks[kv.Table].Rows != 2000 || !slices.Equal(marks[kv.Table].Cursor, []string{"2001"}) {
		t.Errorf("the mark did not commit with the chunk: %+v, %v", marks[kv.Table], err)
	}

	// A row the target refuses (too long for varchar(20)) is named, and nothing of the chunk stays.
	bad := []*cdc.Change{kvChange(kv, cdc.OpInsert, "5000", "fine"), kvChange(kv, cdc.OpInsert, "5001", strings.Repeat("x", 21)),
		kvChange(kv, cdc.OpInsert, "5002", "fine")}
	err = f.fresh(t, bad...)
	var ce *apply.ChangeError
	if !errors.As(err, &ce) || ce.Key != "id=5001" {
		t.Fatalf("a refused row: err = %v, want a ChangeError naming id=5001", err)
	}
	if got := f.dump(t, "SELECT count(*) FROM kv WHERE id >= 5000"); !slices.Equal(got, []string{`"0"`}) {
		t.Errorf("the refused chunk left %q rows", got)
	}
	if f.target.noLoad {
		t.Error("a refused row turned LOAD DATA off")
	}

	// A server that does not allow LOCAL: the chunk goes as upserts, and is not asked again.
	if _, err := f.dstConn.Execute("SET GLOBAL local_infile = 0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = f.dstConn.Execute("SET GLOBAL local_infile = 1") })
	if err := f.fresh(t, kvChange(kv, cdc.OpInsert, "6000", "no local"), kvChange(kv, cdc.OpInsert, "2", "no local")); err != nil {
		t.Fatal(err)
	}
	if !f.target.noLoad {
		t.Error("a refused LOAD DATA LOCAL will be tried again")
	}
	if got, want := f.dump(t, "SELECT id, v FROM kv WHERE v = 'no local' ORDER BY id"), []string{`"2" "no local"`, `"6000" "no local"`}; !slices.Equal(got, want) {
		t.Errorf("without LOCAL: %q, want %q", got, want)
	}
	loads, _ = comLoad(t, f)
	if err := f.fresh(t, kvChange(kv, cdc.OpInsert, "6001", "no local")); err != nil {
		t.Fatal(err)
	}
	if l, _ := comLoad(t, f); l != loads {
		t.Error("LOAD DATA was tried again after the server refused LOCAL")
	}
}

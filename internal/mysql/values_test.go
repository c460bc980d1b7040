package mysql

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

// allTypesDDL is a table with every type the canonical form treats specially, and generated
// columns of both kinds between the copied ones.
const allTypesDDL = "CREATE TABLE alltypes (" +
	"id INT NOT NULL PRIMARY KEY, " +
	"ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, " +
	"mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, " +
	"de DECIMAL(65,30), deu DECIMAL(10,2) UNSIGNED, f FLOAT, d DOUBLE, " +
	"gs BIGINT AS (i + 1) STORED, " +
	"c CHAR(10) CHARACTER SET utf8mb4, vc VARCHAR(100) CHARACTER SET utf8mb4, tx TEXT CHARACTER SET utf8mb4, mt MEDIUMTEXT, " +
	"gv VARCHAR(120) AS (CONCAT(vc, '!')) VIRTUAL, " +
	"bin BINARY(16), vb VARBINARY(32), bl BLOB, " +
	"dt DATE, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), tm0 TIME, tm3 TIME(3), yr YEAR, " +
	"js JSON, en ENUM('a','b','c d','é'), st SET('x','y','z'), b1 BIT(1), b64 BIT(64), " +
	"n1 INT NULL, n2 VARCHAR(10) NULL, " +
	"d0 DECIMAL(20,0), d9 DECIMAL(18,9), fd FLOAT(7,4), dd DOUBLE(10,3), b10 BIT(10), ts0 TIMESTAMP NULL DEFAULT NULL, " +
	"dtm3 DATETIME(3), tm1 TIME(1), tm4 TIME(4), pt POINT)"

// allTypesInserts fill alltypes with extremes: maximums, minimums, zero dates, empty values,
// NULLs. Each runs as its own transaction.
var allTypesInserts = []string{
	"INSERT INTO alltypes (id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, de, deu, f, d, c, vc, tx, mt, bin, vb, bl, " +
		"dt, dtm, dtm0, ts, tm, tm0, tm3, yr, js, en, st, b1, b64) VALUES (1, 127, 255, 32767, 65535, 8388607, 16777215, " +
		"2147483647, 4294967295, 9223372036854775807, 18446744073709551615, " +
		"'12345678901234567890123456789012345.123456789012345678901234567890', 99999999.99, 3.40282e38, 1.7976931348623157e308, " +
		"'héllo 😀', 'emoji 😀🎉 ünïcödé', 'a \\'quoted\\' \\\\ text\\nwith newline 😀', REPEAT('ab😀', 30000), " +
		"X'0102', X'00FF00', X'DEADBEEF00', '2024-02-29', '2024-02-29 23:59:59.999999', '9999-12-31 23:59:59', " +
		"'2038-01-19 03:14:07.999999', '838:59:59', '-838:59:59', '-00:00:00.500', 2155, " +
		"'{\"a\": [1, 2.5, \"x\"], \"b\": null}', 'c d', 'z,x', b'1', 0xFFFFFFFFFFFFFFFF)",
	"INSERT INTO alltypes (id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, de, deu, f, d, c, vc, tx, mt, bin, vb, bl, " +
		"dt, dtm, dtm0, ts, tm, tm0, tm3, yr, js, en, st, b1, b64) VALUES (2, -128, 0, -32768, 0, -8388608, 0, " +
		"-2147483648, 0, -9223372036854775808, 0, '-0.000000000000000000000000000001', 0, -1.2345678, -0.1, " +
		"'', '', '', '', X'', X'', X'', '0000-00-00', '0000-00-00 00:00:00.000000', '1000-01-01 00:00:00', " +
		"'1970-01-01 00:00:01', '-838:59:58.999999', '00:00:00', '12:00:00', 0, '[]', 'a', '', b'0', 0)",
	"INSERT INTO alltypes (id, ti, tiu, i, iu, bi, biu, de, deu, f, d, c, bin, dt, dtm, dtm0, ts, tm, tm0, tm3, yr, js, en, st, b1, b64) " +
		"VALUES (3, -1, 1, -1, 1, -1, 9223372036854775808, 1.5, 1.5, 1.2345678, 0.30000000000000004, 'pad  ', X'00000000000000000000000000000001', " +
		"'2020-00-00', '2020-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '00:00:00.000001', '-00:00:01', '-00:00:00.001', " +
		"1901, '{\"k\": {\"n\": -0.0, \"big\": 12345678901234567890}}', 'é', 'x,y,z', b'1', 0x8000000000000000)",
	"INSERT INTO alltypes (id) VALUES (4)",
	"INSERT INTO alltypes (id, d0, d9, fd, dd, b10, ts0, dtm3, tm1, tm4, pt, vc) VALUES (7, -99999999999999999999, -123456789.123456789, " +
		"123.4567, 1234567.125, b'1010101010', '2000-01-01 00:00:00', '2000-01-01 00:00:00.123', '-00:00:00.1', '-12:34:56.7891', " +
		"ST_GeomFromText('POINT(1 2)'), 'trail  ')",
	"INSERT INTO alltypes (id, d0, d9, fd, dd, b10, ts0, dtm3, tm1, tm4, pt, vc) VALUES (8, 0, 0.5, -0.0001, -0.001, b'1111111111', " +
		"'1970-01-01 00:00:01', '0000-00-00 00:00:00.000', '12:34:56.7', '00:00:00.0001', NULL, ' lead')",
	"INSERT INTO alltypes (id, f, d, de, tm, b64, mi, miu) VALUES (5, 16777217, 1e22, 0, '-01:00:00', 1, -1, 8388608)",
}

// allTypesLoose runs in a session without strict mode: MySQL then stores an invalid ENUM
// value as the empty string (index 0).
const allTypesLoose = "INSERT INTO alltypes (id, en, f, d) VALUES (6, 'nope', -0.0, 1.0000000000000002)"

// wantCanonical are values whose canonical text the package doc fixes, by id and column.
var wantCanonical = map[string]map[string]string{
	"1": {"tiu": "255", "siu": "65535", "miu": "16777215", "iu": "4294967295", "biu": "18446744073709551615",
		"bi": "9223372036854775807", "de": "12345678901234567890123456789012345.123456789012345678901234567890",
		"f": "3.40282e+38", "d": "1.7976931348623157e+308", "c": "héllo 😀", "bin": "\x01\x02" + strings.Repeat("\x00", 14),
		"vb": "\x00\xff\x00", "dtm": "2024-02-29 23:59:59.999999", "ts": "2038-01-19 03:14:07.999999", "tm": "838:59:59.000000",
		"tm0": "-838:59:59", "tm3": "-00:00:00.500", "yr": "2155", "en": "c d", "st": "x,z", "b1": "1", "b64": "18446744073709551615"},
	"2": {"ti": "-128", "bi": "-9223372036854775808", "de": "-0.000000000000000000000000000001", "deu": "0.00", "f": "-1.2345678", "d": "-0.1",
		"c": "", "bin": strings.Repeat("\x00", 16), "dt": "0000-00-00", "dtm": "0000-00-00 00:00:00.000000",
		"tm": "-838:59:58.999999", "yr": "0000", "st": "", "b1": "0", "b64": "0", "js": "[]"},
	"3": {"biu": "9223372036854775808", "de": "1.500000000000000000000000000000", "deu": "1.50", "f": "1.2345678",
		"d": "0.30000000000000004", "c": "pad", "dt": "2020-00-00", "ts": "0000-00-00 00:00:00.000000", "tm": "00:00:00.000001",
		"tm3": "-00:00:00.001", "yr": "1901", "en": "é", "st": "x,y,z", "b64": "9223372036854775808"},
	"5": {"f": "1.6777216e+07", "d": "1e+22", "de": "0.000000000000000000000000000000", "tm": "-01:00:00.000000", "mi": "-1", "miu": "8388608"},
	"6": {"en": "", "d": "1.0000000000000002"},
	"7": {"d0": "-99999999999999999999", "d9": "-123456789.123456789", "fd": "123.4567", "dd": "1.234567125e+06", "b10": "682",
		"ts0": "2000-01-01 00:00:00", "dtm3": "2000-01-01 00:00:00.123", "tm1": "-00:00:00.1", "tm4": "-12:34:56.7891", "vc": "trail  ",
		"pt": "\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x00@"},
	"8": {"dd": "-0.0010000000000000009", "d0": "0", "d9": "0.500000000", "fd": "-0.0001", "b10": "1023", "dtm3": "0000-00-00 00:00:00.000", "tm1": "12:34:56.7",
		"tm4": "00:00:00.0001", "vc": " lead"},
}

func TestSelectList(t *testing.T) {
	tbl := &schema.Table{Columns: []schema.Column{
		{Name: "id", DataType: "int"},
		{Name: "b", DataType: "bit"},
		{Name: "g", DataType: "int", Generated: true},
		{Name: "f`x", DataType: "float"},
		{Name: "d", DataType: "double"},
	}}
	if got, want := SelectList(tbl), "`id`, CAST(`b` AS UNSIGNED), CAST(`f``x` AS DOUBLE), CAST(`d` AS DOUBLE)"; got != want {
		t.Errorf("SelectList = %s, want %s", got, want)
	}
}

func TestAppendBinlog(t *testing.T) {
	col := func(dataType string, unsigned bool) *schema.Column {
		return &schema.Column{DataType: dataType, Unsigned: unsigned, Elements: []string{"a", "b", "c"}, Length: 4, Scale: 3}
	}
	tests := []struct {
		name string
		col  *schema.Column
		in   any
		want string
	}{
		{"tinyint unsigned", col("tinyint", true), int8(-1), "255"},
		{"tinyint", col("tinyint", false), int8(-1), "-1"},
		{"smallint unsigned", col("smallint", true), int16(-2), "65534"},
		{"mediumint unsigned", col("mediumint", true), int32(-1), "16777215"},
		{"int unsigned", col("int", true), int32(-2147483648), "2147483648"},
		{"bigint unsigned", col("bigint", true), int64(-1), "18446744073709551615"},
		{"bigint unsigned from metadata", col("bigint", true), uint64(18446744073709551615), "18446744073709551615"},
		{"int unsigned from metadata", col("int", true), uint32(4294967295), "4294967295"},
		{"float", col("float", false), float32(1.2345678), "1.2345678"},
		{"double", col("double", false), 0.30000000000000004, "0.30000000000000004"},
		{"bit 64", col("bit", false), int64(-1), "18446744073709551615"},
		{"year 0", col("year", false), 0, "0000"},
		{"year", col("year", false), 1999, "1999"},
		{"enum", col("enum", false), int64(2), "b"},
		{"enum invalid", col("enum", false), int64(0), ""},
		{"set", col("set", false), int64(5), "a,c"},
		{"set empty", col("set", false), int64(0), ""},
		{"binary", col("binary", false), "\x01", "\x01\x00\x00\x00"},
		{"binary full", col("binary", false), "\x01\x00\x00\x02", "\x01\x00\x00\x02"},
		{"time pads", col("time", false), "-12:00:00", "-12:00:00.000"},
		{"time keeps", col("time", false), "12:00:00.500", "12:00:00.500"},
		{"blob", col("blob", false), []byte{0, 1}, "\x00\x01"},
		{"decimal", col("decimal", false), "-1.50", "-1.50"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newCodec(tt.col).appendBinlog(nil, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("appendBinlog(%#v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	for _, bad := range []struct {
		dataType string
		in       any
	}{{"enum", int64(4)}, {"set", int64(8)}, {"int", "x"}, {"float", 1.5}} {
		if _, err := newCodec(col(bad.dataType, false)).appendBinlog(nil, bad.in); err == nil {
			t.Errorf("appendBinlog(%s, %#v) succeeded", bad.dataType, bad.in)
		}
	}
}

// TestRowValuesCanonical reads the all-types table with SelectList and RowValues and checks
// the values the package doc fixes.
func TestRowValuesCanonical(t *testing.T) {
	f := newStreamFixture(t)
	f.loadAllTypes(t)
	rows := f.selectRows(t, f.table(t, "alltypes"))
	for id, cols := range wantCanonical {
		row := rows[id]
		if row == nil {
			t.Fatalf("row %s missing", id)
		}
		for name, want := range cols {
			v := row[f.colIndex(t, "alltypes", name)]
			if v.Kind != cdc.ValueText || string(v.Data) != want {
				t.Errorf("row %s column %s = %s, want %q", id, name, showValue(v), want)
			}
		}
	}
	for _, v := range rows["4"][1:] {
		if v.Kind != cdc.ValueNull {
			t.Errorf("row 4: got %s, want every column but id NULL", showValue(v))
		}
	}
	if got, want := len(rows["1"]), len(CopyColumns(f.table(t, "alltypes"))); got != want {
		t.Errorf("row has %d values, want %d", got, want)
	}
}

// streamFixture is one database of the shared MariaDB server.
type streamFixture struct {
	m      *testenv.MariaDB
	addr   Addr
	db     string
	conn   *client.Conn
	tables []*schema.Table
}

var streamFixtureSeq atomic.Int32

func newStreamFixture(t *testing.T) *streamFixture {
	t.Helper()
	return newStreamFixtureOn(t, testenv.RequireMariaDB(t))
}

func newStreamFixtureOn(t *testing.T, m *testenv.MariaDB) *streamFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"))
	if len(db) > 48 {
		db = db[:48]
	}
	db = fmt.Sprintf("%s_%d", db, streamFixtureSeq.Add(1))
	if err := m.CreateDB(ctx, db); err != nil {
		t.Fatal(err)
	}
	addr, err := ParseDSN(m.DSN(db), m.Password())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &streamFixture{m: m, addr: addr, db: db, conn: c}
}

func (f *streamFixture) exec(t *testing.T, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := f.conn.Execute(q); err != nil {
			t.Fatalf("%.200s: %v", q, err)
		}
	}
}

// readCatalog reads the tables of the streamFixture's database, as the daemon does at start.
func (f *streamFixture) readCatalog(t *testing.T) []*schema.Table {
	t.Helper()
	tables, err := Tables(f.conn, f.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.tables = tables
	return tables
}

func (f *streamFixture) table(t *testing.T, name string) *schema.Table {
	t.Helper()
	if f.tables == nil {
		f.readCatalog(t)
	}
	for _, tbl := range f.tables {
		if tbl.ID.Name == name {
			return tbl
		}
	}
	t.Fatalf("table %s not in the catalog", name)
	return nil
}

// colIndex is the index of a column in the table's Relation.
func (f *streamFixture) colIndex(t *testing.T, table, col string) int {
	t.Helper()
	for i, c := range Relation(f.table(t, table)).Columns {
		if c.Name == col {
			return i
		}
	}
	t.Fatalf("column %s not in %s", col, table)
	return -1
}

func (f *streamFixture) loadAllTypes(t *testing.T) {
	t.Helper()
	f.exec(t, allTypesDDL)
	f.exec(t, allTypesInserts...)
	f.exec(t, "SET SESSION sql_mode = ''", allTypesLoose, sessionSetup)
	f.readCatalog(t)
}

// selectRows reads a table with SelectList and RowValues, by the text of its first column.
func (f *streamFixture) selectRows(t *testing.T, tbl *schema.Table) map[string][]cdc.Value {
	t.Helper()
	rows := map[string][]cdc.Value{}
	var res mysql.Result
	q := "SELECT " + SelectList(tbl) + " FROM " + QuoteTable(tbl.ID.Schema, tbl.ID.Name)
	err := f.conn.ExecuteSelectStreaming(q, &res, func(row []mysql.FieldValue) error {
		vals := RowValues(tbl, row)
		rows[string(vals[0].Data)] = vals
		return nil
	}, nil)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return rows
}

func showValue(v cdc.Value) string {
	switch v.Kind {
	case cdc.ValueNull:
		return "NULL"
	case cdc.ValueUnchanged:
		return "UNCHANGED"
	}
	s := string(v.Data)
	if len(s) > 80 {
		s = s[:80] + fmt.Sprintf("...(%d bytes)", len(v.Data))
	}
	return fmt.Sprintf("%q", s)
}

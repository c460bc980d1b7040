package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// verifySettings fix how the verify sessions print values and read them back: as the snapshot
// session does (recon.go), with text without a UTC offset read as UTC, which is how MySQL's
// TIMESTAMP values travel, and read-only.
var verifySettings = map[string]string{
	"TimeZone":                      "UTC",
	"DateStyle":                     "ISO, YMD",
	"IntervalStyle":                 "postgres",
	"extra_float_digits":            "1",
	"bytea_output":                  "hex",
	"default_transaction_read_only": "on",
}

// textCompared are the types compared by their text output rather than by their equality
// operator: json and the geometric types have none that means "the same value", and interval's
// counts 1 day and 24:00:00 as equal.
var textCompared = map[string]bool{
	"json": true, "xml": true, "interval": true,
	"point": true, "line": true, "lseg": true, "box": true, "path": true, "polygon": true, "circle": true,
}

// VerifyRows reads and compares the rows of PostgreSQL tables for a verify across engines
// (verify.Cross), as its source or its target. Values are read as text (col::text). Values
// given to it are cast from text to each column's type without its modifiers, so that a cast
// never rounds or truncates what it compares, and are compared by the server: typed, except for
// the types in textCompared. A root table's queries cover its partitions. It is safe for
// concurrent use.
type VerifyRows struct {
	pool *pgxpool.Pool

	mu    sync.Mutex
	types map[cdc.TableID]map[string]string // column name to its type without modifiers
}

// NewVerifyRows connects to the database of dsn.
func NewVerifyRows(ctx context.Context, dsn string) (*VerifyRows, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse the dsn: %w", err)
	}
	for k, v := range verifySettings {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &VerifyRows{pool: pool, types: map[cdc.TableID]map[string]string{}}, nil
}

// Close closes the sessions.
func (v *VerifyRows) Close() { v.pool.Close() }

const baseTypesSQL = `
SELECT a.attname, format_type(a.atttypid, -1)
  FROM pg_attribute a
 WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped`

// baseTypes returns the types of t's columns without their modifiers: numeric for numeric(20,4),
// "bit" (any length) for bit(8), bpchar for character(5). format_type with the modifier -1 names
// them so that a cast to the name applies none; with NULL it would say character, which is
// character(1).
func (v *VerifyRows) baseTypes(ctx context.Context, t *schema.Table) (map[string]string, error) {
	v.mu.Lock()
	types := v.types[t.ID]
	v.mu.Unlock()
	if types != nil {
		return types, nil
	}
	rows, err := v.pool.Query(ctx, baseTypesSQL, t.ID.Schema, t.ID.Name)
	if err != nil {
		return nil, fmt.Errorf("read the column types of %s: %w", t.ID, err)
	}
	types = map[string]string{}
	var name, typ string
	if _, err := pgx.ForEachRow(rows, []any{&name, &typ}, func() error { types[name] = typ; return nil }); err != nil {
		return nil, fmt.Errorf("read the column types of %s: %w", t.ID, err)
	}
	for _, c := range t.Columns {
		if types[c.Name] == "" {
			return nil, fmt.Errorf("column %s of %s is gone; reread the catalog", c.Name, t.ID)
		}
	}
	v.mu.Lock()
	v.types[t.ID] = types
	v.mu.Unlock()
	return types, nil
}

// Rows returns up to limit rows of t after the key after (from the first when nil) in key
// order, each the text of t.CopyColumns().
func (v *VerifyRows) Rows(ctx context.Context, t *schema.Table, after []string, limit int) ([][]cdc.Value, error) {
	return v.read(ctx, t, t.CopyColumns(), after, limit)
}

// Keys returns up to limit keys of t after the key after (from the first when nil) in key order.
func (v *VerifyRows) Keys(ctx context.Context, t *schema.Table, after []string, limit int) ([][]string, error) {
	rows, err := v.read(ctx, t, t.Key, after, limit)
	if err != nil {
		return nil, err
	}
	keys := make([][]string, len(rows))
	for i, row := range rows {
		keys[i] = make([]string, len(row))
		for j := range row {
			keys[i][j] = string(row[j].Data)
		}
	}
	return keys, nil
}

func (v *VerifyRows) read(ctx context.Context, t *schema.Table, cols, after []string, limit int) ([][]cdc.Value, error) {
	if len(t.Key) == 0 {
		return nil, fmt.Errorf("read %s: the table has no primary key or replica identity index", t.ID)
	}
	types, err := v.baseTypes(ctx, t)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("SELECT " + columnList("t.", cols, "::text") + " FROM " + ident(t.ID) + " t")
	var args []any
	if after != nil {
		if len(after) != len(t.Key) {
			return nil, fmt.Errorf("read %s: a key of %d values for %d key columns", t.ID, len(after), len(t.Key))
		}
		params := make([]string, len(t.Key))
		for i, k := range t.Key {
			params[i] = "$" + strconv.Itoa(i+1) + "::text::" + types[k]
			args = append(args, after[i])
		}
		b.WriteString(" WHERE (" + columnList("t.", t.Key, "") + ") > (" + strings.Join(params, ", ") + ")")
	}
	b.WriteString(" ORDER BY " + columnList("t.", t.Key, "") + " LIMIT " + strconv.Itoa(limit))
	rows, err := v.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.ID, err)
	}
	out, err := textRows(rows)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.ID, err)
	}
	return out, nil
}

// Lookup returns the rows of t with the keys, aligned with keys: nil where there is none.
func (v *VerifyRows) Lookup(ctx context.Context, t *schema.Table, keys [][]string) ([][]cdc.Value, error) {
	return v.byKeys(ctx, v.pool, t, t.CopyColumns(), keys, "")
}

// LockRows reads the rows of t with the keys, as Lookup does, in a transaction that holds a
// share lock on each row found until release is called: a writer of those rows waits, and a
// row's lock is waited for at most RowLockWait.
func (v *VerifyRows) LockRows(ctx context.Context, t *schema.Table, keys [][]string) ([][]cdc.Value, func(), error) {
	tx, err := v.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		return nil, nil, fmt.Errorf("lock %d rows of %s: %w", len(keys), t.ID, err)
	}
	release := func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", RowLockWait.Milliseconds())); err != nil {
		release()
		return nil, nil, fmt.Errorf("lock %d rows of %s: %w", len(keys), t.ID, err)
	}
	rows, err := v.byKeys(ctx, tx, t, t.CopyColumns(), keys, " FOR SHARE OF t")
	if err != nil {
		release()
		return nil, nil, err
	}
	return rows, release, nil
}

// RowLockWait is how long a verify waits for a row's lock before it gives up.
const RowLockWait = 5 * time.Second

// Exists reports, aligned with keys, whether t has a row with each key.
func (v *VerifyRows) Exists(ctx context.Context, t *schema.Table, keys [][]string) ([]bool, error) {
	rows, err := v.byKeys(ctx, v.pool, t, nil, keys, "")
	if err != nil {
		return nil, err
	}
	ok := make([]bool, len(rows))
	for i, row := range rows {
		ok[i] = row != nil
	}
	return ok, nil
}

// byKeys reads cols of the rows of t with the keys, aligned with keys, on q, with suffix after
// the statement. The keys are passed as one text array per key column and joined to the table by
// the server, so that its equality decides which row a key names.
func (v *VerifyRows) byKeys(ctx context.Context, q querier, t *schema.Table, cols []string, keys [][]string, suffix string) ([][]cdc.Value, error) {
	out := make([][]cdc.Value, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	types, err := v.baseTypes(ctx, t)
	if err != nil {
		return nil, err
	}
	args := make([]any, len(t.Key))
	arrays, names, join := make([]string, len(t.Key)), make([]string, len(t.Key)), make([]string, len(t.Key))
	for i, k := range t.Key {
		vals := make([]string, len(keys))
		for j, key := range keys {
			if len(key) != len(t.Key) {
				return nil, fmt.Errorf("look up %s: a key of %d values for %d key columns", t.ID, len(key), len(t.Key))
			}
			vals[j] = key[i]
		}
		args[i] = vals
		arrays[i] = "$" + strconv.Itoa(i+1) + "::text[]"
		names[i] = "k" + strconv.Itoa(i+1)
		join[i] = "t." + quote(k) + " = v." + names[i] + "::" + types[k]
	}
	sql := "SELECT v.i::text"
	if len(cols) > 0 {
		sql += ", " + columnList("t.", cols, "::text")
	}
	sql += " FROM unnest(" + strings.Join(arrays, ", ") + ") WITH ORDINALITY AS v(" + strings.Join(names, ", ") + ", i)" +
		" JOIN " + ident(t.ID) + " t ON " + strings.Join(join, " AND ") + suffix
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("look up %d keys of %s: %w", len(keys), t.ID, err)
	}
	found, err := textRows(rows)
	if err != nil {
		return nil, fmt.Errorf("look up %d keys of %s: %w", len(keys), t.ID, err)
	}
	for _, row := range found {
		i, err := strconv.Atoi(string(row[0].Data))
		if err != nil || i < 1 || i > len(keys) {
			return nil, fmt.Errorf("look up keys of %s: bad ordinal %q", t.ID, row[0].Data)
		}
		out[i-1] = row[1:]
	}
	return out, nil
}

// Compare checks rows, each the values of t.CopyColumns() as text in the form the migration
// writes them, against the rows of t with the same keys, in one statement: the rows are passed
// as one text array per column and cast to the columns' types. It returns the rows that differ,
// by index, with the first column that differs, or "" when t has no row with the key.
func (v *VerifyRows) Compare(ctx context.Context, t *schema.Table, rows [][]cdc.Value) (map[int]string, error) {
	diff := map[int]string{}
	if len(rows) == 0 {
		return diff, nil
	}
	if len(t.Key) == 0 {
		return nil, fmt.Errorf("compare %s: the table has no primary key or replica identity index", t.ID)
	}
	types, err := v.baseTypes(ctx, t)
	if err != nil {
		return nil, err
	}
	cols := t.CopyColumns()
	args := make([]any, len(cols))
	arrays, names, cases := make([]string, len(cols)), make([]string, len(cols)), make([]string, len(cols))
	for j, c := range cols {
		vals := make([]*string, len(rows))
		for i, row := range rows {
			if len(row) != len(cols) {
				return nil, fmt.Errorf("compare %s: a row of %d values for %d columns", t.ID, len(row), len(cols))
			}
			switch row[j].Kind {
			case cdc.ValueText:
				s := string(row[j].Data)
				vals[i] = &s
			case cdc.ValueNull:
			default:
				return nil, fmt.Errorf("compare %s: column %s holds no value (kind %d)", t.ID, c, row[j].Kind)
			}
		}
		args[j] = vals
		arrays[j] = "$" + strconv.Itoa(j+1) + "::text[]"
		names[j] = "c" + strconv.Itoa(j+1)
		typ := types[c]
		if textCompared[strings.TrimSuffix(typ, "[]")] {
			cases[j] = fmt.Sprintf("WHEN t.%s::text IS DISTINCT FROM v.%s::%s::text THEN %d", quote(c), names[j], typ, j+1)
		} else {
			cases[j] = fmt.Sprintf("WHEN t.%s IS DISTINCT FROM v.%s::%s THEN %d", quote(c), names[j], typ, j+1)
		}
	}
	join := make([]string, len(t.Key))
	for i, k := range t.Key {
		j := slices.Index(cols, k)
		if j < 0 {
			return nil, fmt.Errorf("compare %s: key column %s is generated or missing", t.ID, k)
		}
		join[i] = "t." + quote(k) + " = v." + names[j] + "::" + types[k]
	}
	sql := "SELECT i, d FROM (SELECT v.i, CASE WHEN t." + quote(t.Key[0]) + " IS NULL THEN 0 " + strings.Join(cases, " ") + " END AS d" +
		" FROM unnest(" + strings.Join(arrays, ", ") + ") WITH ORDINALITY AS v(" + strings.Join(names, ", ") + ", i)" +
		" LEFT JOIN " + ident(t.ID) + " t ON " + strings.Join(join, " AND ") + ") x WHERE d IS NOT NULL"
	res, err := v.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("compare %d rows of %s: %w", len(rows), t.ID, err)
	}
	var i int64
	var d int
	_, err = pgx.ForEachRow(res, []any{&i, &d}, func() error {
		if i < 1 || int(i) > len(rows) || d < 0 || d > len(cols) {
			return fmt.Errorf("bad row %d or column %d", i, d)
		}
		if d == 0 {
			diff[int(i-1)] = ""
		} else {
			diff[int(i-1)] = cols[d-1]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compare %d rows of %s: %w", len(rows), t.ID, err)
	}
	return diff, nil
}

// textRows reads rows whose columns are all text, or NULL, copying each row's values into one
// buffer. (A text value's binary form, which pgx may ask for, is its text.)
func textRows(rows pgx.Rows) ([][]cdc.Value, error) {
	defer rows.Close()
	var out [][]cdc.Value
	for rows.Next() {
		raw := rows.RawValues()
		n := 0
		for _, v := range raw {
			n += len(v)
		}
		buf := make([]byte, 0, n)
		row := make([]cdc.Value, len(raw))
		for i, v := range raw {
			if v == nil {
				row[i].Kind = cdc.ValueNull
				continue
			}
			start := len(buf)
			buf = append(buf, v...)
			row[i].Data = buf[start:len(buf):len(buf)]
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// columnList returns the quoted names, each between prefix and suffix, comma-separated.
func columnList(prefix string, names []string, suffix string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = prefix + quote(n) + suffix
	}
	return strings.Join(q, ", ")
}

// KeyFromMySQL turns a key of a PostgreSQL table t that was migrated to MySQL, read from the
// MySQL table in the canonical MySQL form (values in the order of t.Key), into the text that
// PostgreSQL reads as the same value, to look the key up on t: bytea columns are raw bytes there
// and become hex. The other key types read as they are (a boolean's 1 and 0 included), in a
// session with TimeZone UTC, such as VerifyRows's.
func KeyFromMySQL(t *schema.Table, key []string) ([]string, error) {
	if len(key) != len(t.Key) {
		return nil, fmt.Errorf("a key of %d values for the %d key columns of %s", len(key), len(t.Key), t.ID)
	}
	out := slices.Clone(key)
	for i, k := range t.Key {
		j := slices.IndexFunc(t.Columns, func(c schema.Column) bool { return c.Name == k })
		if j < 0 {
			return nil, fmt.Errorf("key column %s of %s is not in the catalog", k, t.ID)
		}
		if t.Columns[j].Type == "bytea" {
			out[i] = `\x` + hex.EncodeToString([]byte(key[i]))
		}
	}
	return out, nil
}

package mysql

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

const (
	// verifyIdle is how many idle sessions VerifyRows keeps for the next call.
	verifyIdle = 4
	// verifyBatch is how many keys one lookup statement names.
	verifyBatch = 1000
)

// VerifyRows reads and compares the rows of a MySQL or MariaDB database for a verify across
// engines (verify.Cross), as its source or as its target. Values are in the canonical form (see
// the package doc), which the SELECT reader produces and the target writer takes, so a target
// compares the bytes of what it reads with the bytes it would have written, and a key names the
// row whose canonical key has the same bytes. Every call runs on a session of its own, so calls
// may run concurrently.
type VerifyRows struct {
	addr Addr
	idle chan *client.Conn
}

// NewVerifyRows returns a reader of the database a names. Sessions are opened on first use.
func NewVerifyRows(a Addr) *VerifyRows {
	return &VerifyRows{addr: a, idle: make(chan *client.Conn, verifyIdle)}
}

// Close closes the idle sessions.
func (v *VerifyRows) Close() {
	for {
		select {
		case c := <-v.idle:
			c.Close()
		default:
			return
		}
	}
}

// Rows returns up to limit rows of t after the key after (from the first when nil) in key
// order, as the snapshot reads them.
func (v *VerifyRows) Rows(ctx context.Context, t *schema.Table, after []string, limit int) ([][]cdc.Value, error) {
	q, err := chunkQuery(t, after, limit)
	if err != nil {
		return nil, err
	}
	var rows [][]cdc.Value
	err = v.query(ctx, q, func(row []mysql.FieldValue) {
		rows = append(rows, RowValues(t, row))
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", t.ID, err)
	}
	return rows, nil
}

// Keys returns up to limit keys of t after the key after (from the first when nil) in key
// order.
func (v *VerifyRows) Keys(ctx context.Context, t *schema.Table, after []string, limit int) ([][]string, error) {
	kt, err := keyTable(t)
	if err != nil {
		return nil, err
	}
	rows, err := v.Rows(ctx, kt, after, limit)
	if err != nil {
		return nil, err
	}
	keys := make([][]string, len(rows))
	for i, row := range rows {
		keys[i] = rowKey(row, nil)
	}
	return keys, nil
}

// Lookup returns the rows of t with the keys, aligned with keys: nil where there is none.
func (v *VerifyRows) Lookup(ctx context.Context, t *schema.Table, keys [][]string) ([][]cdc.Value, error) {
	return v.byKeys(ctx, t, keys)
}

// Exists reports, aligned with keys, whether t has a row with each key.
func (v *VerifyRows) Exists(ctx context.Context, t *schema.Table, keys [][]string) ([]bool, error) {
	kt, err := keyTable(t)
	if err != nil {
		return nil, err
	}
	rows, err := v.byKeys(ctx, kt, keys)
	if err != nil {
		return nil, err
	}
	ok := make([]bool, len(rows))
	for i, row := range rows {
		ok[i] = row != nil
	}
	return ok, nil
}

// Compare reads the rows of t with the keys of rows (each the canonical values of
// CopyColumns(t)) and returns those that differ in any byte, by index in rows, with the first
// column that differs, or "" when t has no row with the key.
func (v *VerifyRows) Compare(ctx context.Context, t *schema.Table, rows [][]cdc.Value) (map[int]string, error) {
	cols := CopyColumns(t)
	pos, _, err := keyColumns(t)
	if err != nil {
		return nil, err
	}
	keys := make([][]string, len(rows))
	for i, row := range rows {
		if len(row) != len(cols) {
			return nil, fmt.Errorf("compare %s: a row of %d values for %d columns", t.ID, len(row), len(cols))
		}
		keys[i] = rowKey(row, pos)
	}
	have, err := v.byKeys(ctx, t, keys)
	if err != nil {
		return nil, err
	}
	diff := map[int]string{}
	for i, row := range rows {
		h := have[i]
		if h == nil {
			diff[i] = ""
			continue
		}
		for j := range row {
			if row[j].Kind != h[j].Kind || !bytes.Equal(row[j].Data, h[j].Data) {
				diff[i] = cols[j].Name
				break
			}
		}
	}
	return diff, nil
}

// byKeys reads the rows of t with the keys, aligned with keys.
func (v *VerifyRows) byKeys(ctx context.Context, t *schema.Table, keys [][]string) ([][]cdc.Value, error) {
	pos, cols, err := keyColumns(t)
	if err != nil {
		return nil, err
	}
	out := make([][]cdc.Value, len(keys))
	for start := 0; start < len(keys); start += verifyBatch {
		end := min(start+verifyBatch, len(keys))
		if err := v.lookupBatch(ctx, t, pos, cols, keys[start:end], out[start:end]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lookupBatch reads the rows of t with keys into out. The server finds the rows, by its
// collation, and a row is matched to a key by the bytes of its canonical key: a row whose key
// differs only in case, accents or trailing spaces is another key's row. So a key changed in case
// alone is reported as one key missing and another extra, as it would be across engines.
func (v *VerifyRows) lookupBatch(ctx context.Context, t *schema.Table, pos []int, cols []*schema.Column, keys [][]string, out [][]cdc.Value) error {
	if len(keys) == 0 {
		return nil
	}
	q, each, err := lookupQuery(t, pos, cols, keys, out)
	if err != nil {
		return err
	}
	if err := v.query(ctx, q, each); err != nil {
		return fmt.Errorf("look up %d keys of %s: %w", len(keys), t.ID, err)
	}
	return nil
}

// lookupQuery returns the SELECT of the rows of t with keys, and the function that files each
// row it returns into out, at its keys' places.
func lookupQuery(t *schema.Table, pos []int, cols []*schema.Column, keys [][]string, out [][]cdc.Value) (string, func([]mysql.FieldValue), error) {
	where, err := keysWhere(cols, keys)
	if err != nil {
		return "", nil, fmt.Errorf("look up keys of %s: %w", t.ID, err)
	}
	q := "SELECT " + SelectList(t) + " FROM " + QuoteTable(t.ID.Schema, t.ID.Name) + " WHERE " + where
	want := make(map[string][]int, len(keys))
	for i, k := range keys {
		want[joinBytes(k)] = append(want[joinBytes(k)], i)
	}
	return q, func(fv []mysql.FieldValue) {
		row := RowValues(t, fv)
		for _, i := range want[joinBytes(rowKey(row, pos))] {
			out[i] = row
		}
	}, nil
}

// RowLockWait is how long a verify waits for a row's lock before it gives up.
const RowLockWait = 5 * time.Second

// LockRows reads the rows of t with the keys, as Lookup does, in a transaction on a session of
// its own that holds a shared lock on each row found until release is called: a writer of those
// rows waits, and a row's lock is waited for at most RowLockWait.
func (v *VerifyRows) LockRows(ctx context.Context, t *schema.Table, keys [][]string) ([][]cdc.Value, func(), error) {
	pos, cols, err := keyColumns(t)
	if err != nil {
		return nil, nil, err
	}
	c, err := Connect(ctx, v.addr)
	if err != nil {
		return nil, nil, err
	}
	release := func() { c.Close() } // closing the session ends its transaction and its locks
	fail := func(err error) ([][]cdc.Value, func(), error) {
		release()
		return nil, nil, fmt.Errorf("lock %d rows of %s: %w", len(keys), t.ID, classify(err))
	}
	if _, err := c.Execute(fmt.Sprintf("SET SESSION innodb_lock_wait_timeout = %d", int(RowLockWait.Seconds()))); err != nil {
		return fail(err)
	}
	if err := c.Begin(); err != nil {
		return fail(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	out := make([][]cdc.Value, len(keys))
	for start := 0; start < len(keys); start += verifyBatch {
		end := min(start+verifyBatch, len(keys))
		q, each, err := lookupQuery(t, pos, cols, keys[start:end], out[start:end])
		if err != nil {
			return fail(err)
		}
		var result mysql.Result
		if err := c.ExecuteSelectStreaming(q+" LOCK IN SHARE MODE", &result, func(row []mysql.FieldValue) error { each(row); return nil }, nil); err != nil {
			return fail(err)
		}
	}
	return out, release, nil
}

// query runs a SELECT, passing each row to each. The client takes no context: a done ctx expires
// the session's deadline, which breaks the session. A session is reused only after a success or
// an error the server sent.
func (v *VerifyRows) query(ctx context.Context, q string, each func([]mysql.FieldValue)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := v.session(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	var result mysql.Result
	err = c.ExecuteSelectStreaming(q, &result, func(row []mysql.FieldValue) error { each(row); return nil }, nil)
	if !stop() {
		c.Close()
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	var myErr *mysql.MyError
	if err != nil && !errors.As(err, &myErr) {
		c.Close()
		return classify(err)
	}
	select {
	case v.idle <- c:
	default:
		c.Close()
	}
	return classify(err)
}

func (v *VerifyRows) session(ctx context.Context) (*client.Conn, error) {
	select {
	case c := <-v.idle:
		return c, nil
	default:
	}
	c, err := Connect(ctx, v.addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Execute("SET SESSION TRANSACTION READ ONLY"); err != nil {
		c.Close()
		return nil, fmt.Errorf("set up the verify session: %w", err)
	}
	return c, nil
}

// keyTable returns t with its key columns only, in key order.
func keyTable(t *schema.Table) (*schema.Table, error) {
	kt := &schema.Table{ID: t.ID, Key: t.Key, Root: t.Root}
	for _, k := range t.Key {
		i := slices.IndexFunc(t.Columns, func(c schema.Column) bool { return c.Name == k })
		if i < 0 || t.Columns[i].Generated {
			return nil, fmt.Errorf("key column %s of %s is missing or generated; reread the catalog, or give the table another key", k, t.ID)
		}
		kt.Columns = append(kt.Columns, t.Columns[i])
	}
	return kt, nil
}

// keyColumns returns the positions of t's key columns in CopyColumns(t), and the columns.
func keyColumns(t *schema.Table) ([]int, []*schema.Column, error) {
	if len(t.Key) == 0 {
		return nil, nil, fmt.Errorf("%s has no primary key or unique key on NOT NULL columns", t.ID)
	}
	var pos []int
	var cols []*schema.Column
	for _, k := range t.Key {
		n := 0
		found := false
		for i := range t.Columns {
			c := &t.Columns[i]
			if c.Generated {
				continue
			}
			if c.Name == k {
				pos, cols, found = append(pos, n), append(cols, c), true
				break
			}
			n++
		}
		if !found {
			return nil, nil, fmt.Errorf("key column %s of %s is missing or generated; reread the catalog, or give the table another key", k, t.ID)
		}
	}
	return pos, cols, nil
}

// keysWhere returns the condition that selects the rows with keys: `k` IN (...) for a key of one
// column, (`a` = .. AND `b` = ..) OR ... for a composite key, which both engines' range
// optimizers read as one range per key.
func keysWhere(cols []*schema.Column, keys [][]string) (string, error) {
	b := []byte{}
	if len(cols) == 1 {
		b = append(b, Quote(cols[0].Name)+" IN ("...)
	}
	var err error
	for i, key := range keys {
		if len(key) != len(cols) {
			return "", fmt.Errorf("a key of %d values for %d key columns", len(key), len(cols))
		}
		if i > 0 {
			if len(cols) == 1 {
				b = append(b, ", "...)
			} else {
				b = append(b, " OR "...)
			}
		}
		if len(cols) > 1 {
			b = append(b, '(')
		}
		for j, col := range cols {
			if len(cols) > 1 {
				if j > 0 {
					b = append(b, " AND "...)
				}
				b = append(b, Quote(col.Name)+" = "...)
			}
			if b, err = appendLiteral(b, literalClassOf(col), cdc.Value{Kind: cdc.ValueText, Data: []byte(key[j])}); err != nil {
				return "", fmt.Errorf("key column %s: %w", col.Name, err)
			}
		}
		if len(cols) > 1 {
			b = append(b, ')')
		}
	}
	if len(cols) == 1 {
		b = append(b, ')')
	}
	return string(b), nil
}

// rowKey returns the values at pos of row, or all of them when pos is nil.
func rowKey(row []cdc.Value, pos []int) []string {
	if pos == nil {
		key := make([]string, len(row))
		for i := range row {
			key[i] = string(row[i].Data)
		}
		return key
	}
	key := make([]string, len(pos))
	for i, j := range pos {
		key[i] = string(row[j].Data)
	}
	return key
}

// joinBytes makes a map key of key values, each prefixed by its length: binary values may hold
// any byte.
func joinBytes(key []string) string {
	var b []byte
	for _, k := range key {
		b = strconv.AppendInt(b, int64(len(k)), 10)
		b = append(b, ':')
		b = append(b, k...)
	}
	return string(b)
}

// KeyFromPostgres turns a key of a MySQL table t that was migrated to PostgreSQL, read from the
// PostgreSQL table as text in a session with TimeZone UTC (values in the order of t.Key), into
// the canonical MySQL form, in which VerifyRows matches keys. The PostgreSQL types are those of
// the type map: binary columns are bytea, printed in hex; DATETIME, TIMESTAMP and TIME are
// timestamp, timestamp with time zone (printed with the offset +00) and interval, printed without
// trailing zeros in the fraction; YEAR is smallint; FLOAT and DOUBLE are real and double
// precision. The other key types print as MySQL does.
func KeyFromPostgres(t *schema.Table, key []string) ([]string, error) {
	if len(key) != len(t.Key) {
		return nil, fmt.Errorf("a key of %d values for the %d key columns of %s", len(key), len(t.Key), t.ID)
	}
	out := slices.Clone(key)
	for i, k := range t.Key {
		j := slices.IndexFunc(t.Columns, func(c schema.Column) bool { return c.Name == k })
		if j < 0 {
			return nil, fmt.Errorf("key column %s of %s is not in the catalog", k, t.ID)
		}
		col := &t.Columns[j]
		v, err := canonicalFromPG(col, key[i])
		if err != nil {
			return nil, fmt.Errorf("key column %s of %s: %q: %w", k, t.ID, clipForError([]byte(key[i])), err)
		}
		out[i] = v
	}
	return out, nil
}

// canonicalFromPG turns the PostgreSQL text of a value of col, a MySQL column, into its
// canonical form.
func canonicalFromPG(col *schema.Column, v string) (string, error) {
	if literalClassOf(col) == literalBytes {
		h, ok := strings.CutPrefix(v, `\x`)
		if !ok {
			return "", errors.New("not bytea in hex")
		}
		b, err := hex.DecodeString(h)
		return string(b), err
	}
	switch col.DataType {
	case "timestamp":
		var ok bool
		if v, ok = strings.CutSuffix(v, "+00"); !ok {
			return "", errors.New("not a timestamp with time zone printed in UTC")
		}
		return padFraction(v, col.Scale), nil
	case "datetime", "time":
		return padFraction(v, col.Scale), nil
	case "year":
		if v == "0" {
			return "0000", nil
		}
	case "float", "double", "real", "double precision":
		bits := 64
		if col.DataType == "float" {
			bits = 32
		}
		f, err := strconv.ParseFloat(v, bits)
		if err != nil {
			return "", err
		}
		return strconv.FormatFloat(f, 'g', -1, bits), nil
	}
	return v, nil
}

// padFraction writes the fractional seconds of a time value with exactly scale digits, as MySQL
// prints them; PostgreSQL leaves out trailing zeros.
func padFraction(v string, scale int) string {
	whole, frac, _ := strings.Cut(v, ".")
	if scale == 0 {
		return whole
	}
	return whole + "." + frac + strings.Repeat("0", max(scale-len(frac), 0))
}

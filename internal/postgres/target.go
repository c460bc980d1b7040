package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/state"
)

// pipelineDepth is how many statements go to the target before their results are read, and
// pipelineBytes how many bytes of values. They bound memory for a source transaction of any size.
const (
	pipelineDepth = 1000
	pipelineBytes = 8 << 20
)

// Target applies changes to a PostgreSQL target on one connection. Values travel in PostgreSQL's
// text form exactly as pgoutput sent them, to prepared statements whose parameter types the
// server infers from the columns, so nothing is parsed or rounded on the way.
type Target struct {
	conn      *pgx.Conn
	migration string
	stream    string
	stmts     map[string]*pgconn.StatementDescription
	sqls      sqlCache
	// compactable holds the tables whose queued writes to one key may be folded into the last:
	// see targetTxn.queue.
	compactable map[cdc.TableID]bool
	// statements counts the statements sent for queued writes, which multi-row upserts keep
	// well below the writes (read by tests).
	statements int
}

// compactableSQL finds the tables where the order of writes to different rows inside one target
// transaction cannot matter, in every member of a partition tree: one unique index (the key), no
// exclusion constraint, and no trigger that fires for replicated rows (foreign keys and ordinary
// triggers do not fire under session_replication_role = replica). Folding matches rows by the
// text of their key, so every key column must be of a type whose equal values have equal text:
// not numeric (1.0 = 1.00), citext, or a non-deterministic collation.
const compactableSQL = `
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_migrated')
   AND NOT EXISTS (
     SELECT 1 FROM (SELECT c.oid AS relid UNION SELECT relid FROM pg_partition_tree(c.oid)) m
      WHERE (SELECT count(*) FROM pg_index i WHERE i.indrelid = m.relid AND i.indisunique) <> 1
         OR EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conrelid = m.relid AND x.contype = 'x')
         OR EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = m.relid AND NOT g.tgisinternal AND g.tgenabled IN ('A', 'R'))
         OR EXISTS (SELECT 1 FROM pg_index i
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
                      LEFT JOIN pg_collation co ON co.oid = a.attcollation
                     WHERE i.indrelid = m.relid AND i.indisunique
                       AND (a.atttypid NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'uuid'::regtype,
                                               'text'::regtype, 'varchar'::regtype, 'date'::regtype, 'bool'::regtype,
                                               'timestamp'::regtype, 'timestamptz'::regtype, 'bytea'::regtype)
                            OR (co.oid IS NOT NULL AND NOT co.collisdeterministic))))`

const replicationRoleAdvice = "run migrated as a superuser there, or GRANT SET ON PARAMETER session_replication_role TO the migrated role (PostgreSQL 15 and later)"

// CheckReplicationRole tells whether conn's role may set session_replication_role, which
// applying changes on that side needs (its triggers and foreign keys must not fire again), by
// setting it in a transaction that is rolled back.
func CheckReplicationRole(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return fmt.Errorf("the migrated role cannot set session_replication_role (%v); %s", err, replicationRoleAdvice)
	}
	return nil
}

// NewTarget connects to the target for applying the named stream ("forward" or "reverse").
// Triggers and foreign keys on the target do not fire for replicated rows
// (session_replication_role = replica), as they already fired on the source.
func NewTarget(ctx context.Context, dsn, migration, stream string) (*Target, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, &apply.TransientError{Err: fmt.Errorf("connect to target: %w", err)}
	}
	// Timestamps from MySQL arrive as UTC text without an offset, read in the session time zone.
	// A commit must be durable before its position is confirmed to the source, whatever the
	// target's defaults; and no statement timeout may cut a large source transaction forever.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on; SET statement_timeout = 0; SET TimeZone = 'UTC'"); err != nil {
		conn.Close(ctx)
		return nil, classify(fmt.Errorf("prepare target session: %w", err))
	}
	if _, err := conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		conn.Close(ctx)
		side := "target"
		if stream == "reverse" {
			side = "old source (which the reverse stream writes to)"
		}
		return nil, fmt.Errorf("set session_replication_role on the %s: %w; %s", side, err, replicationRoleAdvice)
	}
	t := &Target{conn: conn, migration: migration, stream: stream, stmts: map[string]*pgconn.StatementDescription{}, sqls: sqlCache{}, compactable: map[cdc.TableID]bool{}}
	rows, err := conn.Query(ctx, compactableSQL)
	if err != nil {
		conn.Close(ctx)
		return nil, classify(fmt.Errorf("read target catalog: %w", err))
	}
	for rows.Next() {
		var id cdc.TableID
		if err := rows.Scan(&id.Schema, &id.Name); err != nil {
			rows.Close()
			conn.Close(ctx)
			return nil, classify(fmt.Errorf("read target catalog: %w", err))
		}
		t.compactable[id] = true
	}
	rows.Close()
	return t, nil
}

// Close closes the connection.
func (t *Target) Close(ctx context.Context) error { return t.conn.Close(ctx) }

// Unfold treats tables as not compactable (see compactableSQL) although the catalog says they
// are: tables that will have a unique key besides the row key, which the post-data step adds
// while this session writes.
func (t *Target) Unfold(ids ...cdc.TableID) {
	for _, id := range ids {
		delete(t.compactable, id)
	}
}

// Begin opens a target transaction.
func (t *Target) Begin(ctx context.Context) (apply.Txn, error) {
	if _, err := t.conn.Exec(ctx, "BEGIN"); err != nil {
		return nil, classify(fmt.Errorf("begin target transaction: %w", err))
	}
	return &targetTxn{t: t, last: map[string]int{}}, nil
}

// BeginFresh opens a transaction for a snapshot chunk's rows (see apply.FreshWriter): they are
// written as plain inserts, which spare the target the speculative insertion of an upsert (about
// half its cost per row, with the key index in place), and a row already there fails the
// transaction with apply.ErrHeld.
func (t *Target) BeginFresh(ctx context.Context) (apply.Txn, error) {
	x, err := t.Begin(ctx)
	if err != nil {
		return nil, err
	}
	x.(*targetTxn).fresh = true
	return x, nil
}

type targetTxn struct {
	t       *Target
	pending []pendingStmt
	bytes   int
	// last maps a row (table and key) to its queued full-row write in pending.
	last map[string]int
	// fresh writes inserts as plain inserts (BeginFresh).
	fresh bool
}

// pendingStmt is a queued statement, its change (to name it in an error), and whether it must
// match a row: an UPDATE by key that matches none means the target has diverged from the source.
type pendingStmt struct {
	sd        *pgconn.StatementDescription
	args      [][]byte
	change    *cdc.Change
	mustMatch bool
	// together is the kind of a write that flush may send in one multi-row statement with the
	// like writes queued next to it (see batch): 'u' for an upsert into a compactable table, 'i'
	// for a fresh insert; 0 for none.
	together byte
}

// ErrRowMissing means an update found no row to change on the target.
var ErrRowMissing = errors.New("the row is missing on the target, so the target has diverged from the source; compare the table (the snapshot may have been altered on the target), then cancel and restart the migration")

func (x *targetTxn) Add(ctx context.Context, c *cdc.Change) error {
	if c.Op == cdc.OpMark {
		return x.mark(ctx, c)
	}
	var stmts []statement
	var err error
	if x.fresh && c.Op == cdc.OpInsert {
		stmts = []statement{insert(c.Relation, c.New, x.t.sqls)}
	} else {
		stmts, err = buildStatements(c, x.t.sqls)
	}
	if err != nil {
		return &apply.ChangeError{Table: tableOf(c), Op: c.Op.String(), Key: keyOf(c), SQLState: "none", Err: err}
	}
	for _, s := range stmts {
		sd, err := x.t.prepare(ctx, s.sql)
		if err != nil {
			return x.changeError(c, err)
		}
		x.queue(c, s, pendingStmt{sd: sd, args: s.args, change: c, mustMatch: s.mustMatch})
	}
	if len(x.pending) >= pipelineDepth || x.bytes >= pipelineBytes {
		return x.flush(ctx)
	}
	return nil
}

// queue adds a statement to the pipeline. A full-row write (upsert, or delete by key) to a row
// that already has one queued replaces it in place: inside one target transaction only a row's
// last image is visible, and on a compactable table the order of writes to different rows cannot
// change the outcome. Hot rows updated by every source transaction (counters, balances) are then
// written once per target transaction. A partial UPDATE or a TRUNCATE is never folded and ends
// folding for what it touches.
func (x *targetTxn) queue(c *cdc.Change, s statement, p pendingStmt) {
	x.bytes += len(s.sql)
	for _, a := range s.args {
		x.bytes += len(a)
	}
	if c.Op == cdc.OpTruncate {
		clear(x.last)
	}
	if p.together = s.together; p.together == 'u' && (c.Relation == nil || !x.t.compactable[c.Relation.Table]) {
		p.together = 0
	}
	if c.Relation == nil || !x.t.compactable[c.Relation.Table] || s.keyRow == nil {
		// A partial write must stay after every earlier write to the keys it touches, old and new.
		if c.Relation != nil {
			for _, row := range [][]cdc.Value{c.Old, c.New} {
				if row != nil {
					delete(x.last, rowKey(c.Relation.Table, keyArgs(c.Relation, row)))
				}
			}
		}
		x.pending = append(x.pending, p)
		return
	}
	k := rowKey(c.Relation.Table, keyArgs(c.Relation, s.keyRow))
	if i, ok := x.last[k]; ok {
		x.pending[i] = p
		return
	}
	x.last[k] = len(x.pending)
	x.pending = append(x.pending, p)
}

func rowKey(t cdc.TableID, key [][]byte) string {
	var b strings.Builder
	b.WriteString(t.Schema)
	b.WriteByte(0)
	b.WriteString(t.Name)
	for _, k := range key {
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(len(k)))
		b.WriteByte(':')
		b.Write(k)
	}
	return b.String()
}

// flush sends the queued statements and reads their results. The first failure names its change.
func (x *targetTxn) flush(ctx context.Context) error {
	if len(x.pending) == 0 {
		return nil
	}
	pending := x.pending
	x.pending, x.bytes = nil, 0
	clear(x.last)
	batch := &pgconn.Batch{}
	sent, err := x.batch(ctx, batch, pending)
	if err != nil {
		return err
	}
	x.t.statements += len(sent)
	mrr := x.t.conn.PgConn().ExecBatch(ctx, batch)
	failed, missing := -1, false
	var failure error
	i := 0
	for mrr.NextResult() {
		tag, err := mrr.ResultReader().Close()
		if failed < 0 && i < len(sent) {
			switch {
			case err != nil:
				failed, failure = i, err
			case pending[sent[i].from].mustMatch && tag.RowsAffected() == 0:
				failed, missing = i, true
			}
		}
		i++
	}
	err = mrr.Close()
	if failed < 0 && err != nil {
		if i >= len(sent) {
			return classify(fmt.Errorf("apply batch: %w", err))
		}
		// The pipeline stops at the failing statement: the results read so far succeeded.
		failed, failure = i, err
	}
	if failed < 0 {
		return nil
	}
	s := sent[failed]
	c := pending[s.from].change
	if held := x.held(failure); held != nil {
		return held
	}
	switch {
	case missing:
		return &apply.ChangeError{Table: tableOf(c), Op: c.Op.String(), Key: keyOf(c), SQLState: "none", Err: ErrRowMissing}
	case s.to-s.from > 1:
		return x.which(ctx, pending[s.from:s.to], failure)
	}
	return x.changeError(c, failure)
}

// rowsTogether are the sizes of the multi-row upserts that flush sends, largest first: a run of
// n like upserts goes in statements of these sizes, so that a table needs few prepared shapes.
var rowsTogether = []int{256, 64, 16, 4}

// maxParams bounds the parameters of one multi-row statement, and so its text and the plan the
// target keeps for it, per table and session (PostgreSQL allows 65,535).
const maxParams = 8192

// sentStmt is a statement of a flush: the queued writes pending[from:to] that it carries.
type sentStmt struct{ from, to int }

// batch puts the queued writes into b, in order. Consecutive upserts of one compactable table
// share multi-row statements: their keys differ, since a later write to a queued key replaced
// it (see queue), and a key freed by a partial write or a truncate comes back only after that
// statement. A thousand rows are then a handful of statements instead of a thousand, each of
// which the target would plan and execute on its own.
func (x *targetTxn) batch(ctx context.Context, b *pgconn.Batch, pending []pendingStmt) ([]sentStmt, error) {
	sent := make([]sentStmt, 0, len(pending))
	for i := 0; i < len(pending); {
		p := pending[i]
		end := i + 1
		for p.together != 0 && end < len(pending) && pending[end].sd == p.sd {
			end++
		}
		for i < end {
			n := 1
			for _, size := range rowsTogether {
				if size <= end-i && size*len(p.args) <= maxParams {
					n = size
					break
				}
			}
			if n == 1 {
				b.ExecStatement(pending[i].sd, pending[i].args, nil, nil)
				sent = append(sent, sentStmt{i, i + 1})
				i++
				continue
			}
			rel := p.change.Relation
			sd, err := x.t.prepare(ctx, x.t.sqls.getRows(rel, p.together, n, func() string { return rowsSQL(rel, n, p.together == 'u') }))
			if err != nil {
				return nil, x.changeError(p.change, err)
			}
			args := make([][]byte, 0, n*len(p.args))
			for _, q := range pending[i : i+n] {
				args = append(args, q.args...)
			}
			b.ExecStatement(sd, args, nil, nil)
			sent = append(sent, sentStmt{i, i + n})
			i += n
		}
	}
	return sent, nil
}

// which names the write that made a multi-row upsert fail. The transaction is lost anyway, so
// it is rolled back, and the rows are tried one at a time in a transaction that is rolled back
// too. An upsert into a compactable table fails alone or not at all: no other unique key,
// trigger or exclusion constraint sees the rows beside it. A failure that is not the rows'
// (the connection, a deadlock) is returned as it is, to be retried.
func (x *targetTxn) which(ctx context.Context, rows []pendingStmt, failure error) error {
	if err := classify(failure); apply.IsTransient(err) {
		return err
	}
	conn := x.t.conn.PgConn()
	if err := conn.Exec(ctx, "ROLLBACK; BEGIN").Close(); err != nil {
		// No row was tried: the session is gone or going, so this is not the rows' failure.
		return classify(fmt.Errorf("try the rows of a failed statement alone: %w", err))
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "ROLLBACK").Close()
	}()
	for _, p := range rows {
		if _, err := conn.ExecPrepared(ctx, p.sd.Name, p.args, nil, nil).Close(); err != nil {
			if held := x.held(err); held != nil {
				return held
			}
			return x.changeError(p.change, err)
		}
	}
	return x.changeError(rows[0].change, fmt.Errorf("%w (written in one statement with the %d rows after it, none of which fails alone)", failure, len(rows)-1))
}

// held turns a unique violation in a transaction of fresh rows into apply.ErrHeld: the rows
// are to be written again as upserts. It is nil for any other error.
func (x *targetTxn) held(err error) error {
	if !x.fresh || sqlState(err) != "23505" {
		return nil
	}
	return fmt.Errorf("%w: %v", apply.ErrHeld, err)
}

func (x *targetTxn) changeError(c *cdc.Change, err error) error {
	err = classify(err)
	if apply.IsTransient(err) {
		return err
	}
	return &apply.ChangeError{Table: tableOf(c), Op: c.Op.String(), Key: keyOf(c), SQLState: sqlState(err), Err: err}
}

// mark records a reconciled snapshot's progress after the rows queued before it.
func (x *targetTxn) mark(ctx context.Context, c *cdc.Change) error {
	if err := x.flush(ctx); err != nil {
		return err
	}
	cursor := make([][]byte, len(c.Mark.Cursor))
	for i, v := range c.Mark.Cursor {
		cursor[i] = []byte(v)
	}
	t := c.Relation.Table
	if _, err := x.t.conn.Exec(ctx, state.MarkSQL, x.t.migration, t.Schema, t.Name, cursor, c.Mark.Rows, c.Mark.Done); err != nil {
		return classify(fmt.Errorf("record snapshot progress of %s: %w", t, err))
	}
	return nil
}

func (x *targetTxn) Commit(ctx context.Context, pos cdc.Position, commitTime time.Time) error {
	var at *time.Time
	if !commitTime.IsZero() {
		at = &commitTime
	}
	if err := x.flush(ctx); err != nil {
		return err
	}
	// A nil pos is a snapshot chunk written beside the stream: it has no checkpoint.
	if pos != nil {
		if _, err := x.t.conn.Exec(ctx, state.CheckpointSQL, x.t.migration, x.t.stream, pos.String(), at); err != nil {
			return classify(fmt.Errorf("write checkpoint %s: %w", pos, err))
		}
	}
	tag, err := x.t.conn.Exec(ctx, "COMMIT")
	if err != nil {
		return classify(fmt.Errorf("commit %s: %w", apply.CommitWhat(pos), err))
	}
	if tag.String() != "COMMIT" {
		// An aborted transaction "commits" as ROLLBACK: never report that position durable.
		return fmt.Errorf("commit %s: the target rolled it back (%s)", apply.CommitWhat(pos), tag)
	}
	return nil
}

func (x *targetTxn) Rollback(ctx context.Context) {
	if x.t.conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _ = x.t.conn.Exec(ctx, "ROLLBACK")
}

func (t *Target) prepare(ctx context.Context, sql string) (*pgconn.StatementDescription, error) {
	if sd, ok := t.stmts[sql]; ok {
		return sd, nil
	}
	sd, err := t.conn.PgConn().Prepare(ctx, "m"+strconv.Itoa(len(t.stmts)), sql, nil)
	if err != nil {
		return nil, err
	}
	t.stmts[sql] = sd
	return sd, nil
}

type statement struct {
	sql  string
	args [][]byte
	// mustMatch is set on an UPDATE by key, which must find its row.
	mustMatch bool
	// keyRow is the row image holding the key when the statement writes the row's whole image
	// (an upsert, a delete by key), so that a later one may replace it. Only a compactable
	// table's queue reads the key out of it.
	keyRow []cdc.Value
	// together is 'u' on an upsert and 'i' on a plain insert: their rows can share a multi-row
	// statement (see pendingStmt).
	together byte
}

// statements turns a change into idempotent SQL. An insert is an upsert. An update whose new row
// is complete is an upsert too (after deleting the old key if the key changed), so replay from an
// earlier position converges. An update that carries unchanged TOAST values is an UPDATE by key
// of the columns that were sent, so those values are never overwritten.
func statements(c *cdc.Change) ([]statement, error) { return buildStatements(c, nil) }

// buildStatements is statements with the SQL text of upserts and deletes taken from sqls.
func buildStatements(c *cdc.Change, sqls sqlCache) ([]statement, error) {
	switch c.Op {
	case cdc.OpInsert:
		return []statement{upsert(c.Relation, c.New, sqls)}, nil
	case cdc.OpUpdate:
		oldKey := keyChanged(c)
		if !hasUnchanged(c.New) {
			if oldKey == nil {
				return []statement{upsert(c.Relation, c.New, sqls)}, nil
			}
			return []statement{deleteByKey(c.Relation, oldKey, sqls), upsert(c.Relation, c.New, sqls)}, nil
		}
		where := c.New
		if oldKey != nil {
			where = oldKey
		}
		s, ok := updateByKey(c.Relation, c.New, where, oldKey != nil)
		if !ok {
			return nil, nil // only unchanged TOAST values: nothing on the target changes
		}
		return []statement{s}, nil
	case cdc.OpDelete:
		if c.Old == nil {
			return nil, fmt.Errorf("delete on %s without an old key; set a primary key or replica identity", c.Relation.Table)
		}
		return []statement{deleteByKey(c.Relation, c.Old, sqls)}, nil
	case cdc.OpTruncate:
		names := make([]string, len(c.Truncated))
		for i, r := range c.Truncated {
			names[i] = ident(r.Table)
		}
		return []statement{{sql: "TRUNCATE " + strings.Join(names, ", ")}}, nil
	}
	return nil, fmt.Errorf("unknown change op %s", c.Op)
}

// keyChanged returns the old row image when the update moved the row to a new key, else nil.
func keyChanged(c *cdc.Change) []cdc.Value {
	if c.Old == nil {
		return nil
	}
	for _, i := range c.Relation.KeyColumns() {
		o, n := c.Old[i], c.New[i]
		if o.Kind != n.Kind || string(o.Data) != string(n.Data) {
			return c.Old
		}
	}
	return nil
}

func hasUnchanged(vals []cdc.Value) bool {
	for _, v := range vals {
		if v.Kind == cdc.ValueUnchanged {
			return true
		}
	}
	return false
}

func upsert(rel *cdc.Relation, row []cdc.Value, sqls sqlCache) statement {
	sql := sqls.get(rel, 'u', func() string { return upsertSQL(rel) })
	return statement{sql: sql, args: rowArgs(rel, row), keyRow: row, together: 'u'}
}

// insert is a plain insert of a row, for a transaction of fresh rows.
func insert(rel *cdc.Relation, row []cdc.Value, sqls sqlCache) statement {
	sql := sqls.get(rel, 'i', func() string { return rowsSQL(rel, 1, false) })
	return statement{sql: sql, args: rowArgs(rel, row), together: 'i'}
}

// rowArgs are the parameters of a whole row.
func rowArgs(rel *cdc.Relation, row []cdc.Value) [][]byte {
	args := make([][]byte, len(rel.Columns))
	for i := range rel.Columns {
		args[i] = arg(row[i])
	}
	return args
}

func upsertSQL(rel *cdc.Relation) string { return rowsSQL(rel, 1, true) }

// rowsSQL inserts n rows in one statement, their values in parameters row after row; upsert
// adds the ON CONFLICT clause, and then the rows' keys must differ: ON CONFLICT cannot change
// one row twice in a statement.
func rowsSQL(rel *cdc.Relation, n int, upsert bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(ident(rel.Table))
	b.WriteString(" (")
	for i, col := range rel.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(col.Name))
	}
	b.WriteString(") OVERRIDING SYSTEM VALUE VALUES ")
	for r := range n {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i := range rel.Columns {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("$" + strconv.Itoa(r*len(rel.Columns)+i+1))
		}
		b.WriteByte(')')
	}
	if !upsert {
		return b.String()
	}
	b.WriteString(" ON CONFLICT (")
	first := true
	for _, i := range rel.KeyColumns() {
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(quote(rel.Columns[i].Name))
	}
	b.WriteString(") DO ")
	set := 0
	for _, col := range rel.Columns {
		if col.Key {
			continue
		}
		if set == 0 {
			b.WriteString("UPDATE SET ")
		} else {
			b.WriteString(", ")
		}
		set++
		b.WriteString(quote(col.Name) + " = EXCLUDED." + quote(col.Name))
	}
	if set == 0 {
		b.WriteString("NOTHING")
	}
	return b.String()
}

// sqlCache keeps the SQL text of the statements whose text depends only on the relation (upsert,
// delete by key), so that the hot path builds no strings. The decoder makes a new Relation after
// every relation message, so a stale shape is never reused. A nil cache builds every time.
type sqlCache map[shapeKey]string

type shapeKey struct {
	rel  *cdc.Relation
	kind byte
	rows int // of a multi-row upsert
}

func (c sqlCache) get(rel *cdc.Relation, kind byte, build func() string) string {
	return c.getRows(rel, kind, 0, build)
}

func (c sqlCache) getRows(rel *cdc.Relation, kind byte, rows int, build func() string) string {
	if c == nil {
		return build()
	}
	k := shapeKey{rel, kind, rows}
	if sql, ok := c[k]; ok {
		return sql
	}
	sql := build()
	c[k] = sql
	return sql
}

// updateByKey returns false when no column is sent, e.g. UPDATE t SET id = id with all other
// columns unchanged TOAST.
func updateByKey(rel *cdc.Relation, row, where []cdc.Value, setKey bool) (statement, bool) {
	var b strings.Builder
	var args [][]byte
	b.WriteString("UPDATE " + ident(rel.Table) + " SET ")
	n := 0
	for i, col := range rel.Columns {
		if row[i].Kind == cdc.ValueUnchanged || (col.Key && !setKey) {
			continue
		}
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		args = append(args, arg(row[i]))
		b.WriteString(quote(col.Name) + " = $" + strconv.Itoa(len(args)))
	}
	if n == 0 {
		return statement{}, false
	}
	b.WriteString(" WHERE ")
	writeKeyWhere(&b, rel, where, &args)
	return statement{sql: b.String(), args: args, mustMatch: true}, true
}

func keyArgs(rel *cdc.Relation, row []cdc.Value) [][]byte {
	idx := rel.KeyColumns()
	key := make([][]byte, len(idx))
	for n, i := range idx {
		key[n] = arg(row[i])
	}
	return key
}

func deleteByKey(rel *cdc.Relation, old []cdc.Value, sqls sqlCache) statement {
	sql := sqls.get(rel, 'd', func() string {
		var b strings.Builder
		var ignored [][]byte
		b.WriteString("DELETE FROM " + ident(rel.Table) + " WHERE ")
		writeKeyWhere(&b, rel, old, &ignored)
		return b.String()
	})
	return statement{sql: sql, args: keyArgs(rel, old), keyRow: old} // args: the WHERE's, in key order
}

func writeKeyWhere(b *strings.Builder, rel *cdc.Relation, row []cdc.Value, args *[][]byte) {
	for n, i := range rel.KeyColumns() {
		if n > 0 {
			b.WriteString(" AND ")
		}
		*args = append(*args, arg(row[i]))
		b.WriteString(quote(rel.Columns[i].Name) + " = $" + strconv.Itoa(len(*args)))
	}
}

func arg(v cdc.Value) []byte {
	if v.Kind == cdc.ValueNull {
		return nil
	}
	if v.Data == nil {
		return []byte{}
	}
	return v.Data
}

func ident(t cdc.TableID) string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }
func quote(s string) string      { return pgx.Identifier{s}.Sanitize() }

func tableOf(c *cdc.Change) string {
	if c.Relation != nil {
		return c.Relation.Table.String()
	}
	var names []string
	for _, r := range c.Truncated {
		names = append(names, r.Table.String())
	}
	return strings.Join(names, ", ")
}

// keyOf renders the key of the changed row for an operator: key columns only, never whole rows.
func keyOf(c *cdc.Change) string {
	if c.Relation == nil {
		return "truncate"
	}
	row := c.New
	if c.Old != nil {
		row = c.Old
	}
	var parts []string
	for _, i := range c.Relation.KeyColumns() {
		v := "NULL"
		if row[i].Kind == cdc.ValueText {
			v = string(row[i].Data)
			if len(v) > 64 {
				cut := 64
				for cut > 0 && !utf8.RuneStart(v[cut]) {
					cut--
				}
				v = v[:cut] + "…"
			}
		}
		parts = append(parts, c.Relation.Columns[i].Name+"="+v)
	}
	return strings.Join(parts, ", ")
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return "none"
}

// classify marks errors worth a retry from the last checkpoint as transient.
func classify(err error) error {
	if err == nil || apply.IsTransient(err) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "40001", pgErr.Code == "40P01", // serialization failure, deadlock
			strings.HasPrefix(pgErr.Code, "53"),          // insufficient resources
			strings.HasPrefix(pgErr.Code, "57P"),         // admin shutdown, crash shutdown, cannot connect now
			pgErr.Code == "55P03", pgErr.Code == "57014": // lock not available, query cancelled
			return &apply.TransientError{Err: err}
		}
		return err
	}
	// Below SQL (a reset connection, an EOF, a timeout) it is the network: retry from the checkpoint.
	return &apply.TransientError{Err: err}
}

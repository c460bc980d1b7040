package mysql

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// Statement limits. A multi-row statement carries at most maxStmtRows rows and about
// maxStmtBytes bytes, and always fits the target's max_allowed_packet with packetSlack to
// spare; they bound memory for a source transaction of any size.
const (
	maxStmtRows  = 1000
	maxStmtBytes = 4 << 20
	packetSlack  = 1 << 10
)

// ErrStateTable means a change to one of migrated's own tables (such as `_migrated`.`watermark`
// on the source) reached the target writer; the stream must filter them out.
var ErrStateTable = errors.New("a change to migrated's own tables reached the target writer; the stream must leave out the " + StateDB + " database")

// Target applies changes into a MySQL database (Addr.DB) and checkpoints in
// `_migrated`.`progress`, on one connection reused by every transaction. Values are written as
// SQL literals rendered from their canonical text (see literal.go), so nothing is parsed or
// rounded on the way.
type Target struct {
	// session is the main session: it writes every change but the folded rows of a batch
	// spread over lanes, and the checkpoint.
	session
	db        string
	migration string
	stream    string
	// tables are the source tables by their source ID; changes name them so.
	tables map[cdc.TableID]*schema.Table
	shapes map[cdc.TableID]*shape
	// maxPacket is the target's max_allowed_packet; maxBytes the statement size cap below it.
	maxPacket, maxBytes int
	// out[0] buffers the main session's statements; out[1:] the extra lanes' (see Spread).
	out []*sender
	// addr reopens a lane whose session was lost between rounds.
	addr Addr
	// foldable holds the tables whose only unique key on the target is the row key: only a
	// row's last image in a transaction matters for them (see fold).
	foldable map[cdc.TableID]bool
	// noLoad is set once the server refused LOAD DATA LOCAL (see BeginFresh).
	noLoad bool
}

// NewTarget connects to a.DB for applying the named stream ("forward" or "reverse") of the
// given source tables, and creates the `_migrated` state tables if missing. Foreign keys are
// not checked on the session (foreign_key_checks = 0): the source already checked them, and
// rows of a source transaction grouped with others must not be refused for their order. Reads
// are READ COMMITTED, so that the upserts take no gap locks.
func NewTarget(ctx context.Context, a Addr, migration, stream string, tables []*schema.Table) (*Target, error) {
	conn, err := connect(ctx, a, true)
	if err != nil {
		return nil, classify(err)
	}
	t := &Target{session: session{conn: conn}, db: a.DB, migration: migration, stream: stream,
		tables: ByName(tables), shapes: map[cdc.TableID]*shape{}}
	t.out = []*sender{{t: t, s: &t.session}}
	if err := t.prepare(ctx, &t.session); err != nil {
		conn.Close()
		return nil, err
	}
	s, _, err := QueryString(conn, "SELECT @@max_allowed_packet")
	if err != nil {
		conn.Close()
		return nil, classify(fmt.Errorf("read the target's max_allowed_packet: %w", err))
	}
	if t.maxPacket, err = strconv.Atoi(s); err != nil || t.maxPacket <= 2*packetSlack {
		conn.Close()
		return nil, fmt.Errorf("the target's max_allowed_packet is %q; set it to at least 16M", s)
	}
	t.maxBytes = min(maxStmtBytes, t.maxPacket-packetSlack)
	if err := EnsureState(conn); err != nil {
		conn.Close()
		return nil, classify(err)
	}
	if t.foldable, err = foldableTables(conn, a.DB, tables); err != nil {
		conn.Close()
		return nil, classify(err)
	}
	return t, nil
}

// Unfold stops folding the changes of tables that will have a unique key besides the row key
// (one the post-data step adds after the copy, say): for them the order of writes matters.
func (t *Target) Unfold(ids ...cdc.TableID) {
	for _, id := range ids {
		delete(t.foldable, id)
	}
}

// Spread opens n more sessions on the target, the lanes, when n is 2 or more: the folded rows
// of each batch (see fold) are spread over them by key and written at the same time (see
// sendFolded), while the main session writes every other change and the checkpoint. n <= 1
// keeps the one session.
//
// No lanes are opened when no table is foldable: they would sit idle.
func (t *Target) Spread(ctx context.Context, a Addr, n int) error {
	if n <= 1 || len(t.foldable) == 0 {
		return nil
	}
	t.addr = a
	for len(t.out) < n+1 {
		s, err := t.openLane(ctx)
		if err != nil {
			return fmt.Errorf("open apply lane %d of %d on the target: %w", len(t.out), n, err)
		}
		t.out = append(t.out, &sender{t: t, s: s})
	}
	return nil
}

// laneLockWait bounds a lane's waits for row and metadata locks (lock_wait_timeout and
// innodb_lock_wait_timeout, in seconds). The main session waits in migrated for its lanes while
// its own transaction holds locks, so a lane waiting on a lock held by something that waits for
// that transaction (an ALTER TABLE of the post-data step, queued for a metadata lock, say) is a
// cycle the server cannot see: the bound ends it, the batch is rolled back, and the stream
// replays it.
const laneLockWait = 10

// openLane opens and prepares a lane session.
func (t *Target) openLane(ctx context.Context) (*session, error) {
	conn, err := connect(ctx, t.addr, true)
	if err != nil {
		return nil, classify(err)
	}
	s := &session{conn: conn}
	err = t.prepare(ctx, s)
	if err == nil {
		q := fmt.Sprintf("SET SESSION lock_wait_timeout = %d, innodb_lock_wait_timeout = %d", laneLockWait, laneLockWait)
		if err = s.exec(ctx, q); err != nil {
			err = classify(fmt.Errorf("prepare the lane session (%s): %w", q, err))
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// foldableTables lists the tables whose target table has no unique key but its primary key,
// and whose key compares byte by byte: numbers, dates and times, binary strings. A character
// key may be equal to another under its collation (case, accents, trailing spaces) while its
// bytes differ, and folding by bytes would then reorder two writes of one row.
func foldableTables(c *client.Conn, db string, tables []*schema.Table) (map[cdc.TableID]bool, error) {
	rows, err := QueryStrings(c, "SELECT TABLE_NAME, count(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS "+
		"WHERE TABLE_SCHEMA = ? AND NON_UNIQUE = 0 GROUP BY TABLE_NAME", db)
	if err != nil {
		return nil, fmt.Errorf("read the target's unique keys: %w", err)
	}
	unique := map[string]string{}
	for _, r := range rows {
		unique[*r[0]] = *r[1]
	}
	out := map[cdc.TableID]bool{}
	for _, t := range tables {
		if unique[t.ID.Name] == "1" && len(t.Key) > 0 && byteKey(t) {
			out[t.ID] = true
		}
	}
	return out, nil
}

// prepare sets a target session up for applying: foreign keys unchecked, READ COMMITTED, and
// row-based binary logging (see rowBinlog).
func (t *Target) prepare(ctx context.Context, s *session) error {
	for _, q := range []string{"SET SESSION foreign_key_checks = 0", "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"} {
		if err := s.exec(ctx, q); err != nil {
			return classify(fmt.Errorf("prepare the target session (%s): %w", q, err))
		}
	}
	return rowBinlog(ctx, s)
}

// rowBinlog makes a binary-logging target log this session's writes by row: InnoDB refuses
// statement-based logging under READ COMMITTED (error 1665).
func rowBinlog(ctx context.Context, s *session) error {
	rows, err := QueryStrings(s.conn, "SELECT @@log_bin, @@binlog_format")
	if err != nil {
		return classify(fmt.Errorf("read the target's binary log settings: %w", err))
	}
	if len(rows) != 1 || rows[0][0] == nil || *rows[0][0] == "0" || rows[0][1] == nil || !strings.EqualFold(*rows[0][1], "STATEMENT") {
		return nil
	}
	if err := s.exec(ctx, "SET SESSION binlog_format = 'ROW'"); err != nil {
		return fmt.Errorf("the target logs statements (binlog_format = STATEMENT), which InnoDB refuses under READ COMMITTED, and migrated may not switch its session to ROW (%w); set binlog_format = ROW (or MIXED) on the target, or grant migrated's user BINLOG ADMIN", err)
	}
	return nil
}

// Close closes the connections. An open transaction is rolled back by the server.
func (t *Target) Close() {
	for _, o := range t.out {
		o.s.conn.Close()
	}
}

// Begin opens a target transaction. The lanes' transactions open when rows are first sent
// on them; a lane whose session broke is opened again then (it holds no transaction between
// rounds).
func (t *Target) Begin(ctx context.Context) (apply.Txn, error) {
	if t.broken {
		return nil, &apply.TransientError{Err: errors.New("the target connection was interrupted; reconnect")}
	}
	if err := t.exec(ctx, "START TRANSACTION"); err != nil {
		return nil, classify(fmt.Errorf("begin target transaction: %w", err))
	}
	for _, o := range t.out {
		o.reset()
	}
	t.out[0].began = true
	return &targetTxn{t: t}, nil
}

// session is one connection to the target.
type session struct {
	conn *client.Conn
	// broken is set once an interrupted statement left the connection unusable.
	broken bool
}

// exec runs one statement. The client library takes no context, so a done ctx interrupts the
// statement by expiring the connection's deadline, which leaves the connection unusable; the
// server then rolls the open transaction back.
func (s *session) exec(ctx context.Context, q string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetDeadline(time.Now()) })
	r, err := s.conn.Execute(q)
	if r != nil {
		r.Close()
	}
	if !stop() {
		s.broken = true
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	var myErr *mysql.MyError
	if err != nil && !errors.As(err, &myErr) {
		s.broken = true // below SQL: the connection is in an unknown state
	}
	return err
}

// stmtKind is the kind of a buffered multi-row statement.
type stmtKind uint8

const (
	stmtUpsert stmtKind = iota + 1
	stmtDelete
)

type targetTxn struct {
	t    *Target
	done bool
	// folded holds the last image of each row changed in foldable tables, not yet sent.
	folded  map[cdc.TableID]*foldedTable
	nfolded int
	// serial keeps the folded rows on the main session for the rest of the transaction: a
	// truncate there holds locks that a lane would wait for.
	serial bool
	// failed is the error of a send of folded rows, which cleared them: the transaction may
	// only be rolled back.
	failed error
	// fresh sends inserts as LOAD DATA (see BeginFresh), buffered in load.
	fresh bool
	load  loader
}

// sender buffers one session's multi-row statement: its table shape and kind, its text so far
// (without the suffix), and the rows in it, each with its change, to name the change the
// target refuses. Its buffers are kept across transactions.
type sender struct {
	t     *Target
	s     *session
	began bool // a transaction is open on the session
	shape *shape
	kind  stmtKind
	stmt  []byte
	rows  []bufferedRow
	row   []byte // one rendered row
}

type bufferedRow struct {
	change     *cdc.Change
	start, end int // the row's bytes in stmt
}

func (o *sender) reset() {
	o.began, o.shape = false, nil
	o.stmt, o.rows = o.stmt[:0], o.rows[:0]
}

// Add applies a change idempotently. Inserts and updates are upserts (an update that moved
// the row to a new key first deletes the old key), deletes are by key. Consecutive changes of
// the same table and kind share one multi-row statement, so the target sees every key's
// changes in source order. Rows of foldable tables are folded (see fold) and sent at the end;
// the order of writes to different tables does not matter, since foreign keys are not checked.
func (x *targetTxn) Add(ctx context.Context, c *cdc.Change) error {
	if x.done {
		return errors.New("apply to a finished target transaction")
	}
	if x.failed != nil {
		return x.failed
	}
	main := x.t.out[0]
	switch c.Op {
	case cdc.OpInsert, cdc.OpUpdate, cdc.OpDelete:
		s, err := x.t.shapeOf(c.Relation)
		if err != nil {
			return refuse(c, nil, err)
		}
		if x.fresh && c.Op == cdc.OpInsert {
			return x.loadRow(ctx, s, c)
		}
		if err := x.flushLoad(ctx); err != nil {
			return err
		}
		if x.t.foldable[c.Relation.Table] {
			return x.fold(ctx, s, c)
		}
		switch c.Op {
		case cdc.OpInsert:
			return main.push(ctx, s, stmtUpsert, c, c.New)
		case cdc.OpUpdate:
			if old := keyMoved(s, c); old != nil {
				if err := main.push(ctx, s, stmtDelete, c, old); err != nil {
					return err
				}
			}
			return main.push(ctx, s, stmtUpsert, c, c.New)
		default:
			if c.Old == nil {
				return refuse(c, s, errors.New("a delete without the old row's key"))
			}
			return main.push(ctx, s, stmtDelete, c, c.Old)
		}
	case cdc.OpTruncate:
		// The folded and loaded rows before it must reach the target first.
		if err := x.flushLoad(ctx); err != nil {
			return err
		}
		if err := x.sendFolded(ctx); err != nil {
			return err
		}
		x.serial = true
		return x.truncate(ctx, c)
	case cdc.OpMark:
		if err := x.flushLoad(ctx); err != nil {
			return err
		}
		return x.mark(ctx, c)
	}
	return refuse(c, nil, fmt.Errorf("unknown change op %s", c.Op))
}

// foldedTable is the last image of each row of one table changed in the transaction.
type foldedTable struct {
	shape *shape
	order []string // keys, first change first
	last  map[string]foldedRow
}

type foldedRow struct {
	change *cdc.Change
	row    []cdc.Value // the new row of an upsert, the old key of a delete
	delete bool
}

// maxFolded bounds the rows held for folding; past it they are sent and folding starts over.
var maxFolded = 20000

// fold records a change to a foldable table as its row's last image. Inside one target
// transaction only the last image of each row is visible, and with no unique key but the row
// key no two rows' writes can meet, so the rows are sent at the end as one DELETE and one
// upsert per table whatever the order they changed in. Hot rows (counters, balances) are then
// written once per transaction, and a batch of source transactions costs a few statements.
func (x *targetTxn) fold(ctx context.Context, s *shape, c *cdc.Change) error {
	ft := x.folded[c.Relation.Table]
	if ft == nil || ft.shape != s {
		if ft != nil {
			// The relation changed shape: send what was folded under the old one.
			if err := x.sendFolded(ctx); err != nil {
				return err
			}
		}
		if x.folded == nil {
			x.folded = map[cdc.TableID]*foldedTable{}
		}
		ft = &foldedTable{shape: s, last: map[string]foldedRow{}}
		x.folded[c.Relation.Table] = ft
	}
	put := func(row []cdc.Value, del bool) error {
		if len(row) != len(s.cols) {
			return refuse(c, s, fmt.Errorf("the change has %d values for %d columns", len(row), len(s.cols)))
		}
		for _, i := range s.key {
			if row[i].Kind != cdc.ValueText {
				return refuse(c, s, errors.New("a key column has no value"))
			}
		}
		k := foldKey(row, s.key)
		if _, seen := ft.last[k]; !seen {
			ft.order = append(ft.order, k)
			x.nfolded++
		}
		ft.last[k] = foldedRow{change: c, row: row, delete: del}
		return nil
	}
	var err error
	switch c.Op {
	case cdc.OpInsert:
		err = put(c.New, false)
	case cdc.OpUpdate:
		if old := keyMoved(s, c); old != nil {
			if err = put(old, true); err != nil {
				return err
			}
		}
		err = put(c.New, false)
	default:
		if c.Old == nil {
			return refuse(c, s, errors.New("a delete without the old row's key"))
		}
		err = put(c.Old, true)
	}
	if err != nil {
		return err
	}
	if x.nfolded >= maxFolded {
		return x.sendFolded(ctx)
	}
	return nil
}

// laneRow is one folded row as a lane sends it.
type laneRow struct {
	shape *shape
	kind  stmtKind
	r     foldedRow
}

// sendFolded writes the folded rows: per table, the deletes, then the upserts.
//
// With lanes (see Spread), each row goes to the lane its key hashes to, and every lane writes
// its rows in a transaction of its own, committed before sendFolded returns; the main session
// writes none. No session then waits for another while it holds locks, so a lock one lane
// waits for (the gap lock of a duplicate-key check, say) is released when the other commits,
// and a deadlock between two lanes is one the server sees and breaks. The rows committed on
// the lanes are ahead of the checkpoint until the main session commits: a crash in between
// leaves them there, and the restart writes them again from the checkpoint, idempotently, so
// the target converges. Lanes write disjoint rows, so no key's writes are reordered.
func (x *targetTxn) sendFolded(ctx context.Context) error {
	if x.nfolded == 0 {
		return nil
	}
	out := x.t.out
	lanes := len(out) - 1
	if x.serial {
		lanes = 0
	}
	parts := make([][]laneRow, len(out))
	for _, ft := range x.folded {
		for _, kind := range []stmtKind{stmtDelete, stmtUpsert} {
			for _, k := range ft.order {
				r := ft.last[k]
				if r.delete != (kind == stmtDelete) {
					continue
				}
				i := 0
				if lanes > 0 {
					i = 1 + laneOf(k, lanes)
				}
				parts[i] = append(parts[i], laneRow{shape: ft.shape, kind: kind, r: r})
			}
		}
	}
	clear(x.folded)
	x.nfolded = 0
	var err error
	if len(parts[0]) > 0 {
		// No lanes: the rows go in the main session's transaction.
		err = out[0].send(ctx, parts[0])
	} else {
		err = x.t.rounds(ctx, parts)
	}
	if err != nil {
		x.failed = err
	}
	return err
}

// laneRetries is how many times a lane's round is tried when the server breaks a deadlock
// or a lock wait times out.
const laneRetries = 5

// round writes rows in a transaction of the lane's own and commits it, again from the start
// when the server rolled it back to break a deadlock. On any error the lane is left with no
// transaction open.
func (o *sender) round(ctx context.Context, rows []laneRow) error {
	for attempt := 1; ; attempt++ {
		if o.s.broken {
			s, err := o.t.openLane(ctx)
			if err != nil {
				return fmt.Errorf("open an apply lane on the target again: %w", err)
			}
			o.s.conn.Close()
			o.s = s
		}
		err := o.s.exec(ctx, "START TRANSACTION")
		if err != nil && o.s.broken && attempt == 1 && ctx.Err() == nil {
			continue // lost while idle (wait_timeout, a restart): nothing was sent on it
		}
		if err != nil {
			return classify(fmt.Errorf("begin a lane transaction: %w", err))
		}
		o.began = true
		if err = o.send(ctx, rows); err == nil {
			if err = o.s.exec(ctx, "COMMIT"); err == nil {
				o.began = false
				return nil
			}
			err = classify(fmt.Errorf("commit a lane transaction: %w", err))
		}
		o.abort(ctx)
		var myErr *mysql.MyError
		if attempt == laneRetries || !errors.As(err, &myErr) || (myErr.Code != 1213 && myErr.Code != 1205) {
			return err
		}
	}
}

// abort rolls the session's open transaction back, best effort: a broken connection has lost
// it already.
func (o *sender) abort(ctx context.Context) {
	o.rows = o.rows[:0]
	if o.began && !o.s.broken {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = o.s.exec(ctx, "ROLLBACK")
	}
	o.began = false
}

// send writes rows in the session's open transaction.
func (o *sender) send(ctx context.Context, rows []laneRow) error {
	for _, lr := range rows {
		if err := o.push(ctx, lr.shape, lr.kind, lr.r.change, lr.r.row); err != nil {
			return err
		}
	}
	return o.flush(ctx)
}

// laneOf spreads fold keys over n lanes (FNV-1a). One key always goes to the same lane.
func laneOf(k string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h = (h ^ uint32(k[i])) * 16777619
	}
	return int(h % uint32(n))
}

// rounds writes parts[i] in a round of lane i (see round), on every lane with rows at the same
// time, and returns the first error in lane order.
func (t *Target) rounds(ctx context.Context, parts [][]laneRow) error {
	errs := make([]error, len(t.out))
	var wg sync.WaitGroup
	for i := 1; i < len(t.out); i++ {
		if len(parts[i]) > 0 {
			wg.Go(func() { errs[i] = t.out[i].round(ctx, parts[i]) })
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// byteKey reports whether every key column of t compares by its bytes.
func byteKey(t *schema.Table) bool {
	for _, k := range t.Key {
		i := slices.IndexFunc(t.Columns, func(c schema.Column) bool { return c.Name == k })
		if i < 0 {
			return false
		}
		switch t.Columns[i].DataType {
		case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "year",
			"date", "datetime", "timestamp", "time", "binary", "varbinary", "bit":
		default:
			return false
		}
	}
	return true
}

// foldKey encodes a row's key so that equal keys give equal strings.
func foldKey(row []cdc.Value, key []int) string {
	var b []byte
	for _, i := range key {
		b = binary.AppendUvarint(b, uint64(len(row[i].Data)))
		b = append(b, row[i].Data...)
	}
	return string(b)
}

// push renders one row into the buffered statement, sending the statement first when the row
// belongs to another, or would make it too large.
func (o *sender) push(ctx context.Context, s *shape, kind stmtKind, c *cdc.Change, row []cdc.Value) error {
	if len(row) != len(s.cols) {
		return refuse(c, s, fmt.Errorf("the change has %d values for %d columns", len(row), len(s.cols)))
	}
	r, err := s.appendRow(o.row[:0], kind, row)
	o.row = r
	if err != nil {
		return refuse(c, s, err)
	}
	prefix, suffix := s.sql(kind)
	if alone := len(prefix) + len(r) + len(suffix); alone > o.t.maxPacket-packetSlack {
		return refuse(c, s, fmt.Errorf("the row needs a %d-byte statement, more than the target's max_allowed_packet (%d); raise max_allowed_packet on the target (SET GLOBAL max_allowed_packet = 1073741824)", alone, o.t.maxPacket))
	}
	if len(o.rows) > 0 && (o.shape != s || o.kind != kind || len(o.rows) >= maxStmtRows ||
		len(o.stmt)+1+len(r)+len(suffix) > o.t.maxBytes) {
		if err := o.flush(ctx); err != nil {
			return err
		}
	}
	if len(o.rows) == 0 {
		o.shape, o.kind = s, kind
		o.stmt = append(o.stmt[:0], prefix...)
	} else {
		o.stmt = append(o.stmt, ',')
	}
	start := len(o.stmt)
	o.stmt = append(o.stmt, r...)
	o.rows = append(o.rows, bufferedRow{change: c, start: start, end: len(o.stmt)})
	return nil
}

// flush sends the buffered statement.
func (o *sender) flush(ctx context.Context) error {
	if len(o.rows) == 0 {
		return nil
	}
	prefix, suffix := o.shape.sql(o.kind)
	if len(o.rows) == 1 {
		o.stmt = o.shape.onePlan(o.kind, o.stmt, o.rows[0].start, o.rows[0].end)
	}
	o.stmt = append(o.stmt, suffix...)
	err := o.s.exec(ctx, string(o.stmt))
	rows := o.rows
	o.rows = o.rows[:0]
	if err == nil {
		return nil
	}
	var myErr *mysql.MyError
	if len(rows) == 1 || !errors.As(err, &myErr) || apply.IsTransient(classify(err)) {
		return changeError(rows[0].change, o.shape, err)
	}
	// A failed statement is rolled back as a whole while the transaction stays open, so the
	// rows are sent again one at a time, in order, to name the change the target refuses.
	var one []byte
	for _, r := range rows {
		one = append(append(one[:0], prefix...), o.stmt[r.start:r.end]...)
		one = append(o.shape.onePlan(o.kind, one, len(prefix), len(one)), suffix...)
		if rerr := o.s.exec(ctx, string(one)); rerr != nil {
			return changeError(r.change, o.shape, rerr)
		}
	}
	return changeError(rows[0].change, o.shape, err)
}

// truncate empties tables with DELETE: TRUNCATE TABLE commits the open transaction
// implicitly, which would make the rows before it durable without their checkpoint.
func (x *targetTxn) truncate(ctx context.Context, c *cdc.Change) error {
	if err := x.t.out[0].flush(ctx); err != nil {
		return err
	}
	for _, rel := range c.Truncated {
		s, err := x.t.shapeOf(rel)
		if err != nil {
			return refuse(c, nil, err)
		}
		if err := x.t.exec(ctx, "DELETE FROM "+s.table); err != nil {
			return changeError(c, s, err)
		}
	}
	return nil
}

const markSQL = "INSERT INTO `" + StateDB + "`.`snapshot` (`migration`, `db`, `tbl`, `cursor`, `rows`, `done`) VALUES (%s, %s, %s, %s, %d, %t)" +
	" ON DUPLICATE KEY UPDATE `cursor` = VALUES(`cursor`), `rows` = VALUES(`rows`), `done` = VALUES(`done`)"

// mark records a table's snapshot progress in the transaction that holds the rows it covers
// (on the lanes, those rows commit before it).
func (x *targetTxn) mark(ctx context.Context, c *cdc.Change) error {
	if c.Mark == nil {
		return refuse(c, nil, errors.New("a snapshot mark without its progress"))
	}
	s, err := x.t.shapeOf(c.Relation)
	if err != nil {
		return refuse(c, nil, err)
	}
	if err := x.t.out[0].flush(ctx); err != nil {
		return err
	}
	cursor := "NULL"
	if c.Mark.Cursor != nil {
		cursor = quoteLiteral(encodeCursor(c.Mark.Cursor))
	}
	id := c.Relation.Table
	q := fmt.Sprintf(markSQL, quoteLiteral(x.t.migration), quoteLiteral(id.Schema), quoteLiteral(id.Name), cursor, c.Mark.Rows, c.Mark.Done)
	if err := x.t.exec(ctx, q); err != nil {
		return changeError(c, s, fmt.Errorf("record snapshot progress: %w", err))
	}
	return nil
}

const progressSQL = "INSERT INTO `" + StateDB + "`.`progress` (`migration`, `stream`, `position`, `commit_time`, `updated_at`)" +
	" VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE `position` = VALUES(`position`)," +
	" `commit_time` = coalesce(VALUES(`commit_time`), `commit_time`), `updated_at` = VALUES(`updated_at`)"

// Commit writes the checkpoint in the transaction that holds the data up to it, and commits.
// A zero commitTime keeps the stored one; a nil pos writes no checkpoint (a snapshot chunk).
//
// The lanes have committed their rows by then (see sendFolded): the checkpoint never names a
// row that is not durable.
func (x *targetTxn) Commit(ctx context.Context, pos cdc.Position, commitTime time.Time) error {
	if x.done {
		return errors.New("commit of a finished target transaction")
	}
	if x.failed != nil {
		return x.failed
	}
	if err := x.flushLoad(ctx); err != nil {
		return err
	}
	if err := x.sendFolded(ctx); err != nil {
		return err
	}
	if err := x.t.out[0].flush(ctx); err != nil {
		return err
	}
	if pos != nil {
		at := "NULL"
		if !commitTime.IsZero() {
			at = "'" + commitTime.UTC().Format(timeLayout) + "'"
		}
		q := fmt.Sprintf(progressSQL, quoteLiteral(x.t.migration), quoteLiteral(x.t.stream), quoteLiteral(pos.String()), at)
		if err := x.t.exec(ctx, q); err != nil {
			return classify(fmt.Errorf("write checkpoint %s: %w", pos, err))
		}
	}
	if err := x.t.exec(ctx, "COMMIT"); err != nil {
		return classify(fmt.Errorf("commit %s: %w", apply.CommitWhat(pos), err))
	}
	x.t.out[0].began = false
	x.done = true
	return nil
}

// Rollback rolls the open transactions back, best effort: a broken connection has lost its
// transaction already.
func (x *targetTxn) Rollback(ctx context.Context) {
	if x.done {
		return
	}
	x.done = true
	x.load.reset()
	for _, o := range x.t.out {
		o.abort(ctx)
	}
}

// refuse builds the error for a change that cannot be written at all.
func refuse(c *cdc.Change, s *shape, err error) error {
	return &apply.ChangeError{Table: tableName(c, s), Op: c.Op.String(), Key: keyOf(c, s), SQLState: "none", Err: err}
}

// changeError names the change behind a statement the target refused. A transient failure or
// an interruption is returned as it is: it is no fault of the change.
func changeError(c *cdc.Change, s *shape, err error) error {
	err = classify(err)
	if apply.IsTransient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	state := "none"
	var myErr *mysql.MyError
	if errors.As(err, &myErr) {
		state = myErr.State
	}
	return &apply.ChangeError{Table: tableName(c, s), Op: c.Op.String(), Key: keyOf(c, s), SQLState: state, Err: err}
}

// tableName names the target table of a change, or the source table when it has none.
func tableName(c *cdc.Change, s *shape) string {
	if s != nil {
		return s.name
	}
	if c.Relation != nil {
		return c.Relation.Table.String()
	}
	var names []string
	for _, r := range c.Truncated {
		names = append(names, r.Table.String())
	}
	return strings.Join(names, ", ")
}

// shape is what writing a relation's rows needs: the target table, each column's literal
// class, the key columns and the fixed SQL around the rows.
type shape struct {
	rel   *cdc.Relation
	table string // quoted target table
	name  string // db.table, for errors
	cols  []string
	class []literalClass
	key   []int

	upsertPrefix, upsertSuffix, deletePrefix, deleteSuffix string
	load                                                   string // see loadSQL
}

// shapeOf returns the shape of a relation, built once per table and again only when the
// relation's columns change.
func (t *Target) shapeOf(rel *cdc.Relation) (*shape, error) {
	if rel == nil {
		return nil, errors.New("a change without its relation")
	}
	if rel.Table.Schema == StateDB {
		return nil, fmt.Errorf("%w (%s)", ErrStateTable, rel.Table)
	}
	s := t.shapes[rel.Table]
	if s != nil && s.rel == rel {
		return s, nil
	}
	if s != nil && sameColumns(s.rel, rel) {
		s.rel = rel
		return s, nil
	}
	tbl := t.tables[rel.Table]
	if tbl == nil {
		return nil, fmt.Errorf("%s is not one of the migrated tables", rel.Table)
	}
	s, err := newShape(t.db, tbl, rel)
	if err != nil {
		return nil, err
	}
	t.shapes[rel.Table] = s
	return s, nil
}

func newShape(db string, tbl *schema.Table, rel *cdc.Relation) (*shape, error) {
	s := &shape{rel: rel, table: QuoteTable(db, tbl.ID.Name), name: db + "." + tbl.ID.Name, key: rel.KeyColumns()}
	if len(s.key) == 0 {
		return nil, fmt.Errorf("%s has no key columns; give the source table a primary key or a unique key on NOT NULL columns", tbl.ID)
	}
	byName := make(map[string]*schema.Column, len(tbl.Columns))
	for i := range tbl.Columns {
		byName[tbl.Columns[i].Name] = &tbl.Columns[i]
	}
	var cols, set strings.Builder
	catalog := make([]*schema.Column, 0, len(rel.Columns))
	for i, rc := range rel.Columns {
		col := byName[rc.Name]
		if col == nil {
			return nil, fmt.Errorf("column %s of %s is not in the catalog read at start; restart migrated to read it again", Quote(rc.Name), tbl.ID)
		}
		if col.Generated {
			return nil, fmt.Errorf("column %s of %s is generated: the target computes it, it is never written", Quote(rc.Name), tbl.ID)
		}
		s.cols = append(s.cols, rc.Name)
		s.class = append(s.class, literalClassOf(col))
		catalog = append(catalog, col)
		q := Quote(rc.Name)
		if i > 0 {
			cols.WriteString(", ")
		}
		cols.WriteString(q)
		// A key column is not set: a row whose key changed in any byte (even only in case,
		// equal under the collation) is deleted by its old key first (see keyMoved).
		if !rc.Key {
			if set.Len() > 0 {
				set.WriteString(", ")
			}
			set.WriteString(q + " = VALUES(" + q + ")")
		}
	}
	if set.Len() == 0 {
		q := Quote(s.cols[s.key[0]])
		set.WriteString(q + " = " + q) // only key columns: nothing to update
	}
	// VALUES(col) in ON DUPLICATE KEY UPDATE works on MariaDB and on MySQL 8, which deprecates
	// it (with a warning) in favour of a row alias that MariaDB lacks.
	s.upsertPrefix = "INSERT INTO " + s.table + " (" + cols.String() + ") VALUES "
	s.upsertSuffix = " ON DUPLICATE KEY UPDATE " + set.String()
	if len(s.key) == 1 {
		s.deletePrefix = "DELETE FROM " + s.table + " WHERE " + Quote(s.cols[s.key[0]]) + " IN ("
	} else {
		names := make([]string, len(s.key))
		for n, i := range s.key {
			names[n] = Quote(s.cols[i])
		}
		s.deletePrefix = "DELETE FROM " + s.table + " WHERE (" + strings.Join(names, ", ") + ") IN ("
	}
	s.deleteSuffix = ")"
	s.load = loadSQL(s.table, s.cols, catalog, s.class)
	return s, nil
}

func sameColumns(a, b *cdc.Relation) bool {
	if len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i].Name != b.Columns[i].Name || a.Columns[i].Key != b.Columns[i].Key {
			return false
		}
	}
	return true
}

// onePlan makes a one-row statement use the key: MariaDB 10.11 plans a row-constructor IN
// with a single tuple, (k1, k2) IN ((x, y)), as a scan of the whole table, and with two tuples
// by the primary key. A composite-key DELETE of one row names its tuple twice. stmt[start:end]
// is the row's tuple.
func (s *shape) onePlan(kind stmtKind, stmt []byte, start, end int) []byte {
	if kind != stmtDelete || len(s.key) < 2 {
		return stmt
	}
	return append(append(stmt, ','), stmt[start:end]...)
}

func (s *shape) sql(kind stmtKind) (prefix, suffix string) {
	if kind == stmtDelete {
		return s.deletePrefix, s.deleteSuffix
	}
	return s.upsertPrefix, s.upsertSuffix
}

// appendRow renders a row: every column for an upsert, the key for a delete.
func (s *shape) appendRow(b []byte, kind stmtKind, row []cdc.Value) ([]byte, error) {
	var err error
	if kind == stmtDelete {
		if len(s.key) > 1 {
			b = append(b, '(')
		}
		for n, i := range s.key {
			if n > 0 {
				b = append(b, ", "...)
			}
			if b, err = appendLiteral(b, s.class[i], row[i]); err != nil {
				return b, fmt.Errorf("column %s: %w", Quote(s.cols[i]), err)
			}
		}
		if len(s.key) > 1 {
			b = append(b, ')')
		}
		return b, nil
	}
	b = append(b, '(')
	for i := range row {
		if i > 0 {
			b = append(b, ", "...)
		}
		if b, err = appendLiteral(b, s.class[i], row[i]); err != nil {
			return b, fmt.Errorf("column %s: %w", Quote(s.cols[i]), err)
		}
	}
	return append(b, ')'), nil
}

// keyMoved returns the old row image when an update moved the row to a new key, else nil.
func keyMoved(s *shape, c *cdc.Change) []cdc.Value {
	if c.Old == nil || len(c.Old) != len(s.cols) || len(c.New) != len(s.cols) {
		return c.Old
	}
	for _, i := range s.key {
		o, n := c.Old[i], c.New[i]
		if o.Kind != n.Kind || string(o.Data) != string(n.Data) {
			return c.Old
		}
	}
	return nil
}

// keyOf renders the key of a changed row for an operator: key columns only, never whole rows.
// A value that is not UTF-8 text is shown in hex.
func keyOf(c *cdc.Change, s *shape) string {
	switch {
	case c.Op == cdc.OpTruncate:
		return "truncate"
	case c.Op == cdc.OpMark:
		return "snapshot mark"
	case c.Relation == nil:
		return ""
	}
	row := c.New
	if c.Old != nil {
		row = c.Old
	}
	var parts []string
	for _, i := range c.Relation.KeyColumns() {
		if i >= len(row) {
			break
		}
		v := "NULL"
		switch row[i].Kind {
		case cdc.ValueText:
			v = clipKey(row[i].Data)
		case cdc.ValueUnchanged:
			v = "(unchanged)"
		}
		parts = append(parts, c.Relation.Columns[i].Name+"="+v)
	}
	return strings.Join(parts, ", ")
}

func clipKey(b []byte) string {
	if !utf8.Valid(b) {
		if len(b) > 32 {
			return "0x" + hex.EncodeToString(b[:32]) + "…"
		}
		return "0x" + hex.EncodeToString(b)
	}
	v := string(b)
	if len(v) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut] + "…"
	}
	return v
}

// classify marks the failures worth a retry from the last checkpoint as transient: the
// network, a server going away, a deadlock, a lock wait timeout. A read-only target is not one
// of them: it stays read-only until someone acts.
func classify(err error) error {
	if err == nil || apply.IsTransient(err) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var myErr *mysql.MyError
	if !errors.As(err, &myErr) {
		// Below SQL (a reset connection, an EOF, a timeout) it is the network.
		return &apply.TransientError{Err: err}
	}
	switch myErr.Code {
	case 1040, // ER_CON_COUNT_ERROR: too many connections
		1053,                   // ER_SERVER_SHUTDOWN
		1152,                   // ER_ABORTING_CONNECTION
		1158, 1159, 1160, 1161, // network read and write errors and timeouts
		1205, // ER_LOCK_WAIT_TIMEOUT
		1213, // ER_LOCK_DEADLOCK
		1317, // ER_QUERY_INTERRUPTED: KILL QUERY
		1927, // ER_CONNECTION_KILLED (MariaDB)
		2006, // CR_SERVER_GONE_ERROR, as relayed by a proxy
		2013, // CR_SERVER_LOST, as relayed by a proxy
		4031: // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8.0.24+)
		return &apply.TransientError{Err: err}
	case 1290, 1836: // ER_OPTION_PREVENTS_STATEMENT (--read-only), ER_READ_ONLY_MODE
		return fmt.Errorf("%w; the target server is read-only: point migrated at the primary, or SET GLOBAL read_only = OFF there", err)
	}
	return err
}

// timeLayout is how DATETIME(6) values are written and read.
const timeLayout = "2006-01-02 15:04:05.000000"

// stateSQL creates migrated's state on a MySQL target. The tables are InnoDB, whatever the
// server's default engine, because the checkpoint must commit atomically with the data.
var stateSQL = []string{
	"CREATE DATABASE IF NOT EXISTS `" + StateDB + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
	"CREATE TABLE IF NOT EXISTS `" + StateDB + "`.`progress` (\n" +
		"  `migration` varchar(255) NOT NULL,\n" +
		"  `stream` varchar(64) NOT NULL,\n" +
		"  `position` text NOT NULL,\n" +
		"  `commit_time` datetime(6) NULL,\n" +
		"  `updated_at` datetime(6) NOT NULL,\n" +
		"  PRIMARY KEY (`migration`, `stream`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
	"CREATE TABLE IF NOT EXISTS `" + StateDB + "`.`snapshot` (\n" +
		"  `migration` varchar(255) NOT NULL,\n" +
		"  `db` varchar(64) NOT NULL,\n" +
		"  `tbl` varchar(64) NOT NULL,\n" +
		"  `cursor` text NULL,\n" +
		"  `rows` bigint NOT NULL DEFAULT 0,\n" +
		"  `done` bool NOT NULL DEFAULT FALSE,\n" +
		"  PRIMARY KEY (`migration`, `db`, `tbl`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
}

// EnsureState creates database `_migrated` and its tables if missing:
// progress(migration, stream, position, commit_time, updated_at), the checkpoint of each
// stream; and snapshot(migration, db, tbl, cursor, rows, done), the copy progress of each
// source table, where cursor is the last copied key as a JSON array (NULL before the first
// chunk). DDL commits implicitly: never call it inside a transaction.
func EnsureState(c *client.Conn) error {
	for _, q := range stateSQL {
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("create migrated's state in %s on the target: %w; the target user needs CREATE on %s", Quote(StateDB), err, Quote(StateDB))
		}
	}
	return nil
}

// ReadPosition returns the checkpointed position of a stream and the source commit time of
// the last transaction applied (zero when none was recorded). ok is false when nothing is
// checkpointed yet, including when the state tables do not exist.
func ReadPosition(c *client.Conn, migration, stream string) (pos string, commitTime time.Time, ok bool, err error) {
	rows, err := QueryStrings(c, "SELECT `position`, DATE_FORMAT(`commit_time`, '%Y-%m-%d %H:%i:%s.%f') FROM `"+StateDB+"`.`progress` WHERE `migration` = ? AND `stream` = ?", migration, stream)
	if noState(err) || (err == nil && len(rows) == 0) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("read the %s stream position: %w", stream, err)
	}
	pos = *rows[0][0]
	if rows[0][1] != nil {
		if commitTime, err = time.ParseInLocation(timeLayout, *rows[0][1], time.UTC); err != nil {
			return "", time.Time{}, false, fmt.Errorf("read the %s stream position: commit time %q: %w", stream, *rows[0][1], err)
		}
	}
	return pos, commitTime, true, nil
}

// ReadMarks returns the snapshot progress of every table of the migration, keyed by the source
// table. A table never marked is absent.
func ReadMarks(c *client.Conn, migration string) (map[cdc.TableID]cdc.SnapshotMark, error) {
	rows, err := QueryStrings(c, "SELECT `db`, `tbl`, `cursor`, `rows`, `done` FROM `"+StateDB+"`.`snapshot` WHERE `migration` = ?", migration)
	if noState(err) {
		return map[cdc.TableID]cdc.SnapshotMark{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot progress: %w", err)
	}
	marks := make(map[cdc.TableID]cdc.SnapshotMark, len(rows))
	for _, r := range rows {
		id := cdc.TableID{Schema: *r[0], Name: *r[1]}
		var m cdc.SnapshotMark
		if r[2] != nil {
			if m.Cursor, err = decodeCursor(*r[2]); err != nil {
				return nil, fmt.Errorf("read snapshot progress of %s: %w", id, err)
			}
		}
		if m.Rows, err = strconv.ParseInt(*r[3], 10, 64); err != nil {
			return nil, fmt.Errorf("read snapshot progress of %s: rows %q: %w", id, *r[3], err)
		}
		m.Done = *r[4] != "0"
		marks[id] = m
	}
	return marks, nil
}

// noState reports whether err says the state tables do not exist yet.
func noState(err error) bool {
	var myErr *mysql.MyError
	return errors.As(err, &myErr) && (myErr.Code == 1146 || myErr.Code == 1049) // no such table, no such database
}

// encodeCursor writes a key as a JSON array with one element per key column: a string, or
// {"hex": "..."} for a value that is not UTF-8 (such as a BINARY(16) key), which a JSON string
// cannot carry byte for byte.
func encodeCursor(key []string) string {
	b := []byte{'['}
	for i, k := range key {
		if i > 0 {
			b = append(b, ',')
		}
		if utf8.ValidString(k) {
			s, _ := json.Marshal(k) // a string always marshals
			b = append(b, s...)
			continue
		}
		b = append(b, `{"hex":"`...)
		b = hex.AppendEncode(b, []byte(k))
		b = append(b, `"}`...)
	}
	return string(append(b, ']'))
}

func decodeCursor(s string) ([]string, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal([]byte(s), &elems); err != nil {
		return nil, fmt.Errorf("cursor %q is not a JSON array: %w", s, err)
	}
	key := make([]string, len(elems))
	for i, e := range elems {
		if len(e) > 0 && e[0] == '{' {
			var h struct{ Hex string }
			if err := json.Unmarshal(e, &h); err != nil {
				return nil, fmt.Errorf("cursor %q: %w", s, err)
			}
			b, err := hex.DecodeString(h.Hex)
			if err != nil {
				return nil, fmt.Errorf("cursor %q: %w", s, err)
			}
			key[i] = string(b)
			continue
		}
		if err := json.Unmarshal(e, &key[i]); err != nil {
			return nil, fmt.Errorf("cursor %q: %w", s, err)
		}
	}
	return key, nil
}

package mysql

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"go.uber.org/zap"
)

// WatermarkTable is the table on the source whose rows the stream passes through for the
// snapshot coordinator, with the fixed Relation WatermarkRelation returns.
const WatermarkTable = "watermark"

// WatermarkRelation is the Relation of the watermark table's changes: `id` BIGINT (the key)
// and `mark` VARCHAR(255).
func WatermarkRelation() *cdc.Relation { return Relation(watermarkTable()) }

func watermarkTable() *schema.Table {
	return &schema.Table{
		ID: cdc.TableID{Schema: StateDB, Name: WatermarkTable},
		Columns: []schema.Column{
			{Name: "id", DataType: "bigint", NotNull: true},
			{Name: "mark", DataType: "varchar", Length: 255},
		},
		Key: []string{"id"},
	}
}

// StreamOptions configures a Stream.
type StreamOptions struct {
	Addr Addr
	// ServerID is the replica id the stream registers with; it must differ from the source's
	// and from every other replica's. The caller picks it.
	ServerID uint32
	// Tables are the migrated tables; rows are decoded by their columns.
	Tables []*schema.Table
	// Resume is where the stream starts: after every transaction in this GTID set.
	Resume Position
	// Heartbeat is the source's heartbeat period on an idle binlog, and the most often a
	// transaction that touches no migrated table is reported. Default 1s.
	Heartbeat time.Duration
	// OnChange, when set, is called for each row change decoded, before apply sees it.
	OnChange func()
	// WritesTo names where the stream's changes are applied, for messages: "the target" unless
	// set.
	WritesTo string
	Log      *zap.Logger
}

// Stream reads a MySQL or MariaDB binlog from a GTID position, as a replica does, and emits
// the changes of the migrated tables and of the watermark table as cdc events.
//
// Each transaction that changes a migrated table becomes EventBegin, its EventChanges and
// EventCommit, whose Position includes the transaction. A transaction that changes none
// becomes at most an EventHeartbeat with its position (one per Heartbeat period, since the
// next commit or heartbeat carries its position too), and so does an idle source.
type Stream struct {
	opts StreamOptions
	log  *zap.Logger
}

// NewStream returns a stream that resumes at opts.Resume.
func NewStream(opts StreamOptions) *Stream {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = time.Second
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	return &Stream{opts: opts, log: opts.Log.Named("binlog")}
}

// Run connects, streams from the resume position and sends events to out until ctx ends, when
// it returns ctx.Err(), or until an error. It does not reconnect: the caller restarts it from
// its checkpoint. Problems a restart would meet again (a row that does not fit its table, DDL
// on a migrated table, a statement-based change, a position the source no longer has) are
// returned as *cdc.DecodeError; anything else, such as a broken connection, is transient.
func (s *Stream) Run(ctx context.Context, out chan<- cdc.Event) error {
	if s.opts.ServerID == 0 {
		return errors.New("binlog stream: a replica server id is required")
	}
	for _, t := range s.opts.Tables {
		if err := unsupportedType(t); err != nil {
			return err
		}
	}
	c, err := Connect(ctx, s.opts.Addr)
	if err != nil {
		return err
	}
	version, _, err := QueryString(c, "SELECT VERSION()")
	c.Close()
	if err != nil {
		return fmt.Errorf("read the source version: %w", err)
	}
	flavor := Flavor(version)
	if s.opts.Resume.Flavor != "" && s.opts.Resume.Flavor != flavor {
		return &cdc.DecodeError{Err: fmt.Errorf("the stream position %q is a %s position but the source is %s (%s)", s.opts.Resume.GTID, s.opts.Resume.Flavor, flavor, version)}
	}
	set, err := parseGTIDSet(flavor, s.opts.Resume.GTID)
	if err != nil {
		return &cdc.DecodeError{Err: err}
	}

	syncer := replication.NewBinlogSyncer(s.syncerConfig(flavor))
	defer syncer.Close()
	streamer, err := syncer.StartSyncGTID(set.Clone())
	if err != nil {
		return s.streamError(err, set)
	}
	s.log.Info("binlog stream started", zap.String("flavor", flavor), zap.String("position", set.String()))
	d := newBinlogDecoder(s, out, flavor, set)
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return s.streamError(err, d.set)
		}
		if err := d.handle(ctx, ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

func (s *Stream) syncerConfig(flavor string) replication.BinlogSyncerConfig {
	a := s.opts.Addr
	cfg := replication.BinlogSyncerConfig{
		ServerID:                s.opts.ServerID,
		Flavor:                  flavor,
		Host:                    a.Host,
		Port:                    a.Port,
		User:                    a.User,
		Password:                a.Password,
		Localhost:               "migrated",
		TimestampStringLocation: time.UTC,
		RenderJSONAsMySQLText:   true,
		HeartbeatPeriod:         s.opts.Heartbeat,
		// A dead connection shows as missing heartbeats.
		ReadTimeout:          max(10*s.opts.Heartbeat, 10*time.Second),
		DisableRetrySync:     true,
		MaxReconnectAttempts: 1,
		// Row events are at most a few kilobytes each: this bounds the read-ahead.
		EventCacheCount: 1024,
		Logger:          slog.New(zapHandler{log: s.log.Named("go-mysql")}),
	}
	if a.TLS {
		cfg.TLSConfig = &tls.Config{ServerName: a.Host, InsecureSkipVerify: a.SkipVerify}
	}
	return cfg
}

// streamError sorts an error of the replication connection into transient and permanent.
func (s *Stream) streamError(err error, at fmt.Stringer) error {
	err = redact(err, s.opts.Addr.Password)
	var evErr *replication.EventError
	if errors.As(err, &evErr) {
		return &cdc.DecodeError{Err: fmt.Errorf("decode a binlog event at %s: %w", at, err)}
	}
	var myErr *mysql.MyError
	if errors.As(err, &myErr) && myErr.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG {
		return &cdc.DecodeError{Err: fmt.Errorf("the source cannot stream from position %q: %s: "+
			"if its binlogs were purged past the position, the migration must start again with a new snapshot", at, myErr.Message)}
	}
	return fmt.Errorf("binlog stream from %s: %w", s.opts.Addr.HostPort(), err)
}

// catalogUnchanged reports whether the source's catalog still has t as the stream was given
// it: same columns, same key. It is what lets a restart pass DDL that was already applied to
// the target.
func (s *Stream) catalogUnchanged(ctx context.Context, t *schema.Table) (bool, error) {
	c, err := Connect(ctx, s.opts.Addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	tables, err := Tables(c, t.ID.Schema, func(_, name string) bool { return name == t.ID.Name })
	if err != nil {
		return false, err
	}
	for _, cur := range tables {
		if cur.ID == t.ID {
			return reflect.DeepEqual(cur.Columns, t.Columns) && slices.Equal(cur.Key, t.Key), nil
		}
	}
	return false, nil
}

// binlogTxn is the transaction the decoder is inside, from its GTID event to its commit.
type binlogTxn struct {
	open bool
	// standalone is a transaction of one statement with no COMMIT of its own (DDL).
	standalone bool
	// begun is set once EventBegin went out: the transaction changed a migrated table.
	begun bool
	time  time.Time
	// The transaction's GTID: MariaDB's, or MySQL's SID[:tag]:GNO.
	mariadb mysql.MariadbGTID
	sid     uuid.UUID
	tag     mysql.Tag
	gno     int64
}

// binlogDecoder follows transactions through the binlog events and tracks the GTID set.
type binlogDecoder struct {
	s      *Stream
	out    chan<- cdc.Event
	flavor string
	// set holds every committed transaction seen, starting from the resume position.
	set mysql.GTIDSet
	// tables finds a table by its binlog names; byLower finds it by a statement's, which
	// may be written in another case.
	tables    map[string]map[string]*tableDecoder
	byLower   map[cdc.TableID]*tableDecoder
	watermark *tableDecoder
	txn       binlogTxn
	// lastSent is when the last Commit or Heartbeat went out, to rate-limit the heartbeats
	// of skipped transactions.
	lastSent time.Time
	// file and offset are the binlog coordinates past the last event read.
	file   string
	offset uint32
}

func newBinlogDecoder(s *Stream, out chan<- cdc.Event, flavor string, set mysql.GTIDSet) *binlogDecoder {
	d := &binlogDecoder{
		s: s, out: out, flavor: flavor, set: set,
		tables:    map[string]map[string]*tableDecoder{},
		byLower:   map[cdc.TableID]*tableDecoder{},
		watermark: newTableDecoder(watermarkTable()),
	}
	for _, t := range s.opts.Tables {
		td := newTableDecoder(t)
		if d.tables[t.ID.Schema] == nil {
			d.tables[t.ID.Schema] = map[string]*tableDecoder{}
		}
		d.tables[t.ID.Schema][t.ID.Name] = td
		d.byLower[lowerID(t.ID)] = td
	}
	return d
}

func lowerID(t cdc.TableID) cdc.TableID {
	return cdc.TableID{Schema: strings.ToLower(t.Schema), Name: strings.ToLower(t.Name)}
}

// lookup returns the decoder of a migrated table or of the watermark table, nil for others.
func (d *binlogDecoder) lookup(db, table []byte) *tableDecoder {
	if td := d.tables[string(db)][string(table)]; td != nil {
		return td
	}
	if string(db) == StateDB && string(table) == WatermarkTable {
		return d.watermark
	}
	return nil
}

func (d *binlogDecoder) handle(ctx context.Context, ev *replication.BinlogEvent) error {
	if ev.Header != nil && ev.Header.LogPos > 0 {
		d.offset = ev.Header.LogPos
	}
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		d.file = string(e.NextLogName)
	case *replication.MariadbGTIDEvent:
		if err := d.unfinished(); err != nil {
			return err
		}
		d.txn = binlogTxn{open: true, standalone: e.IsStandalone(), time: headerTime(ev.Header), mariadb: e.GTID}
	case *replication.GTIDEvent:
		return d.mysqlGTID(e, mysql.Tag{}, ev.Header)
	case *replication.GtidTaggedLogEvent:
		return d.mysqlGTID(&e.GTIDEvent, e.Tag, ev.Header)
	case *replication.RowsEvent:
		return d.rows(ctx, e)
	case *replication.XIDEvent:
		return d.commit(ctx, d.commitTime(ev.Header))
	case *replication.QueryEvent:
		return d.query(ctx, e, ev.Header)
	case *replication.HeartbeatEvent:
		if !d.txn.begun {
			return d.heartbeat(ctx, time.Now())
		}
	case *replication.TransactionPayloadEvent: // binlog_transaction_compression
		for _, inner := range e.Events {
			if err := d.handle(ctx, inner); err != nil {
				return err
			}
		}
	}
	return nil
}

// unfinished refuses a new transaction while changes of the last one went out without a
// commit: an XA transaction, whose commit comes later as a transaction of its own.
func (d *binlogDecoder) unfinished() error {
	if d.txn.begun {
		return &cdc.DecodeError{Err: fmt.Errorf("a transaction changing migrated tables after %s did not commit in the binlog: XA transactions are not supported", d.set)}
	}
	return nil
}

func (d *binlogDecoder) mysqlGTID(e *replication.GTIDEvent, tag mysql.Tag, h *replication.EventHeader) error {
	if err := d.unfinished(); err != nil {
		return err
	}
	if e.GNO == 0 {
		return &cdc.DecodeError{Err: errors.New("the source logs anonymous transactions: set gtid_mode=ON and enforce_gtid_consistency=ON on the source, then start the migration again")}
	}
	sid, err := uuid.FromBytes(e.SID)
	if err != nil {
		return &cdc.DecodeError{Err: fmt.Errorf("decode a GTID event: %w", err)}
	}
	t := e.ImmediateCommitTime()
	if t.IsZero() {
		t = headerTime(h)
	}
	// A transaction starts with a BEGIN query; without one the next statement stands alone.
	d.txn = binlogTxn{open: true, standalone: true, time: t, sid: sid, tag: tag, gno: e.GNO}
	return nil
}

func headerTime(h *replication.EventHeader) time.Time { return time.Unix(int64(h.Timestamp), 0).UTC() }

// commitTime is the time of the event that commits the transaction; MySQL records the
// commit itself, to the microsecond, in the GTID event.
func (d *binlogDecoder) commitTime(h *replication.EventHeader) time.Time {
	if d.flavor == mysql.MySQLFlavor && !d.txn.time.IsZero() {
		return d.txn.time
	}
	return headerTime(h)
}

func (d *binlogDecoder) send(ctx context.Context, ev cdc.Event) error {
	select {
	case d.out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *binlogDecoder) position() Position {
	return Position{Flavor: d.flavor, GTID: d.set.String(), File: d.file, Offset: d.offset}
}

func (d *binlogDecoder) heartbeat(ctx context.Context, at time.Time) error {
	d.lastSent = time.Now()
	return d.send(ctx, cdc.Event{Kind: cdc.EventHeartbeat, Position: d.position(), CommitTime: at})
}

// change sends one change of the current transaction, opening it first if needed.
func (d *binlogDecoder) change(ctx context.Context, c *cdc.Change) error {
	if !d.txn.begun {
		if !d.txn.open { // rows outside a GTID-tagged group: should not happen, keep them whole
			d.txn = binlogTxn{open: true, time: time.Now()}
		}
		d.txn.begun = true
		if err := d.send(ctx, cdc.Event{Kind: cdc.EventBegin, CommitTime: d.txn.time}); err != nil {
			return err
		}
	}
	if d.s.opts.OnChange != nil {
		d.s.opts.OnChange()
	}
	return d.send(ctx, cdc.Event{Kind: cdc.EventChange, Change: c})
}

// commit adds the transaction to the GTID set and reports the new position.
func (d *binlogDecoder) commit(ctx context.Context, at time.Time) error {
	if !d.txn.open {
		return nil
	}
	t := d.txn
	d.txn = binlogTxn{}
	switch set := d.set.(type) {
	case *mysql.MariadbGTIDSet:
		if err := set.AddSet(&t.mariadb); err != nil {
			return &cdc.DecodeError{Err: fmt.Errorf("track gtid %s: %w", t.mariadb.String(), err)}
		}
	case *mysql.MysqlGTIDSet:
		if t.gno != 0 {
			set.AddGTIDWithTag(t.sid, t.tag, t.gno)
		}
	}
	if t.begun {
		d.lastSent = time.Now()
		return d.send(ctx, cdc.Event{Kind: cdc.EventCommit, Position: d.position(), CommitTime: at})
	}
	if time.Since(d.lastSent) >= d.s.opts.Heartbeat {
		return d.heartbeat(ctx, at)
	}
	return nil
}

func (d *binlogDecoder) rows(ctx context.Context, e *replication.RowsEvent) error {
	td := d.lookup(e.Table.Schema, e.Table.Table)
	if td == nil {
		return nil
	}
	if err := td.check(e.Table); err != nil {
		return err
	}
	op := e.Type()
	step := 1
	if op == replication.EnumRowsEventTypeUpdate {
		step = 2
	}
	for i := 0; i+step <= len(e.Rows); i += step {
		first, err := td.decode(e.Rows[i], e.SkippedColumns[i])
		if err != nil {
			return err
		}
		c := &cdc.Change{Relation: td.rel}
		switch op {
		case replication.EnumRowsEventTypeInsert:
			c.Op, c.New = cdc.OpInsert, first
		case replication.EnumRowsEventTypeDelete:
			c.Op, c.Old = cdc.OpDelete, first
		case replication.EnumRowsEventTypeUpdate:
			after, err := td.decode(e.Rows[i+1], e.SkippedColumns[i+1])
			if err != nil {
				return err
			}
			c.Op, c.New = cdc.OpUpdate, after
			if td.keyChanged(first, after) {
				c.Old = first
			}
		default:
			return &cdc.DecodeError{Err: fmt.Errorf("table %s: unknown rows event", td.table.ID)}
		}
		if err := d.change(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// maxStatement is how much of a statement an error quotes.
const maxStatement = 200

func quoteStatement(q []byte) string {
	s := strings.Join(strings.Fields(string(q)), " ")
	if len(s) > maxStatement {
		n := maxStatement
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "..."
	}
	return s
}

func (d *binlogDecoder) query(ctx context.Context, e *replication.QueryEvent, h *replication.EventHeader) error {
	st := readQuery(e.Query, string(e.Schema))
	switch st.kind {
	case queryBegin:
		d.txn.standalone = false
		return nil
	case queryCommit:
		return d.commit(ctx, d.commitTime(h))
	case queryDML:
		for _, t := range st.tables {
			if td := d.byLower[lowerID(t)]; td != nil || strings.EqualFold(t.Schema, StateDB) && strings.EqualFold(t.Name, WatermarkTable) {
				return &cdc.DecodeError{Err: fmt.Errorf("the source logged a statement instead of rows for a change naming migrated table %s: %s; "+
					"the change cannot be replayed: set binlog_format=ROW on the source (globally and in the session that ran it), then re-copy the table",
					t, quoteStatement(e.Query))}
			}
		}
	case queryTruncate:
		if td := d.byLower[lowerID(st.tables[0])]; td != nil {
			if err := d.change(ctx, &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{td.rel}}); err != nil {
				return err
			}
		}
	case queryDDL:
		var hit []*tableDecoder
		for _, t := range st.tables {
			if td := d.byLower[lowerID(t)]; td != nil {
				hit = append(hit, td)
			}
		}
		for _, db := range st.dbs {
			for id, td := range d.byLower {
				if id.Schema == strings.ToLower(db) {
					hit = append(hit, td)
				}
			}
		}
		for _, td := range hit {
			if err := d.ddl(ctx, td, e.Query); err != nil {
				return err
			}
		}
	}
	if d.txn.standalone {
		return d.commit(ctx, d.commitTime(h))
	}
	return nil
}

// ddl decides about DDL on a migrated table: it stops the stream, before the DDL, unless the
// source's catalog already shows the table as the stream was given it. That is the case
// after the operator applied the change to the target and restarted migrated, which read the
// new catalog; and for DDL that changes neither columns nor key, such as CREATE INDEX.
func (d *binlogDecoder) ddl(ctx context.Context, td *tableDecoder, query []byte) error {
	same, err := d.s.catalogUnchanged(ctx, td.table)
	if err != nil {
		return fmt.Errorf("read the catalog of %s after DDL: %w", td.table.ID, err)
	}
	if same {
		d.s.log.Info("passing ddl on a migrated table: its columns and key are as the stream expects",
			zap.Stringer("table", td.table.ID), zap.String("statement", quoteStatement(query)))
		return nil
	}
	at := d.set.String()
	if at == "" {
		at = "the start of the binlog"
	}
	to := d.s.opts.WritesTo
	if to == "" {
		to = "the target"
	}
	return &cdc.DecodeError{Err: fmt.Errorf("DDL on migrated table %s: %s; the stream is paused at %s: apply the same change to %s, then restart migrated",
		td.table.ID, quoteStatement(query), at, to)}
}

// zapHandler sends go-mysql's log records to zap at debug level: go-mysql logs the errors it
// also returns, and its other lines only help when debugging.
type zapHandler struct {
	log    *zap.Logger
	fields []zap.Field
}

func (h zapHandler) Enabled(context.Context, slog.Level) bool {
	return h.log.Core().Enabled(zap.DebugLevel)
}

func (h zapHandler) Handle(_ context.Context, r slog.Record) error {
	fields := slices.Clone(h.fields)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, attrField(a))
		return true
	})
	h.log.Debug(strings.ToLower(r.Message), fields...)
	return nil
}

func (h zapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := slices.Clone(h.fields)
	for _, a := range attrs {
		fields = append(fields, attrField(a))
	}
	return zapHandler{log: h.log, fields: fields}
}

func (h zapHandler) WithGroup(string) slog.Handler { return h }

// attrField converts a go-mysql log attribute. Its syncer configuration is left out: it holds
// the connection settings, and must never carry the password into a log.
func attrField(a slog.Attr) zap.Field {
	if _, ok := a.Value.Any().(replication.BinlogSyncerConfig); ok {
		return zap.Skip()
	}
	return zap.String(a.Key, a.Value.String())
}

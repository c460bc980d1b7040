package daemon

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/mysql"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/snapshot"
	"go.uber.org/zap"
)

// reconSource is the source of a migration whose snapshot is reconciled with the stream by
// watermarks: MySQL into anything, or PostgreSQL into MySQL.
type reconSource interface {
	// check runs the source's preflight and reads the tables that migrate.
	check(ctx context.Context) ([]schema.Problem, []*schema.Table, error)
	// prepare readies the source for a new migration (watermark table, or publication and
	// slot) and returns the stream's start position, taken before any row is copied.
	prepare(ctx context.Context) (string, error)
	openSnapshot(ctx context.Context) (snapshot.Source, error)
	// stream opens the change stream from resume.
	stream(ctx context.Context, resume string) (sourceStream, error)
	// watermarkTable is the table the stream carries watermarks as.
	watermarkTable() cdc.TableID
	// release gives back what the migration holds on the source, once it is over.
	release(ctx context.Context) error
	// uniqueTables lists the tables with a unique key besides the row key on the source: the
	// target has it too once post-data has run.
	uniqueTables(ctx context.Context) ([]cdc.TableID, error)
	// tableList is the tables the stream reads, as the source names them.
	tableList() []*schema.Table
}

// sourceStream is one connection's worth of change stream.
type sourceStream interface {
	run(ctx context.Context, out chan<- cdc.Event) error
	// durable tells the source a position is durable on the target.
	durable(pos cdc.Position)
	// beat writes a heartbeat and returns the source's current position.
	beat(ctx context.Context) (string, error)
	// lagBytes is how far, in bytes of the source's log, the source is past the durable
	// position; ok is false when it is not known. Called after beat, on the same goroutine.
	lagBytes(ctx context.Context) (n int64, ok bool)
	// behind reports whether a source position that beat returned is older than a position
	// applied since.
	behind(seen string, applied cdc.Position) bool
	close()
}

// mysqlSource is a MySQL or MariaDB source: the migration's source, or the target read back by
// the reverse stream.
type mysqlSource struct {
	d    *Daemon
	addr mysql.Addr
	// direction is the stream's, forward unless set.
	direction string
	// tables, when set, are the tables read (the target's, for the reverse stream); the
	// migration's tables otherwise.
	tables []*schema.Table
}

func (s *mysqlSource) tableList() []*schema.Table {
	if s.tables != nil {
		return s.tables
	}
	return s.d.tables
}

func (s *mysqlSource) streamDirection() string {
	if s.direction == "" {
		return forward
	}
	return s.direction
}

func (s *mysqlSource) watermarkTable() cdc.TableID {
	return cdc.TableID{Schema: mysql.StateDB, Name: mysql.WatermarkTable}
}

func (s *mysqlSource) check(ctx context.Context) ([]schema.Problem, []*schema.Table, error) {
	src, err := mysql.Connect(ctx, s.addr)
	if err != nil {
		return []schema.Problem{{Check: "source", Message: fmt.Sprintf("cannot connect to the source %s: %v; check source.dsn, the network and the user's grants", s.d.cfg.Source.Redacted(), err)}}, nil, nil
	}
	defer src.Close()
	tables, err := mysql.Tables(src, s.addr.DB, s.d.cfg.Tables.Match)
	if err != nil {
		return nil, nil, err
	}
	probs, err := mysql.CheckSource(src, tables, snapshotEstimate(tables))
	return probs, tables, err
}

func (s *mysqlSource) prepare(ctx context.Context) (string, error) {
	src, err := mysql.Connect(ctx, s.addr)
	if err != nil {
		return "", err
	}
	defer src.Close()
	if err := mysql.EnsureWatermarkTable(src); err != nil {
		return "", err
	}
	start, err := mysql.CurrentPosition(src)
	if err != nil {
		return "", err
	}
	return start.String(), nil
}

// release removes this migration's leftover watermark rows; the table stays for other
// migrations.
func (s *mysqlSource) release(ctx context.Context) error {
	src, err := mysql.Connect(ctx, s.addr)
	if err != nil {
		return err
	}
	defer src.Close()
	return mysql.DropWatermarks(src, s.d.cfg.Name)
}

func (s *mysqlSource) uniqueTables(ctx context.Context) ([]cdc.TableID, error) {
	src, err := mysql.Connect(ctx, s.addr)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	indexes, err := mysql.Indexes(src, s.addr.DB)
	if err != nil {
		return nil, err
	}
	return withUnique(s.d.tables, indexes), nil
}

// withUnique lists the tables with a unique index that is not their key.
func withUnique(tables []*schema.Table, indexes map[cdc.TableID][]schema.Index) []cdc.TableID {
	keys := uniqueKeys(tables, indexes)
	var out []cdc.TableID
	for _, t := range tables {
		if len(keys[t.ID]) > 0 {
			out = append(out, t.ID)
		}
	}
	return out
}

// uniqueKeys names, per table, its unique indexes that are not its key.
func uniqueKeys(tables []*schema.Table, indexes map[cdc.TableID][]schema.Index) map[cdc.TableID][]string {
	out := map[cdc.TableID][]string{}
	for _, t := range tables {
		for _, ix := range indexes[t.ID] {
			if ix.Unique && !slices.Equal(ix.Columns, t.Key) {
				out[t.ID] = append(out[t.ID], ix.Name)
			}
		}
	}
	return out
}

func (s *mysqlSource) openSnapshot(ctx context.Context) (snapshot.Source, error) {
	return mysql.NewSnapshotSource(ctx, s.addr, s.d.tables)
}

func (s *mysqlSource) stream(ctx context.Context, resume string) (sourceStream, error) {
	src, err := mysql.Connect(ctx, s.addr)
	if err != nil {
		return nil, err
	}
	flavor := mysql.Flavor(src.GetServerVersion())
	pos, err := mysql.ParsePosition(flavor, resume)
	if err != nil {
		src.Close()
		return nil, err
	}
	hb, err := mysql.NewSnapshotSource(ctx, s.addr, s.tableList())
	if err != nil {
		src.Close()
		return nil, err
	}
	d := s.d
	dir := s.streamDirection()
	id := d.serverID()
	if dir == reverse {
		id ^= 1 // another server, but never the same replica id for the two streams
	}
	st := mysql.NewStream(mysql.StreamOptions{
		Addr: s.addr, ServerID: id, Tables: s.tableList(), Resume: pos,
		Heartbeat: d.cfg.Stream.HeartbeatInterval.Duration(),
		OnChange:  d.m.ChangesReceived.WithLabelValues(dir).Inc,
		WritesTo:  "the " + sideOf(dir),
		Log:       d.log.Named("stream").With(zap.String("direction", dir)),
	})
	d.log.Info("streaming", zap.String("direction", dir), zap.String("from", pos.String()), zap.String("flavor", flavor))
	return &mysqlStream{s: st, src: src, hb: hb, name: d.cfg.Name}, nil
}

type mysqlStream struct {
	s    *mysql.Stream
	src  *client.Conn
	hb   *mysql.SnapshotSource
	name string

	mu      sync.Mutex
	applied mysql.Position // the last durable position with its binlog coordinates
}

func (m *mysqlStream) run(ctx context.Context, out chan<- cdc.Event) error { return m.s.Run(ctx, out) }
func (m *mysqlStream) close()                                              { m.hb.Close(); m.src.Close() }

func (m *mysqlStream) durable(pos cdc.Position) {
	if p, ok := snapshot.Unwrap(pos).(mysql.Position); ok && p.File != "" {
		m.mu.Lock()
		m.applied = p
		m.mu.Unlock()
	}
}

func (m *mysqlStream) lagBytes(context.Context) (int64, bool) {
	m.mu.Lock()
	at := m.applied
	m.mu.Unlock()
	n, ok, err := mysql.BinlogDistance(m.src, at)
	return n, ok && err == nil
}

func (m *mysqlStream) behind(seen string, applied cdc.Position) bool {
	p, ok := snapshot.Unwrap(applied).(mysql.Position)
	return ok && mysql.Behind(p.Flavor, seen, p.GTID)
}

// beat writes a heartbeat row: it keeps lag true on an idle source.
func (m *mysqlStream) beat(ctx context.Context) (string, error) {
	if err := m.hb.Watermark(ctx, "heartbeat|"+m.name+"|"+time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return "", err
	}
	pos, err := mysql.CurrentPosition(m.src)
	if err != nil {
		return "", err
	}
	return pos.String(), nil
}

// pgSource is a PostgreSQL source migrating into MySQL, or the PostgreSQL target of a MySQL
// source read back by the reverse stream.
type pgSource struct {
	d   *Daemon
	dsn string
	// slot, pub, direction and tables, when set, are the reverse stream's; the migration's
	// otherwise.
	slot, pub string
	direction string
	tables    []*schema.Table
}

func (s *pgSource) watermarkTable() cdc.TableID { return postgres.WatermarkRelation.Table }

func (s *pgSource) tableList() []*schema.Table {
	if s.tables != nil {
		return s.tables
	}
	return s.d.tables
}

func (s *pgSource) slotName() string {
	if s.slot != "" {
		return s.slot
	}
	return s.d.slotName()
}

func (s *pgSource) pubName() string {
	if s.pub != "" {
		return s.pub
	}
	return s.d.pubName()
}

func (s *pgSource) streamDirection() string {
	if s.direction == "" {
		return forward
	}
	return s.direction
}

func (s *pgSource) check(ctx context.Context) ([]schema.Problem, []*schema.Table, error) {
	src, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return []schema.Problem{{Check: "source", Message: fmt.Sprintf("cannot connect to the source %s: %v; check source.dsn, the network and pg_hba.conf", s.d.cfg.Source.Redacted(), redactErr(err, s.dsn))}}, nil, nil
	}
	defer src.Close(ctx)
	tables, err := postgres.Tables(ctx, src, s.d.cfg.Tables.Match)
	if err != nil {
		return nil, nil, err
	}
	// A partitioned table is migrated as one table, its root: read by key across its
	// partitions, streamed under its name (publish_via_partition_root), and one table on MySQL.
	var roots []*schema.Table
	rows, size := map[cdc.TableID]int64{}, map[cdc.TableID]int64{}
	for _, t := range tables {
		if t.IsRoot() {
			roots = append(roots, t)
		} else if t.IsLeaf() {
			rows[t.Root] += t.EstimatedRows
			size[t.Root] += t.Bytes
		}
	}
	for _, t := range roots {
		if t.Partitioned {
			t.EstimatedRows, t.Bytes = rows[t.ID], size[t.ID]
		}
	}
	probs, err := postgres.CheckSource(ctx, src, tables, s.d.slotName())
	if err != nil {
		return nil, nil, err
	}
	whole, err := postgres.WholeRowProblems(ctx, src, tables)
	if err != nil {
		return nil, nil, err
	}
	probs = append(probs, whole...)
	return probs, roots, nil
}

func (s *pgSource) prepare(ctx context.Context) (string, error) {
	src, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return "", fmt.Errorf("connect to source: %w", redactErr(err, s.dsn))
	}
	defer src.Close(context.WithoutCancel(ctx))
	d := s.d
	if err := postgres.EnsurePublication(ctx, src, d.pubName(), d.tables); err != nil {
		return "", err
	}
	if exists, err := postgres.SlotExists(ctx, src, d.slotName()); err != nil {
		return "", err
	} else if exists {
		d.log.Info("dropping slot left by an unfinished start", zap.String("slot", d.slotName()))
		if err := postgres.DropSlot(ctx, src, d.slotName()); err != nil {
			return "", err
		}
	}
	lsn, err := postgres.CreateStreamSlot(ctx, s.dsn, d.slotName())
	if err != nil {
		return "", err
	}
	return lsn.String(), nil
}

// release drops the slot and the publication.
func (s *pgSource) release(ctx context.Context) error {
	src, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("connect to source: %w", redactErr(err, s.dsn))
	}
	defer src.Close(context.WithoutCancel(ctx))
	if err := postgres.DropSlot(ctx, src, s.d.slotName()); err != nil {
		return err
	}
	return postgres.DropPublication(ctx, src, s.d.pubName())
}

func (s *pgSource) uniqueTables(ctx context.Context) ([]cdc.TableID, error) {
	src, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", redactErr(err, s.dsn))
	}
	defer src.Close(context.WithoutCancel(ctx))
	indexes, _, err := postgres.Indexes(ctx, src, s.d.tables)
	if err != nil {
		return nil, err
	}
	return withUnique(s.tableList(), indexes), nil
}

func (s *pgSource) openSnapshot(ctx context.Context) (snapshot.Source, error) {
	src, err := postgres.NewReconSource(ctx, s.dsn, s.d.tables)
	if err != nil {
		return nil, redactErr(err, s.dsn)
	}
	return src, nil
}

func (s *pgSource) stream(ctx context.Context, resume string) (sourceStream, error) {
	d := s.d
	lsn, err := postgres.ParseLSN(resume)
	if err != nil {
		return nil, err
	}
	src, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", redactErr(err, s.dsn))
	}
	// The stream's values are compared with the snapshot's by their text (the keys of a chunk)
	// and converted for MySQL: print them as the snapshot sessions do.
	textDSN, err := postgres.TextDSN(s.dsn)
	if err != nil {
		src.Close(ctx)
		return nil, err
	}
	dir := s.streamDirection()
	st := postgres.NewStream(postgres.StreamOptions{
		DSN: textDSN, Slot: s.slotName(), Publication: s.pubName(), Keys: postgres.KeyMap(s.tableList()),
		Resume: lsn, StatusInterval: d.cfg.Stream.StatusInterval.Duration(),
		OnChange: d.m.ChangesReceived.WithLabelValues(dir).Inc,
	})
	d.log.Info("streaming", zap.String("direction", dir), zap.Stringer("from", lsn))
	return &pgStream{s: st, src: src, slot: s.slotName(), m: d}, nil
}

type pgStream struct {
	s    *postgres.Stream
	src  *pgx.Conn
	slot string
	m    *Daemon

	mu            sync.Mutex
	applied, head postgres.LSN // durable on the target; the source's WAL end at the last beat
}

func (p *pgStream) lagBytes(context.Context) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.applied == 0 || p.head == 0 {
		return 0, false
	}
	return max(0, int64(p.head)-int64(p.applied)), true
}

func (p *pgStream) run(ctx context.Context, out chan<- cdc.Event) error { return p.s.Run(ctx, out) }
func (p *pgStream) close()                                              { p.src.Close(context.Background()) }

// durable confirms a position to the slot, so the source can recycle its WAL.
func (p *pgStream) durable(pos cdc.Position) {
	if lsn, ok := snapshot.Unwrap(pos).(postgres.LSN); ok {
		p.s.Flushed(lsn)
		p.mu.Lock()
		p.applied = lsn
		p.mu.Unlock()
	}
}

func (p *pgStream) behind(seen string, applied cdc.Position) bool {
	lsn, ok := snapshot.Unwrap(applied).(postgres.LSN)
	if !ok {
		return false
	}
	s, err := postgres.ParseLSN(seen)
	return seen == "" || (err == nil && s < lsn)
}

func (p *pgStream) beat(ctx context.Context) (string, error) {
	st, err := postgres.Heartbeat(ctx, p.src, p.slot)
	if err != nil {
		return "", err
	}
	p.m.m.SourceSlotRetainedBytes.Set(float64(st.RetainedBytes))
	p.mu.Lock()
	p.head = st.CurrentLSN
	p.mu.Unlock()
	return st.CurrentLSN.String(), nil
}

// snapshotEstimate is a cautious guess of how long the copy of tables takes, for the binlog
// retention check: 20 MB/s of table data, and never under ten minutes.
func snapshotEstimate(tables []*schema.Table) time.Duration {
	var bytes int64
	for _, t := range tables {
		bytes += t.Bytes
	}
	return max(10*time.Minute, time.Duration(bytes/(20<<20))*time.Second)
}

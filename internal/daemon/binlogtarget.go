package daemon

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/mysql"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/state"
	"github.com/migrated/migrated/internal/verify"
	"go.uber.org/zap"
)

// binlogSink is the target of a migration from MySQL: where its schema, its state and its
// changes go. Each engine keeps the state beside the data, in the same transactions.
type binlogSink interface {
	open(ctx context.Context) error
	close()
	// check runs the target's preflight; fresh is false when the migration already exists.
	check(ctx context.Context, tables []*schema.Table) ([]schema.Problem, error)
	load(ctx context.Context) (*mysql.Migration, bool, error)
	// create builds the target schema from the source's and records the migration, with its
	// stream starting at start.
	create(ctx context.Context, src reconSource, tables []*schema.Table, start string) (*mysql.Migration, error)
	setPhase(ctx context.Context, phase, failedIn, reason string) error
	position(ctx context.Context) (pos string, commitTime time.Time, ok bool, err error)
	marks(ctx context.Context) (map[cdc.TableID]cdc.SnapshotMark, error)
	// post runs the post-data statements not yet done, recording each.
	post(ctx context.Context, mig *mysql.Migration) error
	// writer opens a writer of changes; a MySQL target spreads batches over lanes sessions.
	writer(ctx context.Context, src reconSource, tables []*schema.Table, lanes int) (apply.Writer, func(), error)
	// setPosition records where the sink's stream starts, outside any applied transaction.
	setPosition(ctx context.Context, pos string) error
	// dropPosition removes the sink's checkpoint, when its stream is over for good.
	dropPosition(ctx context.Context) error
	// saveVerify and loadVerify keep the newest verify result beside the state.
	saveVerify(ctx context.Context, r verify.Result) error
	loadVerify(ctx context.Context) (verify.Result, bool, error)
	// isOpen tells whether open has run, and close not since.
	isOpen() bool
	// extraUnique lists the unique keys besides the row key that the target holds on tables,
	// keyed by source table.
	extraUnique(ctx context.Context, tables []*schema.Table) (map[cdc.TableID][]string, error)
}

// mysqlSink is a MySQL or MariaDB target: the migration's target, or the old source the
// reverse stream writes into.
type mysqlSink struct {
	d    *Daemon
	addr mysql.Addr
	// stream names the checkpoint the sink keeps: forward unless set.
	stream string
	mu     sync.Mutex
	conn   *client.Conn
}

func (s *mysqlSink) streamName() string {
	if s.stream == "" {
		return forward
	}
	return s.stream
}

// state runs fn on the state session, one caller at a time: a go-mysql connection is not safe
// for concurrent use.
//
// The session lives as long as the daemon and sits idle for hours while streaming: one that the
// server or the network closed is opened again before use.
func (s *mysqlSink) state(fn func(c *client.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return errors.New("no session on the " + s.side())
	}
	if err := s.conn.Ping(); err != nil {
		c, cerr := mysql.Connect(context.Background(), s.addr)
		if cerr != nil {
			return fmt.Errorf("the state session on the %s was lost (%v) and cannot be opened again: %w", s.side(), err, cerr)
		}
		s.conn.Close()
		s.conn = c
	}
	return fn(s.conn)
}

func (s *mysqlSink) side() string { return sideOf(s.streamName()) }

// sideOf names, for messages, the server a stream of direction dir writes to.
func sideOf(dir string) string {
	if dir == reverse {
		return "old source"
	}
	return "target"
}

func (s *mysqlSink) open(ctx context.Context) error {
	c, err := mysql.Connect(ctx, s.addr)
	if err != nil {
		return err
	}
	if err := mysql.EnsureState(c); err != nil {
		c.Close()
		return err
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	return nil
}

func (s *mysqlSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *mysqlSink) isOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

func (s *mysqlSink) extraUnique(_ context.Context, tables []*schema.Table) (map[cdc.TableID][]string, error) {
	var indexes map[cdc.TableID][]schema.Index
	if err := s.state(func(c *client.Conn) (err error) {
		indexes, err = mysql.Indexes(c, s.addr.DB)
		return err
	}); err != nil {
		return nil, err
	}
	// The target holds each table under its name, in the target database.
	mine := map[cdc.TableID][]schema.Index{}
	for _, t := range tables {
		mine[t.ID] = indexes[cdc.TableID{Schema: s.addr.DB, Name: t.ID.Name}]
	}
	return uniqueKeys(tables, mine), nil
}

func (s *mysqlSink) dropPosition(ctx context.Context) error {
	return withMy(ctx, s.addr, func(c *client.Conn) error { return mysql.DropPosition(c, s.d.cfg.Name, s.streamName()) })
}

func (s *mysqlSink) check(ctx context.Context, tables []*schema.Table) ([]schema.Problem, error) {
	c, err := mysql.Connect(ctx, s.addr)
	if err != nil {
		return []schema.Problem{{Check: "target", Message: fmt.Sprintf("cannot connect to the target %s: %v; check target.dsn, the network and the user's grants", s.d.cfg.Target.Redacted(), err)}}, nil
	}
	defer c.Close()
	_, exists, err := mysql.LoadMigration(c, s.d.cfg.Name)
	if err != nil {
		return nil, err
	}
	var probs []schema.Problem
	if s.d.cfg.Source.Engine != "mysql" {
		probs = s.typeMapWith(c).Problems(tables)
	}
	tprobs, err := mysql.CheckTarget(c, s.addr.DB, tables, !exists)
	return append(probs, tprobs...), err
}

func (s *mysqlSink) load(ctx context.Context) (m *mysql.Migration, ok bool, err error) {
	err = s.state(func(c *client.Conn) error {
		m, ok, err = mysql.LoadMigration(c, s.d.cfg.Name)
		return err
	})
	return m, ok, err
}

func (s *mysqlSink) create(ctx context.Context, source reconSource, tables []*schema.Table, start string) (*mysql.Migration, error) {
	var post []string
	err := s.state(func(c *client.Conn) (err error) {
		switch src := source.(type) {
		case *mysqlSource:
			// Same engine: the source's own DDL, secondary keys after the copy.
			sc, err := mysql.Connect(ctx, src.addr)
			if err != nil {
				return err
			}
			defer sc.Close()
			if post, err = mysql.CreateTables(sc, src.addr.DB, c, s.addr.DB, tables); err != nil {
				return err
			}
		case *pgSource:
			if post, err = s.foreignTables(ctx, c, src, tables); err != nil {
				return err
			}
		}
		return mysql.CreateMigration(c, s.d.cfg.Name, forward, start, post)
	})
	if err != nil {
		return nil, err
	}
	return &mysql.Migration{Phase: "snapshotting", PostData: post}, nil
}

func (s *mysqlSink) setPhase(ctx context.Context, phase, failedIn, reason string) error {
	return s.state(func(c *client.Conn) error { return mysql.SetPhase(c, s.d.cfg.Name, phase, failedIn, reason) })
}

func (s *mysqlSink) position(ctx context.Context) (pos string, at time.Time, ok bool, err error) {
	err = s.state(func(c *client.Conn) error {
		pos, at, ok, err = mysql.ReadPosition(c, s.d.cfg.Name, s.streamName())
		return err
	})
	return pos, at, ok, err
}

func (s *mysqlSink) marks(ctx context.Context) (m map[cdc.TableID]cdc.SnapshotMark, err error) {
	err = s.state(func(c *client.Conn) error {
		m, err = mysql.ReadMarks(c, s.d.cfg.Name)
		return err
	})
	return m, err
}

// post runs the secondary keys and foreign keys left out of the target tables: each table's
// keys in order, several tables at once (see postSteps), then the foreign keys, which need
// them, one after another. MySQL DDL commits on its own, so a statement that ran before a crash
// but was not recorded fails with a duplicate name when run again: that counts as done. The
// record is the number of statements done from the first on (see prefix), so a restart may run
// again some that finished out of order, and they count as done the same way.
func (s *mysqlSink) post(ctx context.Context, mig *mysql.Migration) error {
	steps := mig.PostData[mig.PostDone:]
	var groups [][]int
	var serial []int
	group := map[string]int{}
	for i, q := range steps {
		if len(serial) > 0 || mysql.AddsForeignKey(q) {
			serial = append(serial, i)
			continue
		}
		table := mysql.AlteredTable(q)
		g, ok := group[table]
		if !ok {
			g = len(groups)
			group[table] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	done := newPrefix(len(steps))
	open := func(ctx context.Context) (func(ctx context.Context, i int) error, func(), error) {
		c, err := mysql.Connect(ctx, s.addr)
		if err != nil {
			return nil, nil, err
		}
		if _, err := c.Execute("SET SESSION foreign_key_checks = 0"); err != nil {
			c.Close()
			return nil, nil, err
		}
		// The client takes no context: a cancelled post-data closes the session under its
		// statement, and the server stops the build.
		stop := context.AfterFunc(ctx, func() { c.Close() })
		run := func(ctx context.Context, i int) error {
			if err := s.postStatement(ctx, c, steps[i]); err != nil {
				return err
			}
			if n, ok := done.finish(i); ok {
				return s.state(func(c *client.Conn) error { return mysql.SetPostDone(c, s.d.cfg.Name, mig.PostDone+n) })
			}
			return nil
		}
		return run, func() { stop(); c.Close() }, nil
	}
	return postSteps(ctx, groups, serial, s.d.cfg.Snapshot.Workers, open)
}

// prefix counts the steps done from the first on, when steps finish in any order.
type prefix struct {
	mu   sync.Mutex
	done []bool
	n    int
}

func newPrefix(steps int) *prefix { return &prefix{done: make([]bool, steps)} }

// finish marks step i done and returns the count of steps done from the first on, and whether
// it grew.
func (p *prefix) finish(i int) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done[i] = true
	was := p.n
	for p.n < len(p.done) && p.done[p.n] {
		p.n++
	}
	return p.n, p.n > was
}

// postStatement runs one post-data statement on c.
func (s *mysqlSink) postStatement(ctx context.Context, c *client.Conn, q string) error {
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_, err := c.Execute(q)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var myErr *gomysql.MyError
		isMy := errors.As(err, &myErr)
		// 1061 duplicate key name, 1826 duplicate foreign key name (1005 with errno 121 with
		// foreign key checks on): ran before a crash.
		if isMy && (myErr.Code == 1061 || myErr.Code == 1826 || (myErr.Code == 1005 && strings.Contains(myErr.Message, "errno: 121"))) {
			return nil
		}
		// The stream applies beside the DDL: a lock wait or a deadlock with it passes.
		if isMy && (myErr.Code == gomysql.ER_LOCK_WAIT_TIMEOUT || myErr.Code == gomysql.ER_LOCK_DEADLOCK) && attempt < 5 {
			s.d.log.Warn("post-data statement waited on the stream's locks; trying again", zap.String("statement", firstWords(q)), zap.Int("attempt", attempt), zap.Error(err))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
			continue
		}
		return fmt.Errorf("post-data on the target: %s: %w", firstWords(q), err)
	}
}

func (s *mysqlSink) writer(ctx context.Context, source reconSource, tables []*schema.Table, lanes int) (apply.Writer, func(), error) {
	unique, err := source.uniqueTables(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := source.(*pgSource); ok {
		return s.foreignWriter(ctx, tables, unique, lanes)
	}
	t, err := s.target(ctx, tables, unique, lanes)
	if err != nil {
		return nil, nil, err
	}
	return t, t.Close, nil
}

// target opens a MySQL writer of the tables, which folds none of unique, on lanes sessions.
func (s *mysqlSink) target(ctx context.Context, tables []*schema.Table, unique []cdc.TableID, lanes int) (*mysql.Target, error) {
	t, err := mysql.NewTarget(ctx, s.addr, s.d.cfg.Name, s.streamName(), tables)
	if err != nil {
		return nil, err
	}
	t.Unfold(unique...)
	if err := t.Spread(ctx, s.addr, lanes); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (s *mysqlSink) setPosition(ctx context.Context, pos string) error {
	// On a session of its own: the reverse sink's state session opens only when it streams.
	return withMy(ctx, s.addr, func(c *client.Conn) error { return mysql.SetPosition(c, s.d.cfg.Name, s.streamName(), pos) })
}

func (s *mysqlSink) saveVerify(_ context.Context, r verify.Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.state(func(c *client.Conn) error { return mysql.SaveVerify(c, s.d.cfg.Name, string(b)) })
}

func (s *mysqlSink) loadVerify(context.Context) (r verify.Result, ok bool, err error) {
	var text string
	if err = s.state(func(c *client.Conn) (err error) {
		text, ok, err = mysql.LoadVerify(c, s.d.cfg.Name)
		return err
	}); err != nil || !ok {
		return r, false, err
	}
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return r, false, fmt.Errorf("read the verify record on the target: %w", err)
	}
	return r, true, nil
}

func (s *mysqlSink) typeMap() schema.TypeMap {
	var tm schema.TypeMap
	_ = s.state(func(c *client.Conn) error {
		tm = s.typeMapWith(c)
		return nil
	})
	return tm
}

// foreignTables creates PostgreSQL tables in the MySQL database through the type map and
// returns the indexes to build after the copy.
func (s *mysqlSink) foreignTables(ctx context.Context, c *client.Conn, src *pgSource, tables []*schema.Table) ([]string, error) {
	conn, err := pgx.Connect(ctx, src.dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to source: %w", redactErr(err, src.dsn))
	}
	defer conn.Close(ctx)
	indexes, skippedIx, err := postgres.Indexes(ctx, conn, tables)
	if err != nil {
		return nil, err
	}
	pre, post, skipped, err := mysql.ForeignTables(s.addr.DB, tables, indexes, s.typeMapWith(c))
	if err != nil {
		return nil, err
	}
	for _, sk := range append(skippedIx, skipped...) {
		s.d.log.Warn("not carried to MySQL; create it by hand if you need it", zap.String("what", sk))
	}
	for _, q := range pre {
		if _, err := c.Execute(q); err != nil {
			return nil, fmt.Errorf("create the schema on the target: %s: %w", firstWords(q), err)
		}
	}
	return post, nil
}

func (s *mysqlSink) typeMapWith(c *client.Conn) schema.TypeMap {
	flavor := schema.FlavorMariaDB
	if mysql.Flavor(c.GetServerVersion()) == gomysql.MySQLFlavor {
		flavor = schema.FlavorMySQL
	}
	return schema.TypeMap{Dir: schema.DirPostgresToMySQL, Flavor: flavor, Overrides: s.d.cfg.Tables.Types}
}

// foreignWriter writes PostgreSQL rows into MySQL: values are converted to the MySQL form of
// each column, and rendered by the MySQL table's own columns.
func (s *mysqlSink) foreignWriter(ctx context.Context, tables []*schema.Table, unique []cdc.TableID, lanes int) (apply.Writer, func(), error) {
	var mine []*schema.Table
	if err := s.state(func(c *client.Conn) (err error) {
		mine, err = mysql.Tables(c, s.addr.DB, nil)
		return err
	}); err != nil {
		return nil, nil, err
	}
	byName := map[string]*schema.Table{}
	for _, t := range mine {
		byName[t.ID.Name] = t
	}
	tm := s.typeMap()
	conv := map[cdc.TableID]rowFunc{}
	var view []*schema.Table
	for _, t := range tables {
		mt := byName[t.ID.Name]
		if mt == nil {
			return nil, nil, fmt.Errorf("table %s is missing from the target database %s; it was dropped there: cancel the migration and start again", t.ID.Name, s.addr.DB)
		}
		ctm := tm
		if s.streamName() == reverse {
			// Back into the tables the migration came from: each value is converted for the
			// column's own MySQL type, not for the type map's choice.
			ctm = schema.TypeMap{Dir: tm.Dir, Flavor: tm.Flavor, Overrides: map[string]string{}}
			for _, mc := range mt.Columns {
				ctm.Overrides[schema.OverrideKey(t, mc.Name)] = mc.Type
			}
		}
		c, err := mysql.NewPGConverter(t, ctm)
		if err != nil {
			return nil, nil, err
		}
		conv[t.ID] = c.Row
		// The MySQL table's columns, under the source's name that changes carry.
		v := *mt
		v.ID = t.ID
		view = append(view, &v)
	}
	w, err := s.target(ctx, view, unique, lanes)
	if err != nil {
		return nil, nil, err
	}
	return &mapWriter{w: w, rows: conv, all: true}, w.Close, nil
}

// pgSink is a PostgreSQL target: the schema is generated through the type map, the state is
// the same _migrated schema a PostgreSQL source uses. With stream reverse it is the PostgreSQL
// source of a MySQL target, which the reverse stream writes back into: its tables are the
// migration's own, and only the checkpoint is kept.
type pgSink struct {
	d   *Daemon
	dsn string
	// stream names the checkpoint the sink keeps: forward unless set.
	stream string
	pool   *pgxpool.Pool
	store  *state.Store
}

func (s *pgSink) streamName() string {
	if s.stream == "" {
		return forward
	}
	return s.stream
}

// withStore runs fn on the sink's state store, or on one opened for the call when the sink is
// not open: the reverse sink opens only when its stream runs.
func (s *pgSink) withStore(ctx context.Context, fn func(st *state.Store) error) error {
	if s.store != nil {
		return fn(s.store)
	}
	pool, err := pgxpool.New(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("connect to the %s: %w", s.side(), redactErr(err, s.dsn))
	}
	defer pool.Close()
	st, err := state.Open(ctx, pool, s.d.cfg.Name)
	if err != nil {
		return err
	}
	return fn(st)
}

func (s *pgSink) side() string { return sideOf(s.streamName()) }

func (s *pgSink) open(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("connect to the %s: %w", s.side(), redactErr(err, s.dsn))
	}
	store, err := state.Open(ctx, pool, s.d.cfg.Name)
	if err != nil {
		pool.Close()
		return err
	}
	s.pool, s.store = pool, store
	return nil
}

func (s *pgSink) close() {
	if s.pool != nil {
		s.pool.Close()
		s.pool, s.store = nil, nil
	}
}

func (s *pgSink) isOpen() bool { return s.store != nil }

// crossVerifySQL keeps the newest verify result of a migration from MySQL on a PostgreSQL
// target, as JSON.
const crossVerifySQL = `CREATE TABLE IF NOT EXISTS _migrated.cross_verify (migration text PRIMARY KEY, result jsonb NOT NULL)`

func (s *pgSink) setPosition(ctx context.Context, pos string) error {
	return s.withStore(ctx, func(st *state.Store) error { return st.SetPosition(ctx, s.streamName(), pos) })
}

func (s *pgSink) extraUnique(ctx context.Context, tables []*schema.Table) (map[cdc.TableID][]string, error) {
	keys, err := postgres.ExtraUniqueKeys(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	out := map[cdc.TableID][]string{}
	for _, t := range tables {
		if k := keys[t.ID]; len(k) > 0 {
			out[t.ID] = k
		}
	}
	return out, nil
}

func (s *pgSink) dropPosition(ctx context.Context) error {
	return s.withStore(ctx, func(st *state.Store) error { return st.DropPosition(ctx, s.streamName()) })
}

func (s *pgSink) saveVerify(ctx context.Context, r verify.Result) error {
	if _, err := s.pool.Exec(ctx, crossVerifySQL); err != nil {
		return fmt.Errorf("create the verify record on the target: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO _migrated.cross_verify VALUES ($1, $2) ON CONFLICT (migration) DO UPDATE SET result = EXCLUDED.result`, s.d.cfg.Name, r); err != nil {
		return fmt.Errorf("record the verify result on the target: %w", err)
	}
	return nil
}

func (s *pgSink) loadVerify(ctx context.Context) (r verify.Result, ok bool, err error) {
	if _, err := s.pool.Exec(ctx, crossVerifySQL); err != nil {
		return r, false, fmt.Errorf("create the verify record on the target: %w", err)
	}
	err = s.pool.QueryRow(ctx, `SELECT result FROM _migrated.cross_verify WHERE migration = $1`, s.d.cfg.Name).Scan(&r)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	return r, err == nil, err
}

func (s *pgSink) typeMap() schema.TypeMap {
	return schema.TypeMap{Dir: schema.DirMySQLToPostgres, Overrides: s.d.cfg.Tables.Types}
}

func (s *pgSink) check(ctx context.Context, tables []*schema.Table) ([]schema.Problem, error) {
	probs := s.typeMap().Problems(tables)
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return append(probs, schema.Problem{Check: "target", Message: fmt.Sprintf("cannot connect to the target %s: %v; check target.dsn, the network and pg_hba.conf", s.d.cfg.Target.Redacted(), redactErr(err, s.dsn))}), nil
	}
	defer conn.Close(ctx)
	fresh, err := s.d.freshTarget(ctx, conn)
	if err != nil {
		return nil, err
	}
	tprobs, err := postgres.CheckTarget(ctx, conn, tables, fresh)
	if err != nil {
		return nil, err
	}
	return append(probs, tprobs...), nil
}

func (s *pgSink) load(ctx context.Context) (*mysql.Migration, bool, error) {
	m, err := s.store.Load(ctx)
	if errors.Is(err, state.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := &mysql.Migration{Phase: string(m.Phase), FailedIn: string(m.FailedIn), Error: m.Error}
	if err := json.Unmarshal([]byte(m.PostData), &out.PostData); err != nil {
		return nil, false, fmt.Errorf("read the migration state on the target: post-data: %w", err)
	}
	done, err := s.store.StepsDone(ctx)
	if err != nil {
		return nil, false, err
	}
	for out.PostDone < len(out.PostData) && done[postStep(out.PostDone)] {
		out.PostDone++
	}
	return out, true, nil
}

func postStep(i int) string { return fmt.Sprintf("post-data/%04d", i) }

func (s *pgSink) create(ctx context.Context, source reconSource, tables []*schema.Table, start string) (*mysql.Migration, error) {
	src, ok := source.(*mysqlSource)
	if !ok {
		return nil, errors.New("a PostgreSQL source into PostgreSQL does not reconcile its snapshot")
	}
	sc, err := mysql.Connect(ctx, src.addr)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	indexes, err := mysql.Indexes(sc, src.addr.DB)
	if err != nil {
		return nil, err
	}
	pre, post, skipped, err := postgres.ForeignSchema(tables, indexes, s.typeMap())
	if err != nil {
		return nil, err
	}
	for _, sk := range skipped {
		s.d.log.Warn("not carried to PostgreSQL; create it by hand if you need it", zap.String("what", sk))
	}
	postJSON, err := json.Marshal(append([]string{}, post...))
	if err != nil {
		return nil, err
	}
	var progress []state.TableProgress
	for _, t := range tables {
		progress = append(progress, state.TableProgress{Schema: t.ID.Schema, Name: t.ID.Name, RowsEstimate: t.EstimatedRows})
	}
	err = s.store.Create(ctx, start, string(postJSON), progress, func(tx pgx.Tx) error {
		for _, q := range pre {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("create the schema on the target: %s: %w", firstWords(q), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &mysql.Migration{Phase: "snapshotting", PostData: post}, nil
}

func (s *pgSink) setPhase(ctx context.Context, phase, failedIn, reason string) error {
	if phase == "failed" {
		return s.store.SetFailed(ctx, state.Phase(failedIn), reason)
	}
	return s.store.SetPhase(ctx, state.Phase(phase), reason)
}

func (s *pgSink) position(ctx context.Context) (string, time.Time, bool, error) {
	pos, at, err := s.store.Position(ctx, s.streamName())
	if errors.Is(err, state.ErrNotFound) {
		return "", time.Time{}, false, nil
	}
	return pos, at, err == nil, err
}

func (s *pgSink) marks(ctx context.Context) (map[cdc.TableID]cdc.SnapshotMark, error) {
	return s.store.Marks(ctx)
}

// post builds the indexes, several at once (see postSteps), each on a session of its own.
// PostgreSQL DDL is transactional, so each commits with its own record, and a restart runs only
// what is left.
func (s *pgSink) post(ctx context.Context, mig *mysql.Migration) error {
	done, err := s.store.StepsDone(ctx)
	if err != nil {
		return err
	}
	var groups [][]int
	for i := mig.PostDone; i < len(mig.PostData); i++ {
		if !done[postStep(i)] {
			groups = append(groups, []int{i})
		}
	}
	open := func(ctx context.Context) (func(ctx context.Context, i int) error, func(), error) {
		conn, err := pgx.Connect(ctx, s.dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to the target: %w", redactErr(err, s.dsn))
		}
		run := func(ctx context.Context, i int) error {
			q := mig.PostData[i]
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, q); err != nil {
					return fmt.Errorf("post-data on the target: %s: %w", firstWords(q), err)
				}
				_, err := tx.Exec(ctx, state.StepDoneSQL, s.d.cfg.Name, postStep(i))
				return err
			})
		}
		return run, func() { conn.Close(context.WithoutCancel(ctx)) }, nil
	}
	return postSteps(ctx, groups, nil, s.d.cfg.Snapshot.Workers, open)
}

func (s *pgSink) writer(ctx context.Context, source reconSource, tables []*schema.Table, _ int) (apply.Writer, func(), error) {
	t, err := postgres.NewTarget(ctx, s.dsn, s.d.cfg.Name, s.streamName())
	if err != nil {
		return nil, nil, err
	}
	if s.streamName() == forward {
		// The copy runs beside this stream, and the unique keys come after it.
		unique, err := source.uniqueTables(ctx)
		if err != nil {
			t.Close(context.Background())
			return nil, nil, err
		}
		t.Unfold(unique...)
	}
	if s.streamName() == reverse {
		w, err := s.reverseWriter(t, tables)
		if err != nil {
			t.Close(context.Background())
			return nil, nil, err
		}
		return w, func() { t.Close(context.Background()) }, nil
	}
	rows := map[cdc.TableID]rowFunc{}
	for id, cols := range binaryColumns(tables) {
		rows[id] = func(row []cdc.Value) ([]cdc.Value, error) { return toBytea(row, cols), nil }
	}
	return &mapWriter{w: t, rows: rows}, func() { t.Close(context.Background()) }, nil
}

// reverseWriter writes the MySQL target's changes back into the PostgreSQL tables they came
// from: the database's tables become the source's own, in their schemas, and the values of the
// bytea columns go in bytea's hex input form. The other values' MySQL text is PostgreSQL input
// for the column's own type: tinyint(1) 0 and 1 for boolean, datetime(6) in UTC for timestamptz
// (the session is in UTC), JSON text for jsonb. A value that is not, such as a 2 written into
// what was a boolean, stops the stream with the column named.
func (s *pgSink) reverseWriter(t apply.Writer, tables []*schema.Table) (apply.Writer, error) {
	own := map[string]*schema.Table{}
	for _, pt := range s.d.tables {
		own[pt.ID.Name] = pt
	}
	rows := map[cdc.TableID]rowFunc{}
	names := map[cdc.TableID]cdc.TableID{}
	for _, mt := range tables {
		pt := own[mt.ID.Name]
		if pt == nil {
			return nil, fmt.Errorf("table %s of the target is not one of the migrated tables of the old source", mt.ID)
		}
		types := map[string]string{}
		for _, c := range pt.Columns {
			types[c.Name] = c.Type
		}
		var bytea, uuids []int
		for i, c := range mysql.CopyColumns(mt) {
			typ, ok := types[c.Name]
			if !ok {
				return nil, fmt.Errorf("column %s of the target's %s is missing from %s on the old source", c.Name, mt.ID.Name, pt.ID)
			}
			switch typ {
			case "bytea":
				bytea = append(bytea, i)
			case "uuid":
				uuids = append(uuids, i)
			}
		}
		names[mt.ID] = pt.ID
		rows[mt.ID] = func(row []cdc.Value) ([]cdc.Value, error) { return lower(toBytea(row, bytea), uuids), nil }
	}
	return &mapWriter{w: t, rows: rows, all: true, names: names}, nil
}

// binaryColumns lists, per table, the positions in its Relation of the MySQL binary columns,
// which become bytea on PostgreSQL.
func binaryColumns(tables []*schema.Table) map[cdc.TableID][]int {
	out := map[cdc.TableID][]int{}
	for _, t := range tables {
		for i, c := range mysql.CopyColumns(t) {
			switch c.DataType {
			case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob",
				// Spatial values travel as MySQL's internal bytes (SRID + WKB); an override
				// may carry them as bytea.
				"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
				"multipolygon", "geometrycollection", "geomcollection":
				out[t.ID] = append(out[t.ID], i)
			}
		}
	}
	return out
}

// fillUnchanged takes the values PostgreSQL did not resend (unchanged TOASTed columns) from the
// old row, which REPLICA IDENTITY FULL carries whole; a target that writes whole rows needs them.
// Without an old row they stay unchanged, and the target refuses the change.
func fillUnchanged(row, old []cdc.Value) []cdc.Value {
	if old == nil || !slices.ContainsFunc(row, func(v cdc.Value) bool { return v.Kind == cdc.ValueUnchanged }) {
		return row
	}
	out := append([]cdc.Value(nil), row...)
	for i := range out {
		if out[i].Kind == cdc.ValueUnchanged && i < len(old) && old[i].Kind != cdc.ValueUnchanged {
			out[i] = old[i]
		}
	}
	return out
}

// toBytea writes MySQL binary values in bytea's hex input form. Without cols it returns row
// itself, uncopied.
func toBytea(row []cdc.Value, cols []int) []cdc.Value {
	return rewrite(row, cols, func(v []byte) []byte {
		b := make([]byte, 2+hex.EncodedLen(len(v)))
		b[0], b[1] = '\\', 'x'
		hex.Encode(b[2:], v)
		return b
	})
}

// lower writes the values of cols in lower case: uuid columns, char(36) on MySQL, where the
// application may write either case. PostgreSQL reads both as the same uuid, and the writer's
// folding, which matches keys by their text, must see them as the same key too. Without cols
// it returns row itself, uncopied.
func lower(row []cdc.Value, cols []int) []cdc.Value { return rewrite(row, cols, bytes.ToLower) }

// rewrite returns a copy of row with fn applied to the text values of cols, or row itself
// when there are no cols.
func rewrite(row []cdc.Value, cols []int, fn func([]byte) []byte) []cdc.Value {
	if row == nil || len(cols) == 0 {
		return row
	}
	out := append([]cdc.Value(nil), row...)
	for _, i := range cols {
		if i < len(out) && out[i].Kind == cdc.ValueText {
			out[i].Data = fn(out[i].Data)
		}
	}
	return out
}

// rowFunc rewrites a row's values for a target of another engine. It leaves its argument alone
// (a snapshot chunk may be written twice, after a replay): it returns a new slice, or the row
// itself when nothing in it changes.
type rowFunc func(row []cdc.Value) ([]cdc.Value, error)

// mapWriter rewrites the rows of the tables in rows before the target writes them: PostgreSQL
// values into MySQL's form, MySQL binary values into bytea's hex input. With all set, a change
// to a table without a rowFunc is an error.
type mapWriter struct {
	w    apply.Writer
	rows map[cdc.TableID]rowFunc
	all  bool
	// names, when set, renames the tables: a change is written to names[its table].
	names map[cdc.TableID]cdc.TableID
	// renamed keeps one renamed Relation per stream Relation, so that the target's statement
	// cache, keyed by Relation, works; only the applier's goroutine touches it.
	renamed map[*cdc.Relation]*cdc.Relation
}

// relation returns the Relation a change to rel is written with.
func (m *mapWriter) relation(rel *cdc.Relation) *cdc.Relation {
	to, ok := m.names[rel.Table]
	if !ok {
		return rel
	}
	if r := m.renamed[rel]; r != nil {
		return r
	}
	if m.renamed == nil {
		m.renamed = map[*cdc.Relation]*cdc.Relation{}
	}
	r := &cdc.Relation{Table: to, Columns: rel.Columns}
	m.renamed[rel] = r
	return r
}

func (m *mapWriter) Begin(ctx context.Context) (apply.Txn, error) {
	t, err := m.w.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &mapTxn{Txn: t, m: m}, nil
}

// BeginFresh opens a transaction of fresh rows when the target can take one (see
// apply.FreshWriter), else an ordinary one.
func (m *mapWriter) BeginFresh(ctx context.Context) (apply.Txn, error) {
	fw, ok := m.w.(apply.FreshWriter)
	if !ok {
		return m.Begin(ctx)
	}
	t, err := fw.BeginFresh(ctx)
	if err != nil {
		return nil, err
	}
	return &mapTxn{Txn: t, m: m}, nil
}

type mapTxn struct {
	apply.Txn
	m *mapWriter
}

func (t *mapTxn) Add(ctx context.Context, c *cdc.Change) error {
	if c.Relation == nil || c.Op == cdc.OpMark {
		return t.Txn.Add(ctx, c)
	}
	if c.Op == cdc.OpTruncate {
		cc := *c
		cc.Relation = t.m.relation(c.Relation)
		cc.Truncated = make([]*cdc.Relation, len(c.Truncated))
		for i, r := range c.Truncated {
			cc.Truncated[i] = t.m.relation(r)
		}
		return t.Txn.Add(ctx, &cc)
	}
	fn := t.m.rows[c.Relation.Table]
	if fn == nil {
		if t.m.all {
			return fmt.Errorf("%s is not one of the migrated tables", c.Relation.Table)
		}
		return t.Txn.Add(ctx, c)
	}
	cc := *c
	cc.Relation = t.m.relation(c.Relation)
	var err error
	if c.New != nil {
		cc.New, err = fn(fillUnchanged(c.New, c.Old))
	}
	if err == nil && c.Old != nil {
		cc.Old, err = fn(c.Old)
	}
	if err != nil {
		return &apply.ChangeError{Table: c.Relation.Table.String(), Op: c.Op.String(), SQLState: "none", Err: err}
	}
	return t.Txn.Add(ctx, &cc)
}

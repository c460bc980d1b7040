package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/mysql"
	"github.com/migrated/migrated/internal/postgres"
	"github.com/migrated/migrated/internal/schema"
)

// opSide is the engine work of a cutover or rollback on one server of a migration with MySQL on
// a side: how it is fenced and opened, where a stream reading it stands, and its row counts and
// id counters. Tables are named as on the MySQL side; each side finds its own.
type opSide interface {
	label() string
	// fence makes the server read-only for the application, writes a heartbeat the stream
	// reading it carries, and returns the position after it.
	fence(ctx context.Context) (pos string, killed int, err error)
	unfence(ctx context.Context) error
	// passed returns the test of whether a stream reading this side, durable at applied, has
	// passed pos. It reads what it needs once: the drain calls the test every few milliseconds.
	passed(ctx context.Context, pos string) (func(applied string) bool, error)
	count(ctx context.Context, names []string) (map[string]int64, error)
	// counters returns the next id of each table that hands out ids.
	counters(ctx context.Context) (map[string]int64, error)
	// raise moves the id counters to at least the values given, never back.
	raise(ctx context.Context, next map[string]int64) (int, error)
	// startStream readies the server as the source of the stream that runs after the
	// operation, and returns where that stream starts.
	startStream(ctx context.Context) (string, error)
	// dropStream releases what startStream made.
	dropStream(ctx context.Context) error
	checkFence(ctx context.Context) error
	identity(ctx context.Context) (string, error)
	// probeSource checks that the server can be a stream's source.
	probeSource(ctx context.Context) error
	// reopenHint says how an operator lifts the fence by hand.
	reopenHint() string
}

// mysqlSide is a MySQL or MariaDB server of the migration.
type mysqlSide struct {
	d    *Daemon
	name string
	addr mysql.Addr
}

func (s *mysqlSide) label() string { return s.name }

func (s *mysqlSide) fence(ctx context.Context) (pos string, killed int, err error) {
	err = withMy(ctx, s.addr, func(c *client.Conn) error {
		if killed, err = mysql.Fence(ctx, c, s.addr, 5*time.Second); err != nil {
			return err
		}
		if err := mysql.Heartbeat(c, s.d.cfg.Name); err != nil {
			return err
		}
		p, err := mysql.CurrentPosition(c)
		pos = p.String()
		return err
	})
	return pos, killed, err
}

func (s *mysqlSide) unfence(ctx context.Context) error { return withMy(ctx, s.addr, mysql.Unfence) }

func (s *mysqlSide) passed(ctx context.Context, pos string) (func(string) bool, error) {
	var flavor string
	if err := withMy(ctx, s.addr, func(c *client.Conn) error {
		flavor = mysql.Flavor(c.GetServerVersion())
		return nil
	}); err != nil {
		return nil, err
	}
	want, err := gomysql.ParseGTIDSet(flavor, pos)
	if err != nil {
		return nil, fmt.Errorf("fence position %q: %w", pos, err)
	}
	return func(applied string) bool {
		have, err := gomysql.ParseGTIDSet(flavor, applied)
		return err == nil && applied != "" && have.Contain(want)
	}, nil
}

func (s *mysqlSide) count(ctx context.Context, names []string) (out map[string]int64, err error) {
	err = withMy(ctx, s.addr, func(c *client.Conn) error {
		out, err = mysql.CountRows(c, s.addr.DB, names)
		return err
	})
	return out, err
}

func (s *mysqlSide) counters(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := withMy(ctx, s.addr, func(c *client.Conn) error {
		ai, err := mysql.AutoIncrements(c, s.addr.DB)
		for t, n := range ai {
			out[t] = int64(n)
		}
		return err
	})
	return out, err
}

func (s *mysqlSide) raise(ctx context.Context, next map[string]int64) (n int, err error) {
	want := map[string]uint64{}
	for t, v := range next {
		if v > 0 {
			want[t] = uint64(v)
		}
	}
	err = withMy(ctx, s.addr, func(c *client.Conn) error {
		moved, err := mysql.RaiseAutoIncrement(c, s.addr.DB, want)
		n = len(moved)
		return err
	})
	return n, err
}

func (s *mysqlSide) startStream(ctx context.Context) (pos string, err error) {
	err = withMy(ctx, s.addr, func(c *client.Conn) error {
		// The stream's heartbeats go into this table; it is created before the start position.
		if err := mysql.EnsureWatermarkTable(c); err != nil {
			return err
		}
		p, err := mysql.CurrentPosition(c)
		pos = p.String()
		return err
	})
	return pos, err
}

func (s *mysqlSide) dropStream(context.Context) error { return nil } // a binlog reader holds nothing

func (s *mysqlSide) reopenHint() string { return "SET GLOBAL read_only = OFF" }

func (s *mysqlSide) checkFence(ctx context.Context) error {
	return withMy(ctx, s.addr, mysql.CheckFence)
}

func (s *mysqlSide) identity(ctx context.Context) (id string, err error) {
	err = withMy(ctx, s.addr, func(c *client.Conn) (err error) {
		id, err = mysql.ServerIdentity(c)
		return err
	})
	return id, err
}

func (s *mysqlSide) probeSource(ctx context.Context) error {
	return withMy(ctx, s.addr, func(c *client.Conn) error {
		tables, err := s.d.reverseTables(c, s.addr.DB)
		if err != nil {
			return err
		}
		probs, err := mysql.CheckSource(c, tables, 10*time.Minute)
		if err != nil {
			return err
		}
		return problemsError(s.name+" (as the reverse stream's source)", probs)
	})
}

// pgSide is the PostgreSQL server of a migration with MySQL on the other side: the target of a
// MySQL source, whose tables are in the schema named after the MySQL database, or the source
// of a MySQL target.
type pgSide struct {
	d    *Daemon
	name string
	dsn  string
	// slot and pub are those of the stream that reads this side after the cutover.
	slot, pub string
}

func (s *pgSide) label() string { return s.name }

func (s *pgSide) with(ctx context.Context, fn func(c *pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("connect to the %s: %w", s.name, redactErr(err, s.dsn))
	}
	defer c.Close(context.WithoutCancel(ctx))
	return fn(c)
}

// tables are the migrated tables as the PostgreSQL side has them.
func (s *pgSide) tables(ctx context.Context, c *pgx.Conn) ([]*schema.Table, error) {
	return pgTablesOf(ctx, c, s.d.tables)
}

// pgTablesOf reads, from a PostgreSQL side, the migrated tables as it has them: a partitioned
// table is migrated as its root (see pgSource.check).
func pgTablesOf(ctx context.Context, c *pgx.Conn, mine []*schema.Table) ([]*schema.Table, error) {
	all, err := pgTreesOf(ctx, c, mine)
	if err != nil {
		return nil, err
	}
	tables := slices.DeleteFunc(all, func(t *schema.Table) bool { return !t.IsRoot() })
	if len(tables) != len(mine) {
		return nil, fmt.Errorf("the PostgreSQL side has %d of the %d migrated tables", len(tables), len(mine))
	}
	return tables, nil
}

// pgTreesOf reads the migrated tables from a PostgreSQL side with their partitions.
func pgTreesOf(ctx context.Context, c *pgx.Conn, mine []*schema.Table) ([]*schema.Table, error) {
	want := map[string]bool{}
	for _, t := range mine {
		want[t.ID.Schema+"."+t.ID.Name] = true
	}
	return postgres.Tables(ctx, c, func(sch, name string) bool { return want[sch+"."+name] })
}

func (s *pgSide) fence(ctx context.Context) (pos string, killed int, err error) {
	err = s.with(ctx, func(c *pgx.Conn) error {
		lsn, n, err := postgres.Fence(ctx, c, 5*time.Second)
		killed = n
		if err != nil {
			return err
		}
		if _, err := postgres.Heartbeat(ctx, c, s.slot); err != nil {
			return err
		}
		if err := postgres.FlushMark(ctx, c); err != nil {
			return fmt.Errorf("flush the WAL after the fence: %w", err)
		}
		pos = lsn.String()
		return nil
	})
	return pos, killed, err
}

func (s *pgSide) unfence(ctx context.Context) error {
	return s.with(ctx, func(c *pgx.Conn) error { return postgres.Unfence(ctx, c) })
}

func (s *pgSide) passed(_ context.Context, pos string) (func(string) bool, error) {
	want, err := postgres.ParseLSN(pos)
	if err != nil {
		return nil, fmt.Errorf("fence position %q: %w", pos, err)
	}
	return func(applied string) bool {
		have, err := postgres.ParseLSN(applied)
		return err == nil && have >= want
	}, nil
}

func (s *pgSide) count(ctx context.Context, names []string) (map[string]int64, error) {
	out := map[string]int64{}
	err := s.with(ctx, func(c *pgx.Conn) error {
		for _, t := range names {
			var n int64
			rel := s.rel(t)
			if err := c.QueryRow(ctx, "SELECT count(*) FROM "+rel).Scan(&n); err != nil {
				return fmt.Errorf("count the rows of %s: %w", rel, err)
			}
			out[t] = n
		}
		return nil
	})
	return out, err
}

// rel is the quoted PostgreSQL name of the migrated table called name on the MySQL side: in the
// schema named after the MySQL database on a PostgreSQL target, in its own schema on a
// PostgreSQL source.
func (s *pgSide) rel(name string) string {
	for _, t := range s.d.tables {
		if t.ID.Name == name {
			return pgx.Identifier{t.ID.Schema, t.ID.Name}.Sanitize()
		}
	}
	return pgx.Identifier{name}.Sanitize()
}

// identities lists the (table, column) pairs that hand out ids: AUTO_INCREMENT on a MySQL
// source, identity or serial on a PostgreSQL one.
// identities lists the identity columns that match MySQL's AUTO_INCREMENT columns, by table
// and column: from a MySQL source, the AUTO_INCREMENT columns (one per table); from a
// PostgreSQL source, the one column of each table that became AUTO_INCREMENT (see
// mysql.AutoIncrementColumn): another sequence of the table has nothing to do with MySQL's
// counter.
func (s *pgSide) identities() ([][2]string, error) {
	var tm schema.TypeMap
	ms, fromPG := s.d.binlog.sink.(*mysqlSink)
	if fromPG {
		tm = ms.typeMap()
	}
	var out [][2]string
	for _, t := range s.d.tables {
		if fromPG {
			col, err := mysql.AutoIncrementColumn(t, tm)
			if err != nil {
				return nil, err
			}
			if col != "" {
				out = append(out, [2]string{t.ID.Name, col})
			}
			continue
		}
		for _, c := range t.Columns {
			if c.AutoIncrement {
				out = append(out, [2]string{t.ID.Name, c.Name})
			}
		}
	}
	return out, nil
}

func (s *pgSide) counters(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := s.with(ctx, func(c *pgx.Conn) error {
		return s.eachIdentity(ctx, c, func(table, _, _, seq string) error {
			var next int64
			if err := c.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM "+seq).Scan(&next); err != nil {
				return fmt.Errorf("read the identity sequence %s: %w", seq, err)
			}
			out[table] = next
			return nil
		})
	})
	return out, err
}

// eachIdentity calls fn with every identity column of the migrated tables: its table (as the
// MySQL side names it), column, quoted relation and sequence.
func (s *pgSide) eachIdentity(ctx context.Context, c *pgx.Conn, fn func(table, col, rel, seq string) error) error {
	ids, err := s.identities()
	if err != nil {
		return err
	}
	for _, id := range ids {
		rel := s.rel(id[0])
		var seq *string
		if err := c.QueryRow(ctx, "SELECT pg_get_serial_sequence($1, $2)", rel, id[1]).Scan(&seq); err != nil {
			return fmt.Errorf("find the identity of %s.%s: %w", rel, id[1], err)
		}
		if seq == nil {
			continue
		}
		if err := fn(id[0], id[1], rel, *seq); err != nil {
			return err
		}
	}
	return nil
}

func (s *pgSide) raise(ctx context.Context, next map[string]int64) (int, error) {
	moved := 0
	err := s.with(ctx, func(c *pgx.Conn) error {
		return s.eachIdentity(ctx, c, func(table, col, rel, seq string) error {
			want, ok := next[table]
			if !ok {
				return nil
			}
			// Past the values the other side handed out, and past every value in the table;
			// never back.
			var cur, top int64
			if err := c.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM "+seq).Scan(&cur); err != nil {
				return fmt.Errorf("read the identity sequence %s: %w", seq, err)
			}
			if err := c.QueryRow(ctx, "SELECT coalesce(max("+pgx.Identifier{col}.Sanitize()+"), 0)::bigint FROM "+rel).Scan(&top); err != nil {
				return fmt.Errorf("read the largest %s of %s: %w", col, rel, err)
			}
			last := max(want-1, top)
			if last <= 0 || last < cur {
				return nil
			}
			if _, err := c.Exec(ctx, "SELECT setval($1::regclass, $2, true)", seq, last); err != nil {
				return fmt.Errorf("move the identity sequence %s to %d: %w", seq, last+1, err)
			}
			moved++
			return nil
		})
	})
	return moved, err
}

func (s *pgSide) startStream(ctx context.Context) (string, error) {
	err := s.with(ctx, func(c *pgx.Conn) error {
		tables, err := s.tables(ctx, c)
		if err != nil {
			return err
		}
		trees, err := pgTreesOf(ctx, c, s.d.tables)
		if err != nil {
			return err
		}
		// The stream into MySQL needs whole rows: an unchanged large value is not resent
		// otherwise. The tables are idle: nothing writes here yet. A partition logs its own
		// rows, whatever its root says, so each is set.
		for _, t := range trees {
			if t.Partitioned {
				continue
			}
			if _, err := c.Exec(ctx, "ALTER TABLE "+pgx.Identifier{t.ID.Schema, t.ID.Name}.Sanitize()+" REPLICA IDENTITY FULL"); err != nil {
				return fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", t.ID, err)
			}
		}
		if err := postgres.DropSlot(ctx, c, s.slot); err != nil {
			return err
		}
		return postgres.EnsurePublication(ctx, c, s.pub, tables)
	})
	if err != nil {
		return "", err
	}
	lsn, err := postgres.CreateStreamSlot(ctx, s.dsn, s.slot)
	if err != nil {
		return "", redactErr(err, s.dsn)
	}
	return lsn.String(), nil
}

func (s *pgSide) dropStream(ctx context.Context) error {
	return s.with(ctx, func(c *pgx.Conn) error {
		if err := postgres.DropSlot(ctx, c, s.slot); err != nil {
			return err
		}
		return postgres.DropPublication(ctx, c, s.pub)
	})
}

func (s *pgSide) reopenHint() string {
	return "ALTER DATABASE ... RESET default_transaction_read_only, then end the sessions that started read-only"
}

func (s *pgSide) checkFence(ctx context.Context) error {
	return s.with(ctx, func(c *pgx.Conn) error { return postgres.CheckFence(ctx, c) })
}

func (s *pgSide) identity(context.Context) (string, error) { return "postgres|" + s.dsn, nil }

func (s *pgSide) probeSource(ctx context.Context) error {
	return s.with(ctx, func(c *pgx.Conn) error {
		tables, err := s.tables(ctx, c)
		if err != nil {
			return err
		}
		probs, err := postgres.CheckSource(ctx, c, tables, s.slot)
		if err != nil {
			return err
		}
		return problemsError(s.name+" (as the reverse stream's source)", probs)
	})
}

// problemsError joins preflight problems into one error, or returns nil.
func problemsError(who string, probs []schema.Problem) error {
	if len(probs) == 0 {
		return nil
	}
	msg := ""
	for i, p := range probs {
		if i > 0 {
			msg += "; "
		}
		msg += who + ": " + p.String()
	}
	return fmt.Errorf("%s", msg)
}

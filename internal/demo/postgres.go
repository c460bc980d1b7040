package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/testenv"
	"golang.org/x/sync/errgroup"
)

// ErrNoPostgres means the PostgreSQL server binaries the demo needs are not installed.
var ErrNoPostgres = errors.New("the PostgreSQL 15 server binaries (initdb, postgres, pg_dump) are not installed; " +
	"install them with `sudo apt-get install postgresql-15` and run the demo again")

// pgEngine runs the demo between two throwaway PostgreSQL clusters.
type pgEngine struct {
	src, dst *cluster
}

func (e *pgEngine) check() error {
	if _, err := exec.LookPath("pg_dump"); err != nil {
		return fmt.Errorf("%w (pg_dump is not on PATH)", ErrNoPostgres)
	}
	return nil
}

func (e *pgEngine) dsns() (src, dst string) { return e.src.dsn, e.dst.dsn }

func (e *pgEngine) shell(side string) string {
	if side == SideTarget {
		return fmt.Sprintf("psql '%s'", e.dst.dsn)
	}
	return fmt.Sprintf("psql '%s'", e.src.dsn)
}

func (e *pgEngine) dataset(sizeMB int) Dataset { return newDataset(sizeMB, pgRowBytes) }

// cluster is one side of the demo: a throwaway server and the database in it.
type cluster struct {
	pg   *testenv.Postgres
	db   string
	dsn  string
	once sync.Once
}

// start starts the source and target clusters in parallel, each with an empty database.
func (e *pgEngine) start(ctx context.Context) error {
	e.src, e.dst = &cluster{db: "shop"}, &cluster{db: "shop"}
	if os.Getenv(testenv.PostgresURLEnv) != "" {
		// Both sides are databases of the one server named there; keep their names apart.
		e.src.db, e.dst.db = "migrated_demo_source", "migrated_demo_target"
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range []*cluster{e.src, e.dst} {
		g.Go(func() error {
			pg, err := testenv.StartPostgres(testenv.PostgresOptions{})
			if err != nil {
				return startError(err, ErrNoPostgres, "PostgreSQL cluster")
			}
			c.pg = pg
			c.dsn, err = pg.CreateDB(gctx, c.db)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		e.stop()
		return err
	}
	return nil
}

func (e *pgEngine) stop() {
	for _, c := range []*cluster{e.dst, e.src} {
		if c != nil {
			c.stop()
		}
	}
}

// stop shuts the cluster down and deletes it, or drops the database on an external server.
func (c *cluster) stop() {
	c.once.Do(func() {
		if c.pg == nil {
			return
		}
		if c.pg.External() && c.dsn != "" {
			dropDatabase(c.pg.DSN("postgres"), c.db)
		}
		c.pg.Stop()
	})
}

// dropDatabase removes a demo database and the replication slots in it from an external server.
func dropDatabase(adminDSN, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, db)
	time.Sleep(200 * time.Millisecond)
	conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
	conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
}

// load generates the dataset and returns the size of its tables.
func (e *pgEngine) load(ctx context.Context, ds Dataset, progress func(table string, done bool)) (int64, error) {
	if err := ds.Load(ctx, e.src.dsn, progress); err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, e.src.dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var size int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'`).Scan(&size); err != nil {
		return 0, err
	}
	return size, nil
}

// shop opens the writer's pool of two connections on each side.
func (e *pgEngine) shop(ctx context.Context, st *stock) (shop, int, func(), error) {
	const conns = 2
	s := &pgShop{pools: map[string]*pgxpool.Pool{}, stock: st}
	closeAll := func() {
		for _, p := range s.pools {
			p.Close()
		}
	}
	for side, dsn := range map[string]string{SideSource: e.src.dsn, SideTarget: e.dst.dsn} {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			closeAll()
			return nil, 0, nil, err
		}
		cfg.MaxConns = conns
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			closeAll()
			return nil, 0, nil, fmt.Errorf("connect the writer to the %s: %w", side, err)
		}
		s.pools[side] = p
	}
	return s, conns, closeAll, nil
}

// tableRows sums the rows the daemon copied per table, partitions into their root.
func (e *pgEngine) tableRows(ctx context.Context, copied map[string]int64) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, e.src.dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, rootOf, err := tables(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for t, n := range copied {
		root, ok := rootOf[t]
		if !ok {
			root = t
		}
		out[root] += n
	}
	return out, nil
}

// position returns the source's WAL insert position.
func (e *pgEngine) position(ctx context.Context) (string, error) {
	var lsn string
	err := queryRow(ctx, SideSource, e.src.dsn, "SELECT pg_current_wal_insert_lsn()::text", nil, &lsn)
	if err != nil {
		return "", fmt.Errorf("read the source's WAL position: %w", err)
	}
	return lsn, nil
}

// reached reports whether the target's forward checkpoint is at or past the WAL position pos.
func (e *pgEngine) reached(ctx context.Context, pos string) (bool, error) {
	var reached bool
	err := queryRow(ctx, SideTarget, e.dst.dsn, `SELECT position::pg_lsn >= $1::pg_lsn FROM _migrated.progress
		WHERE migration = 'demo' AND stream = 'forward'`, []any{pos}, &reached)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("read the target's checkpoint: %w", err)
	}
	return reached, nil
}

// queryRow runs a query of one row on its own connection to side.
func queryRow(ctx context.Context, side, dsn, sql string, args []any, dest ...any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the %s: %w", side, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

func (e *pgEngine) compareTables(ctx context.Context, progress func(table string)) ([]TableResult, error) {
	return compareTables(ctx, e.src.dsn, e.dst.dsn, progress)
}

func (e *pgEngine) missingKeys(ctx context.Context, side string, live map[string][]string) (map[string][]string, error) {
	dsn := e.src.dsn
	if side == SideTarget {
		dsn = e.dst.dsn
	}
	return missingKeys(ctx, side, dsn, live)
}

package demo

import (
	"context"
	"errors"
	"fmt"

	"github.com/migrated/migrated/internal/testenv"
)

// The engines the demo runs on, named as the daemon's config names them.
const (
	EnginePostgres = "postgres"
	EngineMySQL    = "mysql"
)

// engine is everything the demo does with the database servers outside the daemon, which speaks
// every engine itself: the two throwaway servers, the dataset, the writer's transactions, the
// catch-up position and the independent checks at the end. An implementation reads the servers
// with its own client, never with migrated's code.
type engine interface {
	// check reports what keeps the demo from running before anything is started.
	check() error
	// start starts the source and target servers, each with an empty database; stop stops them
	// and removes their files. stop may be called more than once, and after a failed start.
	start(ctx context.Context) error
	stop()
	// dsns are the source and target DSNs of the daemon's config.
	dsns() (src, dst string)
	// shell is a command line that opens a session on side, for --keep.
	shell(side string) string
	// dataset sizes a dataset of about sizeMB on disk.
	dataset(sizeMB int) Dataset
	// load creates the dataset ds in the source and returns its size on disk. progress is
	// called with each table as it starts and finishes loading.
	load(ctx context.Context, ds Dataset, progress func(table string, done bool)) (int64, error)
	// shop connects the writer's half to both sides; close releases its connections.
	shop(ctx context.Context, st *stock) (s shop, conns int, close func(), err error)
	// tableRows sums the rows the daemon copied per table into the tables the report lists.
	tableRows(ctx context.Context, copied map[string]int64) (map[string]int64, error)
	// position returns the source's position now; reached reports whether the target's
	// checkpoint of the forward stream has passed pos.
	position(ctx context.Context) (string, error)
	reached(ctx context.Context, pos string) (bool, error)
	// compareTables checks every table on both sides, reading both at the same time. progress
	// is called before each table.
	compareTables(ctx context.Context, progress func(table string)) ([]TableResult, error)
	// missingKeys returns, by table, the keys in live that side does not hold.
	missingKeys(ctx context.Context, side string, live map[string][]string) (map[string][]string, error)
}

// newEngine returns the engine that opts name: EnginePostgres or EngineMySQL.
func newEngine(opts Options) (engine, error) {
	switch opts.Engine {
	case EnginePostgres:
		return &pgEngine{}, nil
	case EngineMySQL:
		return &mariaDBEngine{sizeMB: opts.SizeMB}, nil
	}
	return nil, fmt.Errorf("unknown engine %q: use %s or %s", opts.Engine, EnginePostgres, EngineMySQL)
}

// startError says why a server did not start: with notInstalled, which tells how to install
// them, when its binaries are missing.
func startError(err, notInstalled error, server string) error {
	if errors.Is(err, testenv.ErrNotInstalled) {
		return fmt.Errorf("%w\n(%w)", notInstalled, err)
	}
	return fmt.Errorf("start a %s: %w", server, err)
}

// wording is what the demo's output says differently for each engine, and the one fact of the
// daemon's figures that differs.
type wording struct {
	product string               // "PostgreSQL"
	servers string               // what the two servers are called: "clusters"
	tables  func(Dataset) string // the dataset's tables, as the load announces them
	size    string               // what a table's size counts
	compare string               // how the independent verify reads and compares the tables
	pos     string               // what a position of the source is
}

var wordings = map[string]wording{
	EnginePostgres: {
		product: "PostgreSQL", servers: "clusters",
		tables: func(ds Dataset) string {
			return fmt.Sprintf("customers, products, orders, order_items, events (%d monthly partitions), documents (TOAST)", ds.Months+1)
		},
		size: "tables, TOAST and indexes", compare: "sorted COPY, SHA-256", pos: "WAL",
	},
	EngineMySQL: {
		product: "MariaDB", servers: "servers",
		tables: func(Dataset) string {
			return "customers, products, orders, order_items, events, documents (InnoDB, utf8mb4: DECIMAL, DATETIME(6), JSON, ENUM, SET, BLOB)"
		},
		size: "InnoDB data and indexes", compare: "SELECT in primary key order, SHA-256", pos: "GTID",
	},
}

// wordingFor returns the wording of engine, PostgreSQL's for an empty name.
func wordingFor(engine string) wording {
	if w, ok := wordings[engine]; ok {
		return w
	}
	return wordings[EnginePostgres]
}

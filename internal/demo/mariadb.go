package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/testenv"
	"golang.org/x/sync/errgroup"
)

// ErrNoMariaDB means the MariaDB server binaries the demo needs are not installed.
var ErrNoMariaDB = errors.New("the MariaDB server binaries (mariadbd, mariadb-install-db) are not installed; " +
	"install them with `sudo apt-get install mariadb-server` and run the demo again")

// shopDB is the database of the shop on both MariaDB servers, and appUser the application's
// account there, the writer's.
const (
	shopDB  = "shop"
	appUser = "app"
)

// mariaDBEngine runs the demo between two throwaway MariaDB servers. They must be two: the
// fence of a MySQL-family server is its global read_only, which covers the whole server. migrated
// connects as root; the writer as appUser, which lacks READ ONLY ADMIN, so that read_only stops it
// as it would stop an application.
type mariaDBEngine struct {
	sizeMB      int                         // the dataset's, to size the servers' buffer pools
	servers     map[string]*testenv.MariaDB // by side
	appPassword string
	// passwordFile holds appPassword for --keep, readable by the user only: a password is never
	// printed.
	passwordFile string
}

// bufferPoolMB sizes a server's InnoDB buffer pool so that the dataset and what the writer adds
// to it stay in memory, as a production server's working set would, up to 1 GiB. In MariaDB's
// default of 128 MiB the default demo's 300 MB do not fit, and its snapshot under the writer took
// several times as long.
func bufferPoolMB(sizeMB int) int { return min(max(2*sizeMB, 128), 1024) }

func (e *mariaDBEngine) check() error {
	if os.Getenv(testenv.MariaDBURLEnv) != "" {
		return fmt.Errorf("%s names one MariaDB server, and the MariaDB demo needs two of its own: the fence (read_only) covers a whole server; unset it and run the demo again",
			testenv.MariaDBURLEnv)
	}
	return nil
}

func (e *mariaDBEngine) dsns() (src, dst string) {
	return e.servers[SideSource].DSN(shopDB), e.servers[SideTarget].DSN(shopDB)
}

func (e *mariaDBEngine) shell(side string) string {
	m := e.servers[side]
	app := fmt.Sprintf("-u %s -p, its password in %s", appUser, e.passwordFile)
	if e.passwordFile == "" {
		app = fmt.Sprintf("-u %s", appUser)
	}
	return fmt.Sprintf("mariadb -h %s -P %d -u %s %s   (the application: %s)", m.Host(), m.Port(), m.User(), shopDB, app)
}

func (e *mariaDBEngine) dataset(sizeMB int) Dataset { return newDataset(sizeMB, myRowBytes) }

// start starts both servers in parallel, each with an empty shop database and the application's
// account.
func (e *mariaDBEngine) start(ctx context.Context) error {
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return err
	}
	e.appPassword = hex.EncodeToString(pw)
	if f, err := os.CreateTemp("", "migrated-demo-app-*.password"); err == nil { // mode 0600
		_, werr := f.WriteString(e.appPassword + "\n")
		if cerr := f.Close(); werr == nil && cerr == nil {
			e.passwordFile = f.Name()
		} else {
			os.Remove(f.Name())
		}
	}
	e.servers = map[string]*testenv.MariaDB{}
	started := make([]*testenv.MariaDB, 2)
	g, gctx := errgroup.WithContext(ctx)
	for i := range started {
		g.Go(func() error {
			m, err := testenv.StartMariaDB(testenv.MariaDBOptions{Settings: map[string]string{
				"innodb_buffer_pool_size": strconv.Itoa(bufferPoolMB(e.sizeMB)) + "M",
			}})
			if err != nil {
				return startError(err, ErrNoMariaDB, "MariaDB server")
			}
			started[i] = m
			if err := m.CreateDB(gctx, shopDB); err != nil {
				return err
			}
			for _, q := range []string{
				fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", appUser, e.appPassword),
				fmt.Sprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON `%s`.* TO '%s'@'%%'", shopDB, appUser),
			} {
				if err := m.Exec(gctx, q); err != nil {
					return fmt.Errorf("create the application's account: %w", err)
				}
			}
			return nil
		})
	}
	err := g.Wait()
	e.servers[SideSource], e.servers[SideTarget] = started[0], started[1]
	if err != nil {
		e.stop()
		return err
	}
	return nil
}

func (e *mariaDBEngine) stop() {
	for _, m := range e.servers {
		m.Stop() // idempotent, and nil-safe
	}
	if e.passwordFile != "" {
		os.Remove(e.passwordFile)
	}
}

// connect opens a session on the shop database of side, as root or as the application, with
// utf8mb4 and TIMESTAMP values in UTC. A statement that takes longer than 30s fails.
func (e *mariaDBEngine) connect(ctx context.Context, side, user, password string) (*client.Conn, error) {
	m := e.servers[side]
	c, err := client.ConnectWithContext(ctx, m.Addr(), user, password, shopDB, 10*time.Second, func(c *client.Conn) error {
		c.ReadTimeout, c.WriteTimeout = 30*time.Second, 30*time.Second
		return c.SetCharset("utf8mb4")
	})
	if err != nil {
		return nil, fmt.Errorf("connect to the %s as %s: %w", side, user, err)
	}
	if _, err := c.Execute("SET SESSION time_zone = '+00:00'"); err != nil {
		c.Close()
		return nil, fmt.Errorf("set up a session on the %s: %w", side, err)
	}
	return c, nil
}

// root opens a session as the servers' superuser, migrated's account.
func (e *mariaDBEngine) root(ctx context.Context, side string) (*client.Conn, error) {
	m := e.servers[side]
	return e.connect(ctx, side, m.User(), m.Password())
}

func (e *mariaDBEngine) shop(_ context.Context, st *stock) (shop, int, func(), error) {
	return &mariaDBShop{e: e, stock: st}, 2, func() {}, nil
}

// tableRows returns the rows copied as they are: a MariaDB table has no partitions of its own
// in the daemon's status.
func (e *mariaDBEngine) tableRows(_ context.Context, copied map[string]int64) (map[string]int64, error) {
	return maps.Clone(copied), nil
}

// position returns the source's binlog position, a GTID set.
func (e *mariaDBEngine) position(ctx context.Context) (string, error) {
	c, err := e.root(ctx, SideSource)
	if err != nil {
		return "", err
	}
	defer c.Close()
	r, err := c.Execute("SELECT @@GLOBAL.gtid_binlog_pos")
	if err != nil {
		return "", fmt.Errorf("read the source's GTID position: %w", err)
	}
	return r.GetString(0, 0)
}

// reached reports whether the target's forward checkpoint contains the GTID set pos.
func (e *mariaDBEngine) reached(ctx context.Context, pos string) (bool, error) {
	want, err := gomysql.ParseMariadbGTIDSet(pos)
	if err != nil {
		return false, fmt.Errorf("parse the source's GTID position %q: %w", pos, err)
	}
	c, err := e.root(ctx, SideTarget)
	if err != nil {
		return false, err
	}
	defer c.Close()
	r, err := c.Execute("SELECT position FROM _migrated.progress WHERE migration = 'demo' AND stream = 'forward'")
	if err != nil {
		return false, fmt.Errorf("read the target's checkpoint: %w", err)
	}
	if r.RowNumber() == 0 {
		return false, nil
	}
	s, _ := r.GetString(0, 0)
	have, err := gomysql.ParseMariadbGTIDSet(s)
	if err != nil {
		return false, fmt.Errorf("parse the target's checkpoint %q: %w", s, err)
	}
	return have.Contain(want), nil
}

// myTable is a table of the shop database: its primary key and its size on disk.
type myTable struct {
	name  string
	key   []string
	bytes int64
}

// myTables lists the base tables of the session's database with their primary keys, by name.
func myTables(c *client.Conn) ([]myTable, error) {
	r, err := c.Execute(`SELECT t.TABLE_NAME, t.DATA_LENGTH + t.INDEX_LENGTH,
		       GROUP_CONCAT(k.COLUMN_NAME ORDER BY k.ORDINAL_POSITION SEPARATOR ',')
		  FROM information_schema.TABLES t
		  LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.TABLE_SCHEMA = t.TABLE_SCHEMA
		       AND k.TABLE_NAME = t.TABLE_NAME AND k.CONSTRAINT_NAME = 'PRIMARY'
		 WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'
		 GROUP BY t.TABLE_NAME, t.DATA_LENGTH, t.INDEX_LENGTH
		 ORDER BY t.TABLE_NAME`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var out []myTable
	for i := range r.RowNumber() {
		name, _ := r.GetString(i, 0)
		size, _ := r.GetInt(i, 1)
		key, _ := r.GetString(i, 2)
		if key == "" {
			return nil, fmt.Errorf("table %s has no primary key", name)
		}
		out = append(out, myTable{name: name, key: strings.Split(key, ","), bytes: size})
	}
	return out, nil
}

// quoteIdent quotes a MariaDB identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// compareTables checks every table independently of migrated's code: each side returns its rows
// with a plain SELECT in primary key order, and the SHA-256 of the two sides' rows, as text,
// must match. Both sides are read at the same time.
func (e *mariaDBEngine) compareTables(ctx context.Context, progress func(table string)) ([]TableResult, error) {
	var conns [2]*client.Conn
	for i, side := range []string{SideSource, SideTarget} {
		c, err := e.root(ctx, side)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		// A SELECT does not see ctx: closing the socket, which is safe while a read is under
		// way, is what stops it.
		defer context.AfterFunc(ctx, func() { c.Conn.Conn.Close() })()
		conns[i] = c
	}
	return compareMyTables(ctx, conns[0], conns[1], progress)
}

// compareMyTables compares the tables of the databases of two sessions, named by the source's;
// see compareTables.
func compareMyTables(ctx context.Context, src, dst *client.Conn, progress func(table string)) ([]TableResult, error) {
	db := src.GetDB()
	list, err := myTables(src)
	if err != nil {
		return nil, err
	}
	var results []TableResult
	for _, t := range list {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := db + "." + t.name
		progress(name)
		key := make([]string, len(t.key))
		for i, k := range t.key {
			key[i] = quoteIdent(k)
		}
		q := fmt.Sprintf("SELECT * FROM %s ORDER BY %s", quoteIdent(t.name), strings.Join(key, ", "))
		a, b := newDigest(), newDigest()
		var g errgroup.Group
		g.Go(func() error { return hashRows(src, q, a, SideSource, name) })
		g.Go(func() error { return hashRows(dst, q, b, SideTarget, name) })
		if err := g.Wait(); err != nil {
			return nil, err
		}
		results = append(results, TableResult{Table: name, Bytes: t.bytes, SourceRows: a.lines, TargetRows: b.lines, Equal: a.equal(b)})
	}
	return results, nil
}

// hashRows streams the rows of q into d, one line of tab-separated text each, as COPY writes
// them: NULL as \N, and backslash, tab and newline escaped.
func hashRows(c *client.Conn, q string, d *digest, side, table string) error {
	var buf []byte
	var res gomysql.Result
	err := c.ExecuteSelectStreaming(q, &res, func(row []gomysql.FieldValue) error {
		buf = buf[:0]
		for i := range row {
			if i > 0 {
				buf = append(buf, '\t')
			}
			switch v := &row[i]; v.Type {
			case gomysql.FieldValueTypeNull:
				buf = append(buf, `\N`...)
			case gomysql.FieldValueTypeUnsigned:
				buf = strconv.AppendUint(buf, v.AsUint64(), 10)
			case gomysql.FieldValueTypeSigned:
				buf = strconv.AppendInt(buf, v.AsInt64(), 10)
			case gomysql.FieldValueTypeFloat:
				buf = strconv.AppendFloat(buf, v.AsFloat64(), 'g', -1, 64)
			default:
				buf = appendEscaped(buf, v.AsString())
			}
		}
		_, err := d.Write(append(buf, '\n'))
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("read %s on the %s: %w", table, side, err)
	}
	return nil
}

func appendEscaped(buf, s []byte) []byte {
	for _, b := range s {
		switch b {
		case '\\':
			buf = append(buf, `\\`...)
		case '\t':
			buf = append(buf, `\t`...)
		case '\n':
			buf = append(buf, `\n`...)
		default:
			buf = append(buf, b)
		}
	}
	return buf
}

// myKeyColumns is each table's primary key as the ledger writes it.
var myKeyColumns = map[string][]string{
	"customers": {"id"}, "orders": {"id"}, "events": {"id"}, "documents": {"id"},
	"order_items": {"order_id", "line"},
}

// keyBatch is how many keys one lookup names.
const keyBatch = 1000

func (e *mariaDBEngine) missingKeys(ctx context.Context, side string, live map[string][]string) (map[string][]string, error) {
	c, err := e.root(ctx, side)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return missingMyKeys(c, side, live)
}

// missingMyKeys returns, by table, the keys in live that the session's database does not hold.
// A key is the ledger's text: "42", or "42/3" for a composite key.
func missingMyKeys(c *client.Conn, side string, live map[string][]string) (map[string][]string, error) {
	missing := map[string][]string{}
	for _, table := range slices.Sorted(maps.Keys(live)) {
		cols, ok := myKeyColumns[table]
		if !ok {
			return nil, fmt.Errorf("no key columns for table %s", table)
		}
		keys := live[table]
		var found []string
		for chunk := range slices.Chunk(keys, keyBatch) {
			tuples := make([]string, len(chunk))
			for i, k := range chunk {
				parts := strings.Split(k, "/")
				if len(parts) != len(cols) {
					return nil, fmt.Errorf("%s key %q does not match its key columns %v", table, k, cols)
				}
				for _, p := range parts {
					if _, err := strconv.ParseInt(p, 10, 64); err != nil {
						return nil, fmt.Errorf("%s key %q is not numeric", table, k)
					}
				}
				tuples[i] = "(" + strings.Join(parts, ",") + ")"
			}
			q := fmt.Sprintf("SELECT CONCAT_WS('/', %[1]s) FROM %[2]s WHERE (%[1]s) IN (%[3]s)",
				strings.Join(cols, ", "), quoteIdent(table), strings.Join(tuples, ","))
			r, err := c.Execute(q)
			if err != nil {
				return nil, fmt.Errorf("look up %s keys on the %s: %w", table, side, err)
			}
			for i := range r.RowNumber() {
				k, _ := r.GetString(i, 0)
				found = append(found, k)
			}
		}
		if lost := absent(keys, found); len(lost) > 0 {
			missing[table] = lost
		}
	}
	return missing, nil
}

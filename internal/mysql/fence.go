package mysql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// The fence of a MySQL or MariaDB server is its global read_only: unlike PostgreSQL's
// per-database default, it covers every database on the server, takes effect in every open
// session at once, and turns away the COMMIT of a transaction that wrote before it. Sessions
// of accounts allowed to write through it (MariaDB's READ ONLY ADMIN, MySQL's SUPER or
// CONNECTION_ADMIN) still write: migrated's own account needs it, to apply the reverse stream
// into the fenced old source; the application's must not have it.
//
// super_read_only (MySQL) is not set: it would stop migrated's reverse stream too.

// own is the registry of migrated's own sessions by server, so that a fence never kills the
// session that writes its journal or a stream's heartbeat. MariaDB shows no application name
// without performance_schema, so sessions are known by the connection ids Connect saw. A fence
// forgets the ids no longer open on its server (the set stays small, and an id reused after a
// server restart is not mistaken for migrated's).
var own = struct {
	sync.Mutex
	ids map[string]map[uint32]bool
}{ids: map[string]map[uint32]bool{}}

func remember(server string, id uint32) {
	own.Lock()
	defer own.Unlock()
	if own.ids[server] == nil {
		own.ids[server] = map[uint32]bool{}
	}
	own.ids[server][id] = true
}

// ownSessions returns migrated's sessions on server among those open now, and forgets the rest.
func ownSessions(server string, open map[uint32]bool) map[uint32]bool {
	own.Lock()
	defer own.Unlock()
	out := map[uint32]bool{}
	for id := range own.ids[server] {
		if open[id] {
			out[id] = true
		} else {
			delete(own.ids[server], id)
		}
	}
	return out
}

// openSessions lists the ids of every session open on the server now.
func openSessions(c *client.Conn) (map[uint32]bool, error) {
	rows, err := QueryStrings(c, "SELECT ID FROM information_schema.PROCESSLIST")
	if err != nil {
		return nil, fmt.Errorf("list the server's sessions: %w; the migration user needs PROCESS", err)
	}
	out := make(map[uint32]bool, len(rows))
	for _, r := range rows {
		if id, err := strconv.ParseUint(deref(r[0]), 10, 32); err == nil {
			out[uint32(id)] = true
		}
	}
	return out, nil
}

// preparedXA fails when a prepared XA transaction could commit after the fence position.
func preparedXA(c *client.Conn) error {
	xa, err := QueryStrings(c, "XA RECOVER")
	if err != nil {
		return fmt.Errorf("look for prepared XA transactions (XA RECOVER): %w; the migration user needs the privilege XA RECOVER takes (MariaDB: SUPER; MySQL: XA_RECOVER_ADMIN)", err)
	}
	if len(xa) > 0 {
		return fmt.Errorf("the server has %d prepared XA transaction(s) (XA RECOVER), which could commit after the fence; XA COMMIT or XA ROLLBACK them, then try again", len(xa))
	}
	return nil
}

// replicating fails when the server applies another server's binlog: a replica's applier
// writes through read_only, after the fence position.
func replicating(c *client.Conn) error {
	n, _, err := QueryString(c, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Slave\\_%' OR STATE LIKE 'Slave has read all relay log%' OR STATE LIKE 'Replica has read all relay log%'")
	if err != nil {
		return fmt.Errorf("look for replication threads: %w", err)
	}
	if n != "0" {
		return errors.New("the server is a replica: its replication threads write through read_only, after the fence; point migrated at the primary, or stop replication on this server (STOP ALL SLAVES; MySQL: STOP REPLICA) before the cutover")
	}
	return nil
}

// serverKey names a server in the registry as Connect reaches it.
func serverKey(a Addr) string { return a.HostPort() }

// Fence makes the server of c read-only for the application and ends the application sessions
// that could still hold writes: those in an open transaction anywhere on the server, and every
// session on database db. A statement that holds a table lock makes read_only wait; after wait
// it gives up with the sessions to look at. It returns how many sessions it killed. It is
// idempotent: fencing a fenced server only ends the sessions again.
func Fence(ctx context.Context, c *client.Conn, a Addr, wait time.Duration) (int, error) {
	if err := replicating(c); err != nil {
		return 0, err
	}
	if err := preparedXA(c); err != nil {
		return 0, err
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	if _, err := c.Execute("SET SESSION lock_wait_timeout = " + strconv.Itoa(secs)); err != nil {
		return 0, fmt.Errorf("set lock_wait_timeout for the fence: %w", err)
	}
	if _, err := c.Execute("SET GLOBAL read_only = ON"); err != nil {
		var myErr *mysql.MyError
		if errors.As(err, &myErr) && myErr.Code == mysql.ER_LOCK_WAIT_TIMEOUT {
			return 0, fmt.Errorf("the server could not be made read-only within %s: a session holds a table lock or a global read lock (LOCK TABLES, FLUSH TABLES WITH READ LOCK, a long DDL or a commit that does not finish); find it in SHOW PROCESSLIST, end it, and try again", wait)
		}
		return 0, fmt.Errorf("fence the server (SET GLOBAL read_only = ON): %w; the migration user needs READ ONLY ADMIN (MariaDB 10.11+) or SUPER", err)
	}
	// A transaction prepared between the check above and read_only could still commit.
	if err := preparedXA(c); err != nil {
		return 0, err
	}
	open, err := openSessions(c)
	if err != nil {
		return 0, err
	}
	mine := ownSessions(serverKey(a), open)
	mine[c.GetConnectionID()] = true
	killed := map[uint32]bool{}
	deadline := time.Now().Add(wait)
	for {
		ids, err := appSessions(c, a.DB, mine)
		if err != nil {
			return len(killed), err
		}
		if len(ids) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("%d application session(s) did not end within %s of being killed (ids %s); see SHOW PROCESSLIST", len(ids), wait, joinIDs(ids))
		}
		for _, id := range ids {
			if killed[id] {
				continue // dying: KILL again would only wait on it
			}
			if _, err := c.Execute("KILL CONNECTION " + strconv.FormatUint(uint64(id), 10)); err != nil {
				var myErr *mysql.MyError
				if errors.As(err, &myErr) && myErr.Code == mysql.ER_NO_SUCH_THREAD {
					continue // ended by itself
				}
				return len(killed), fmt.Errorf("kill application session %d: %w; the migration user needs CONNECTION ADMIN or SUPER", id, err)
			}
			killed[id] = true
		}
		select {
		case <-ctx.Done():
			return len(killed), ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// appSessions lists the client sessions a fence ends: in an open InnoDB transaction, or on db;
// never a replication thread, a system thread or one of migrated's own.
func appSessions(c *client.Conn, db string, mine map[uint32]bool) ([]uint32, error) {
	rows, err := QueryStrings(c, `SELECT p.ID FROM information_schema.PROCESSLIST p
		WHERE p.ID <> CONNECTION_ID()
		  AND p.USER NOT IN ('system user', 'event_scheduler')
		  AND p.COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Killed')
		  AND p.COMMAND NOT LIKE 'Slave%'
		  AND (p.DB = ? OR p.ID IN (SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX))`, db)
	if err != nil {
		return nil, fmt.Errorf("list the application sessions: %w; the migration user needs PROCESS", err)
	}
	var out []uint32
	for _, r := range rows {
		id, err := strconv.ParseUint(deref(r[0]), 10, 32)
		if err != nil || mine[uint32(id)] {
			continue
		}
		out = append(out, uint32(id))
	}
	return out, nil
}

func joinIDs(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(listSome(s, 10), ", ")
}

// Unfence lifts the fence. It is idempotent.
func Unfence(c *client.Conn) error {
	on, err := Fenced(c)
	if err != nil || !on {
		return err
	}
	if _, err := c.Execute("SET GLOBAL read_only = OFF"); err != nil {
		return fmt.Errorf("unfence the server (SET GLOBAL read_only = OFF): %w", err)
	}
	return nil
}

// Fenced reports whether the server is read-only.
func Fenced(c *client.Conn) (bool, error) {
	v, _, err := QueryString(c, "SELECT @@GLOBAL.read_only")
	if err != nil {
		return false, fmt.Errorf("read the fence state (@@read_only): %w", err)
	}
	return isOn(v), nil
}

// CheckFence reports why the account of c could not fence the server, open it again and write
// through the fence, or nil if it can.
func CheckFence(c *client.Conn) error {
	s, err := readServer(c, "read_only")
	if err != nil {
		return err
	}
	g, err := readGrants(c, s)
	if err != nil {
		return err
	}
	var missing []string
	if s.flavor == mysql.MariaDBFlavor {
		// 10.11 split READ ONLY ADMIN from SUPER; before, SUPER held it.
		if !g.global(g.any, "READ_ONLY ADMIN", "READ ONLY ADMIN") && !(s.major == 10 && s.minor < 11 && g.global(g.any, "SUPER")) {
			missing = append(missing, "READ ONLY ADMIN (set read_only, and write the reverse stream through it)")
		}
		if !g.global(g.any, "CONNECTION ADMIN", "SUPER") {
			missing = append(missing, "CONNECTION ADMIN (end the application's sessions)")
		}
	} else {
		if !g.global(g.any, "SUPER") {
			if !g.global(g.any, "SYSTEM_VARIABLES_ADMIN") {
				missing = append(missing, "SYSTEM_VARIABLES_ADMIN (set read_only)")
			}
			if !g.global(g.any, "CONNECTION_ADMIN") {
				missing = append(missing, "CONNECTION_ADMIN (end the application's sessions, and write the reverse stream through read_only)")
			}
		}
		if !g.global(g.any, "XA_RECOVER_ADMIN") {
			missing = append(missing, "XA_RECOVER_ADMIN (look for prepared XA transactions)")
		}
	}
	if !g.global(g.any, "PROCESS") {
		missing = append(missing, "PROCESS (see the application's sessions)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s cannot fence the server: GRANT %s ON *.* TO %s", s.account(), strings.Join(trimReasons(missing), ", "), s.account())
	}
	return nil
}

// trimReasons keeps the privilege names of "NAME (reason)" items, for a GRANT statement.
func trimReasons(items []string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i], _, _ = strings.Cut(it, " (")
	}
	return out
}

// ServerIdentity names the server of c, so that two DSNs on one server can be told apart from
// two servers: a fence covers the whole server.
func ServerIdentity(c *client.Conn) (string, error) {
	rows, err := QueryStrings(c, "SELECT @@hostname, @@port, @@server_id, @@datadir")
	if err != nil || len(rows) != 1 {
		return "", fmt.Errorf("read the server's identity: %w", err)
	}
	parts := make([]string, len(rows[0]))
	for i, v := range rows[0] {
		parts[i] = deref(v)
	}
	return strings.Join(parts, "|"), nil
}

// Heartbeat writes a row into the watermark table in a transaction of its own: a stream of the
// server carries it, with a position at or after it.
func Heartbeat(c *client.Conn, migration string) error {
	q := "INSERT INTO " + QuoteTable(StateDB, WatermarkTable) + " (id, mark) VALUES (0, " +
		quoteLiteral("heartbeat|"+migration+"|"+time.Now().UTC().Format(time.RFC3339Nano)) + ") ON DUPLICATE KEY UPDATE mark = VALUES(mark)"
	if _, err := c.Execute(q); err != nil {
		return fmt.Errorf("write a heartbeat into %s.%s: %w", StateDB, WatermarkTable, err)
	}
	return nil
}

// AutoIncrement is one table's counter moved by SyncAutoIncrement.
type AutoIncrement struct {
	Table    string
	From, To uint64
}

// SyncAutoIncrement moves the AUTO_INCREMENT counter of each of tables in db on to past the
// counter of the same table in fromDB on from, plus gap, so that the side taking writes next
// never hands out a value the other side used. It never moves a counter back.
func SyncAutoIncrement(from *client.Conn, fromDB string, to *client.Conn, db string, tables []string, gap int64) ([]AutoIncrement, error) {
	have, err := AutoIncrements(from, fromDB)
	if err != nil {
		return nil, err
	}
	want := map[string]uint64{}
	for _, t := range tables {
		if f, ok := have[t]; ok {
			want[t] = f + uint64(max(gap, 0))
		}
	}
	return RaiseAutoIncrement(to, db, want)
}

// RaiseAutoIncrement moves the AUTO_INCREMENT counter of each table of db in want to at least
// its value; never back.
func RaiseAutoIncrement(c *client.Conn, db string, want map[string]uint64) ([]AutoIncrement, error) {
	now, err := AutoIncrements(c, db)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(want))
	for t := range want {
		names = append(names, t)
	}
	slices.Sort(names)
	var moved []AutoIncrement
	for _, t := range names {
		cur, ok := now[t]
		if !ok || cur >= want[t] {
			continue // no AUTO_INCREMENT column here, or already past
		}
		if _, err := c.Execute("ALTER TABLE " + QuoteTable(db, t) + " AUTO_INCREMENT = " + strconv.FormatUint(want[t], 10)); err != nil {
			return moved, fmt.Errorf("move the AUTO_INCREMENT of %s.%s to %d: %w", db, t, want[t], err)
		}
		moved = append(moved, AutoIncrement{Table: t, From: cur, To: want[t]})
	}
	return moved, nil
}

// AutoIncrements reads the next AUTO_INCREMENT value of every table of db that has one.
func AutoIncrements(c *client.Conn, db string) (map[string]uint64, error) {
	// MySQL 8 caches these figures for a day unless told not to; MariaDB has no such setting.
	_, _ = c.Execute("SET SESSION information_schema_stats_expiry = 0")
	rows, err := QueryStrings(c, "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND AUTO_INCREMENT IS NOT NULL", db)
	if err != nil {
		return nil, fmt.Errorf("read the AUTO_INCREMENT counters of %s: %w", db, err)
	}
	out := map[string]uint64{}
	for _, r := range rows {
		n, err := strconv.ParseUint(deref(r[1]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("AUTO_INCREMENT of %s.%s: %q", db, deref(r[0]), deref(r[1]))
		}
		out[deref(r[0])] = n
	}
	return out, nil
}

// binlogFile is one binary log and its size, as SHOW BINARY LOGS lists it.
type binlogFile struct {
	name string
	size int64
}

// BinlogDistance returns how many bytes of binary log the server has written past from: the lag
// in bytes of a stream durable at from. ok is false when from carries no binlog coordinates.
func BinlogDistance(c *client.Conn, from Position) (n int64, ok bool, err error) {
	if from.File == "" {
		return 0, false, nil
	}
	rows, err := QueryStrings(c, "SHOW BINARY LOGS")
	if err != nil {
		return 0, false, fmt.Errorf("list the binary logs: %w", err)
	}
	logs := make([]binlogFile, 0, len(rows))
	for _, r := range rows {
		size, _ := strconv.ParseInt(deref(r[1]), 10, 64)
		logs = append(logs, binlogFile{name: deref(r[0]), size: size})
	}
	return binlogDistance(logs, from), true, nil
}

// binlogDistance adds up the bytes of the logs from the position on. Log names sort in the
// order the server writes them (a fixed-width counter).
func binlogDistance(logs []binlogFile, from Position) int64 {
	var n int64
	for _, l := range logs {
		switch {
		case l.name == from.File:
			n += max(0, l.size-int64(from.Offset))
		case l.name > from.File:
			n += l.size
		}
	}
	return n
}

// CountRows counts the rows of tables in db exactly.
func CountRows(c *client.Conn, db string, tables []string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range tables {
		s, _, err := QueryString(c, "SELECT COUNT(*) FROM "+QuoteTable(db, t))
		if err != nil {
			return nil, fmt.Errorf("count the rows of %s.%s: %w", db, t, err)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("count the rows of %s.%s: %q", db, t, s)
		}
		out[t] = n
	}
	return out, nil
}

// SetPosition records where a stream starts, outside any applied transaction: a reverse stream
// at the cutover, a forward one again at a rollback.
func SetPosition(c *client.Conn, migration, stream, position string) error {
	if err := EnsureState(c); err != nil {
		return err
	}
	if _, err := c.Execute("INSERT INTO `"+StateDB+"`.`progress` (`migration`, `stream`, `position`, `updated_at`) VALUES (?, ?, ?, UTC_TIMESTAMP(6)) "+
		"ON DUPLICATE KEY UPDATE `position` = VALUES(`position`), `commit_time` = NULL, `updated_at` = VALUES(`updated_at`)", migration, stream, position); err != nil {
		return fmt.Errorf("record the start of the %s stream: %w", stream, err)
	}
	return nil
}

// DropPosition removes a stream's checkpoint, when the migration is over.
func DropPosition(c *client.Conn, migration, stream string) error {
	if _, err := c.Execute("DELETE FROM `"+StateDB+"`.`progress` WHERE `migration` = ? AND `stream` = ?", migration, stream); err != nil && !noState(err) {
		return fmt.Errorf("remove the %s stream's checkpoint: %w", stream, err)
	}
	return nil
}

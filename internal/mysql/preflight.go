package mysql

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
)

// Oldest supported servers: MariaDB 10.6 and MySQL 8.0 (GTID positions, binlog_row_image, the
// binlog events go-mysql decodes, and the information_schema columns the catalog reads).
const (
	minMariaDBMajor, minMariaDBMinor = 10, 6
	minMySQLMajor                    = 8
)

// transactionalEngines are the engines whose writes commit atomically with their transaction.
// Any other engine (MyISAM, Aria, MEMORY, ...) writes each statement at once, whatever the
// transaction does, and has no consistent read for a chunk copy.
var transactionalEngines = []string{"innodb", "rocksdb"}

// sourceStatePrivileges are what migrated needs on `_migrated`.* on the source: it creates the
// database and its watermark table there, and writes the watermark and heartbeat rows. An
// UPDATE with a WHERE clause also needs SELECT.
var sourceStatePrivileges = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE"}

// targetPrivileges are what migrated needs on the target database: it creates the tables
// (dropping an empty one that exists, to create it again), adds the indexes and foreign keys
// after the copy, and writes the rows.
var targetPrivileges = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "REFERENCES"}

// targetStatePrivileges are what migrated needs on `_migrated`.* on the target, where it keeps
// its checkpoint and copy progress.
var targetStatePrivileges = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE"}

// CheckSource runs the read-only checks on a MySQL or MariaDB source: version, binary log
// settings, GTIDs, binlog retention against snapshotEstimate, a key and a transactional
// engine on every table, and the user's privileges. tables are the tables that will migrate,
// as Tables lists them. It changes nothing on the server.
func CheckSource(c *client.Conn, tables []*schema.Table, snapshotEstimate time.Duration) ([]schema.Problem, error) {
	var probs []schema.Problem
	add := func(check, format string, args ...any) {
		probs = append(probs, schema.Problem{Check: check, Message: fmt.Sprintf(format, args...)})
	}
	s, err := readServer(c, "log_bin", "binlog_format", "binlog_row_image", "binlog_expire_logs_seconds",
		"expire_logs_days", "gtid_mode", "enforce_gtid_consistency", "binlog_row_value_options", "binlog_order_commits")
	if err != nil {
		return nil, fmt.Errorf("read source settings: %w", err)
	}
	if msg := s.versionProblem(); msg != "" {
		add("version", "source runs %s; upgrade the source", msg)
	}
	restart := "in the [mysqld] section of my.cnf and restart the source"
	if !isOn(s.vars["log_bin"]) {
		add("log_bin", "source binary log is off; set log_bin = mysql-bin and a non-zero server_id %s", restart)
	}
	// The GLOBAL values: a session's own value says nothing about the application's sessions.
	if f := s.vars["binlog_format"]; !strings.EqualFold(f, "ROW") {
		add("binlog_format", "source binlog_format is %s; run SET GLOBAL binlog_format = 'ROW' on the source and set binlog_format = ROW in my.cnf so that it survives a restart. Sessions already connected keep logging %s events until they reconnect, and migrated stops at a statement-based event for a migrated table, so reconnect the application's sessions (restart its pool) afterwards",
			orNone(f), orNone(f))
	}
	if img := s.vars["binlog_row_image"]; !strings.EqualFold(img, "FULL") {
		add("binlog_row_image", "source binlog_row_image is %s, so updates and deletes do not carry whole rows; run SET GLOBAL binlog_row_image = 'FULL' on the source and set binlog_row_image = FULL in my.cnf so that it survives a restart. Sessions already connected keep their row image until they reconnect, so reconnect the application's sessions afterwards",
			orNone(img))
	}
	// MariaDB always writes GTIDs into its binlog. MySQL needs GTID mode for the stream to
	// resume by GTID set.
	if s.flavor == mysql.MySQLFlavor {
		if m := s.vars["gtid_mode"]; !strings.EqualFold(m, "ON") {
			add("gtid_mode", "source gtid_mode is %s; turn it on step by step: SET GLOBAL enforce_gtid_consistency = ON; SET GLOBAL gtid_mode = OFF_PERMISSIVE; SET GLOBAL gtid_mode = ON_PERMISSIVE; wait until SHOW STATUS LIKE 'Ongoing_anonymous_transaction_count' is 0; SET GLOBAL gtid_mode = ON. Then set gtid_mode = ON and enforce_gtid_consistency = ON in my.cnf", orNone(m))
		} else if e := s.vars["enforce_gtid_consistency"]; !strings.EqualFold(e, "ON") {
			add("enforce_gtid_consistency", "source enforce_gtid_consistency is %s; run SET GLOBAL enforce_gtid_consistency = ON on the source and set it in my.cnf", orNone(e))
		}
		// The snapshot's watermarks rely on the binlog order being the commit order: a
		// transaction the binlog lists before a low watermark must be visible to the chunk read
		// after it. MariaDB always commits in binlog order and has no such setting.
		if v, ok := s.vars["binlog_order_commits"]; ok && !isOn(v) {
			add("binlog_order_commits", "source binlog_order_commits is %s, so transactions may become visible in another order than the binary log's, and a snapshot chunk could miss a row; run SET GLOBAL binlog_order_commits = ON on the source and set it in my.cnf", v)
		}
		if o := s.vars["binlog_row_value_options"]; strings.Contains(strings.ToUpper(o), "PARTIAL_JSON") {
			add("binlog_row_value_options", "source binlog_row_value_options is %s, so JSON updates are logged as partial diffs, not whole values; run SET GLOBAL binlog_row_value_options = '' on the source and remove it from my.cnf", o)
		}
	}
	if keep, setting := s.binlogRetention(); keep > 0 && keep < 2*snapshotEstimate {
		want := int64(math.Ceil((2 * snapshotEstimate).Hours())) * 3600
		add("binlog retention", "source purges binary logs after %s (%s), less than twice the %s the snapshot is estimated to take, and the stream must still find the binlog written when the copy began; run SET GLOBAL binlog_expire_logs_seconds = %d on the source (0 keeps binlogs until you purge them) and set it in my.cnf",
			keep, setting, snapshotEstimate.Round(time.Second), want)
	}

	if len(tables) == 0 {
		add("tables", "no source table matches the tables section of the config; check tables.include-schemas and tables.include-tables")
	}
	var noKey []string
	for _, t := range tables {
		if len(t.Key) == 0 {
			noKey = append(noKey, t.ID.String())
		}
	}
	if len(noKey) > 0 {
		add("primary keys", "%d table(s) have no primary key or unique key over NOT NULL columns (without a prefix length), so changes cannot be applied by key: %s; add a primary key (ALTER TABLE ... ADD PRIMARY KEY (...)), or exclude the table with tables.exclude-tables",
			len(noKey), strings.Join(listSome(noKey, 10), ", "))
	}
	engines, err := tableEngines(c, tables)
	if err != nil {
		return nil, err
	}
	var nonTx, convert []string
	for _, t := range tables {
		if e, ok := engines[t.ID]; ok && !slices.Contains(transactionalEngines, strings.ToLower(e)) {
			nonTx = append(nonTx, t.ID.String()+" ("+orNone(e)+")")
			convert = append(convert, "ALTER TABLE "+QuoteTable(t.ID.Schema, t.ID.Name)+" ENGINE = InnoDB")
		}
	}
	if len(nonTx) > 0 {
		add("engines", "%d table(s) use an engine without transactions, whose writes neither commit nor roll back with their transaction and cannot be copied consistently: %s; convert them (%s), or exclude them with tables.exclude-tables",
			len(nonTx), strings.Join(listSome(nonTx, 10), ", "), strings.Join(listSome(convert, 3), "; "))
	}
	var opaque []string
	for _, t := range tables {
		for _, col := range t.Columns {
			switch col.DataType {
			case "uuid", "inet4", "inet6":
				opaque = append(opaque, t.ID.String()+"."+col.Name+" ("+col.DataType+")")
			}
		}
	}
	if len(opaque) > 0 {
		add("column types", "%d column(s) use a MariaDB type whose binlog form is not its text form, which the stream cannot decode yet: %s; change them to a char/binary type (UUID: CHAR(36) or BINARY(16); INET6: VARBINARY(16)), or exclude the tables",
			len(opaque), strings.Join(listSome(opaque, 10), ", "))
	}
	cascades, err := cascadingKeys(c, tables)
	if err != nil {
		return nil, err
	}
	if len(cascades) > 0 {
		add("foreign keys", "%d foreign key(s) cascade on the source: %s. InnoDB does not write the rows a cascade changes to the binary log, so the target would keep them; change the keys to ON DELETE/UPDATE RESTRICT (and let the application change the children), or exclude the child tables with tables.exclude-tables",
			len(cascades), strings.Join(listSome(cascades, 10), ", "))
	}

	g, err := readGrants(c, s)
	if err != nil {
		return nil, err
	}
	who := s.account()
	var repl []string
	if !g.global(g.direct, "REPLICATION SLAVE", "REPLICATION REPLICA") {
		repl = append(repl, "REPLICATION SLAVE")
	}
	if !g.global(g.any, "REPLICATION CLIENT", "BINLOG MONITOR", "SUPER") {
		repl = append(repl, "REPLICATION CLIENT")
	}
	if len(repl) > 0 {
		add("privileges", "user %s lacks %s on the source, which reading the binlog and its position needs (on MariaDB 10.5 and later REPLICATION CLIENT is also called BINLOG MONITOR); run GRANT %s ON *.* TO %s on the source",
			who, strings.Join(repl, " and "), strings.Join(repl, ", "), who)
	}
	denied, err := unreadable(c, g, tables)
	if err != nil {
		return nil, err
	}
	if len(denied) > 0 {
		add("privileges", "user %s cannot read %d table(s) on the source: %s; run GRANT SELECT ON %s.* TO %s on the source, or grant SELECT on each table",
			who, len(denied), strings.Join(listSome(denied, 10), ", "), Quote(tables[0].ID.Schema), who)
	}
	if miss := g.missing(StateDB, sourceStatePrivileges); len(miss) > 0 {
		add("privileges", "user %s cannot keep migrated's watermark and heartbeat table in the %s database on the source (it lacks %s there); run GRANT %s ON %s.* TO %s on the source",
			who, StateDB, strings.Join(miss, ", "), strings.Join(sourceStatePrivileges, ", "), Quote(StateDB), who)
	}
	return probs, nil
}

// CheckTarget checks a MySQL or MariaDB target: its version, the privileges to create and
// fill the tables in db and to keep migrated's state in `_migrated`, and that the tables would
// not collide there. fresh is true when no migration state exists on the target yet: then each
// table must be absent from db or empty. The target needs no local_infile: rows are written
// with INSERT. It changes nothing on the server.
func CheckTarget(c *client.Conn, db string, tables []*schema.Table, fresh bool) ([]schema.Problem, error) {
	var probs []schema.Problem
	add := func(check, format string, args ...any) {
		probs = append(probs, schema.Problem{Check: check, Message: fmt.Sprintf(format, args...)})
	}
	s, err := readServer(c, "lower_case_table_names")
	if err != nil {
		return nil, fmt.Errorf("read target settings: %w", err)
	}
	if msg := s.versionProblem(); msg != "" {
		add("target version", "target runs %s; upgrade the target", msg)
	}

	g, err := readGrants(c, s)
	if err != nil {
		return nil, err
	}
	who := s.account()
	if miss := g.missing(db, targetPrivileges); len(miss) > 0 {
		add("target privileges", "user %s cannot create and fill the tables in %s on the target (it lacks %s there); run GRANT %s ON %s.* TO %s on the target",
			who, Quote(db), strings.Join(miss, ", "), strings.Join(targetPrivileges, ", "), Quote(db), who)
	}
	if miss := g.missing(StateDB, targetStatePrivileges); len(miss) > 0 {
		add("target privileges", "user %s cannot keep migrated's state in the %s database on the target (it lacks %s there); run GRANT %s ON %s.* TO %s on the target",
			who, StateDB, strings.Join(miss, ", "), strings.Join(targetStatePrivileges, ", "), Quote(StateDB), who)
	}

	// Every source table becomes db.<its name>: tables of two source schemas (or, with
	// lower_case_table_names, two names that differ in case) would become one.
	fold := s.vars["lower_case_table_names"] != "" && s.vars["lower_case_table_names"] != "0"
	seen := map[string]string{}
	var clashes []string
	for _, t := range tables {
		name := t.ID.Name
		if fold {
			name = strings.ToLower(name)
		}
		if first, ok := seen[name]; ok {
			clashes = append(clashes, fmt.Sprintf("%s and %s", first, t.ID))
			continue
		}
		seen[name] = t.ID.String()
	}
	if len(clashes) > 0 {
		add("target tables", "%d pair(s) of source tables would become the same table in %s on the target: %s; exclude one of each pair with tables.exclude-tables, or migrate them into separate target databases",
			len(clashes), Quote(db), strings.Join(listSome(clashes, 10), "; "))
	}
	if !fresh {
		return probs, nil
	}
	rows, err := QueryStrings(c, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", db)
	if err != nil {
		return nil, fmt.Errorf("list the tables of target database %s: %w", Quote(db), err)
	}
	exists := map[string]bool{}
	for _, r := range rows {
		exists[*r[0]] = true
	}
	var full []string
	for _, t := range tables {
		if !exists[t.ID.Name] {
			continue
		}
		_, hasRows, err := QueryString(c, "SELECT 1 FROM "+QuoteTable(db, t.ID.Name)+" LIMIT 1")
		if err != nil {
			return nil, fmt.Errorf("check target table %s: %w", QuoteTable(db, t.ID.Name), err)
		}
		if hasRows {
			full = append(full, db+"."+t.ID.Name)
		}
	}
	if len(full) > 0 {
		add("target tables", "target already has rows in %d of the tables to migrate (%s) and no migration state; migrate into empty tables: empty or drop them on the target, or choose another target database",
			len(full), strings.Join(listSome(full, 10), ", "))
	}
	return probs, nil
}

// serverInfo is what the checks read about a server and the session's account.
type serverInfo struct {
	version      string
	flavor       string
	major, minor int
	vars         map[string]string // GLOBAL values by lower-case name; a missing one is absent
	user         string            // CURRENT_USER(): "name@host"
	role         string            // CURRENT_ROLE(), "" for none
}

func readServer(c *client.Conn, vars ...string) (*serverInfo, error) {
	rows, err := QueryStrings(c, "SELECT VERSION(), CURRENT_USER()")
	if err != nil || len(rows) != 1 {
		return nil, fmt.Errorf("read the server version: %w", err)
	}
	s := &serverInfo{version: deref(rows[0][0]), user: deref(rows[0][1]), vars: map[string]string{}}
	// Servers too old to have roles have no CURRENT_ROLE(); versionProblem reports them.
	if role, ok, err := QueryString(c, "SELECT CURRENT_ROLE()"); err == nil && ok && role != "NONE" {
		s.role = role // "NONE" is MySQL's word for no role
	}
	s.flavor = Flavor(s.version)
	parts := strings.SplitN(s.version, ".", 3)
	if len(parts) >= 2 {
		s.major, _ = strconv.Atoi(parts[0])
		s.minor, _ = strconv.Atoi(strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	// The names are this file's constants, so they can be written into the statement; SHOW
	// omits the ones a server does not have.
	quoted := make([]string, len(vars))
	for i, v := range vars {
		quoted[i] = "'" + v + "'"
	}
	rows, err = QueryStrings(c, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("+strings.Join(quoted, ", ")+")")
	if err != nil {
		return nil, fmt.Errorf("read the server's variables: %w", err)
	}
	for _, r := range rows {
		s.vars[strings.ToLower(deref(r[0]))] = deref(r[1])
	}
	return s, nil
}

// versionProblem describes a server older than migrated supports, or returns "".
func (s *serverInfo) versionProblem() string {
	if s.flavor == mysql.MariaDBFlavor {
		if s.major < minMariaDBMajor || s.major == minMariaDBMajor && s.minor < minMariaDBMinor {
			return fmt.Sprintf("MariaDB %d.%d; migrated needs MariaDB %d.%d or later", s.major, s.minor, minMariaDBMajor, minMariaDBMinor)
		}
		return ""
	}
	if s.major < minMySQLMajor {
		return fmt.Sprintf("MySQL %d.%d; migrated needs MySQL %d.0 or later", s.major, s.minor, minMySQLMajor)
	}
	return ""
}

// binlogRetention returns how long the server keeps binary logs, 0 for until purged by hand,
// and the setting that says so. binlog_expire_logs_seconds wins; expire_logs_days counts when
// it is 0 (MySQL 8.0; on MariaDB 10.6 and later the two are one setting).
func (s *serverInfo) binlogRetention() (time.Duration, string) {
	if secs, _ := strconv.ParseInt(s.vars["binlog_expire_logs_seconds"], 10, 64); secs > 0 {
		return time.Duration(secs) * time.Second, fmt.Sprintf("binlog_expire_logs_seconds = %d", secs)
	}
	if days, _ := strconv.ParseFloat(s.vars["expire_logs_days"], 64); days > 0 {
		return time.Duration(days * float64(24*time.Hour)), "expire_logs_days = " + s.vars["expire_logs_days"]
	}
	return 0, ""
}

// account is the session's account as a GRANT statement writes it: 'name'@'host'.
func (s *serverInfo) account() string {
	name, host := s.user, ""
	if i := strings.LastIndexByte(s.user, '@'); i >= 0 {
		name, host = s.user[:i], s.user[i+1:]
	}
	quote := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	return quote(name) + "@" + quote(host)
}

// tableEngines returns the storage engine of each table.
func tableEngines(c *client.Conn, tables []*schema.Table) (map[cdc.TableID]string, error) {
	out := map[cdc.TableID]string{}
	done := map[string]bool{}
	for _, t := range tables {
		if done[t.ID.Schema] {
			continue
		}
		done[t.ID.Schema] = true
		rows, err := QueryStrings(c, "SELECT TABLE_NAME, coalesce(ENGINE, '') FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'", t.ID.Schema)
		if err != nil {
			return nil, fmt.Errorf("read the storage engines of %s: %w", Quote(t.ID.Schema), err)
		}
		for _, r := range rows {
			out[cdc.TableID{Schema: t.ID.Schema, Name: deref(r[0])}] = deref(r[1])
		}
	}
	return out, nil
}

// unreadable lists the tables the session may not read in full. Tables the grants cover are
// not queried; the others are read with LIMIT 0, which checks every privilege path (roles,
// column grants) without reading a row.
func unreadable(c *client.Conn, g *grants, tables []*schema.Table) ([]string, error) {
	var denied []string
	for _, t := range tables {
		if g.has(g.any, "SELECT", t.ID.Schema, t.ID.Name) {
			continue
		}
		cols := "1"
		if cc := CopyColumns(t); len(cc) > 0 {
			names := make([]string, len(cc))
			for i, col := range cc {
				names[i] = Quote(col.Name)
			}
			cols = strings.Join(names, ", ")
		}
		_, err := QueryStrings(c, "SELECT "+cols+" FROM "+QuoteTable(t.ID.Schema, t.ID.Name)+" LIMIT 0")
		var me *mysql.MyError
		switch {
		case err == nil:
		case errors.As(err, &me) && (me.Code == mysql.ER_TABLEACCESS_DENIED_ERROR || me.Code == mysql.ER_COLUMNACCESS_DENIED_ERROR):
			denied = append(denied, t.ID.String())
		default:
			return nil, fmt.Errorf("check SELECT on %s: %w", QuoteTable(t.ID.Schema, t.ID.Name), err)
		}
	}
	return denied, nil
}

// grant is one line of SHOW GRANTS that gives privileges on tables or databases.
type grant struct {
	privs []string // upper case, e.g. "SELECT", "ALL PRIVILEGES"; column privileges are left out
	// db and table are "*" for any. At the database level (table "*"), db is a LIKE pattern:
	// "_" and "%" are wildcards there, and "\_" a literal "_".
	db, table string
	grantee   string // without quotes: "name@host", or a role's name
}

// grants are the privileges of the session's account and its active roles.
type grants struct {
	list       []grant
	user, role string // as serverInfo has them
}

// readGrants runs SHOW GRANTS. MariaDB lists the grants of the active role (and of the roles
// granted to it) after the user's; MySQL lists a role's grants only when asked with USING.
func readGrants(c *client.Conn, s *serverInfo) (*grants, error) {
	q := "SHOW GRANTS"
	if s.flavor == mysql.MySQLFlavor && s.role != "" {
		q = "SHOW GRANTS FOR CURRENT_USER() USING " + s.role // CURRENT_ROLE() is a quoted list
	}
	rows, err := QueryStrings(c, q)
	if err != nil {
		return nil, fmt.Errorf("read the privileges of %s: %w", s.account(), err)
	}
	g := &grants{user: s.user, role: s.role}
	for _, r := range rows {
		if gr, ok := parseGrant(deref(r[0])); ok {
			g.list = append(g.list, gr)
		}
	}
	return g, nil
}

// any accepts every grant SHOW GRANTS listed.
func (g *grants) any(grant) bool { return true }

// direct accepts the grants to the user and to its active role, but not those of roles
// granted to that role: MariaDB 10.11 refuses a binlog dump whose REPLICATION SLAVE comes
// only from such a nested role.
func (g *grants) direct(gr grant) bool {
	return gr.grantee == g.user || g.role != "" && gr.grantee == g.role
}

// global reports whether a grant on *.* that from accepts gives one of privs, or ALL.
func (g *grants) global(from func(grant) bool, privs ...string) bool {
	for _, gr := range g.list {
		if gr.db == "*" && gr.table == "*" && from(gr) && gr.gives(privs...) {
			return true
		}
	}
	return false
}

// has reports whether a grant gives priv on db.table: on *.*, on a database pattern matching
// db, or on the table itself. table "*" asks about the whole database.
func (g *grants) has(from func(grant) bool, priv, db, table string) bool {
	for _, gr := range g.list {
		if !from(gr) || !gr.gives(priv) {
			continue
		}
		switch {
		case gr.db == "*":
			return true
		case gr.table == "*" && likeMatch(gr.db, db):
			return true
		case gr.table != "*" && table != "*" && gr.db == db && gr.table == table:
			return true
		}
	}
	return false
}

// missing returns the privileges of privs not held on db.*, in the order given.
func (g *grants) missing(db string, privs []string) []string {
	var out []string
	for _, p := range privs {
		if !g.has(g.any, p, db, "*") {
			out = append(out, p)
		}
	}
	return out
}

func (gr grant) gives(privs ...string) bool {
	for _, p := range gr.privs {
		if p == "ALL PRIVILEGES" || p == "ALL" || slices.Contains(privs, p) {
			return true
		}
	}
	return false
}

// parseGrant reads one line of SHOW GRANTS, such as
// "GRANT SELECT, INSERT ON `app`.* TO `u`@`%` IDENTIFIED BY PASSWORD '...'". ok is false for
// lines that give no privileges on tables: role grants, PROXY, routines.
func parseGrant(line string) (gr grant, ok bool) {
	rest, ok := strings.CutPrefix(line, "GRANT ")
	if !ok {
		return grant{}, false
	}
	on := topIndex(rest, " ON ")
	if on < 0 {
		return grant{}, false // GRANT `role` TO ...
	}
	object := rest[on+len(" ON "):]
	to := topIndex(object, " TO ")
	if to < 0 {
		return grant{}, false
	}
	grantee := object[to+len(" TO "):]
	object = object[:to]
	if end := topIndex(grantee, " "); end >= 0 {
		grantee = grantee[:end]
	}
	for _, kind := range []string{"PROCEDURE ", "FUNCTION ", "PACKAGE "} {
		if strings.HasPrefix(object, kind) {
			return grant{}, false
		}
	}
	dot := topIndex(object, ".")
	if dot < 0 {
		return grant{}, false
	}
	gr.db, gr.table = unquoteIdent(object[:dot]), unquoteIdent(object[dot+1:])
	gr.grantee = strings.NewReplacer("`", "", "'", "").Replace(grantee)
	privs := rest[:on]
	for {
		comma := topIndex(privs, ",")
		p := privs
		if comma >= 0 {
			p, privs = privs[:comma], privs[comma+1:]
		}
		// A privilege with a column list covers only those columns.
		if p = strings.ToUpper(strings.TrimSpace(p)); p != "" && !strings.Contains(p, "(") && p != "PROXY" {
			gr.privs = append(gr.privs, p)
		}
		if comma < 0 {
			break
		}
	}
	return gr, len(gr.privs) > 0
}

// topIndex returns the index of sep in s outside quotes, backquotes and parentheses, or -1.
func topIndex(s, sep string) int {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == '\\' && quote != '`' {
				i++
			} else if ch == quote {
				quote = 0 // a doubled quote closes and opens again
			}
		case ch == '`' || ch == '\'' || ch == '"':
			quote = ch
		case ch == '(':
			depth++
		case ch == ')':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], sep):
			return i
		}
	}
	return -1
}

// unquoteIdent removes the backquotes of `name`; "*" stays "*".
func unquoteIdent(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' {
		return strings.ReplaceAll(s[1:len(s)-1], "``", "`")
	}
	return s
}

// likeMatch matches s against a LIKE pattern: "%" is any run of characters, "_" any one
// character, and a backslash makes the next character literal.
func likeMatch(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch pattern[0] {
	case '%':
		for i := 0; i <= len(s); i++ {
			if likeMatch(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '_':
		return s != "" && likeMatch(pattern[1:], s[1:])
	case '\\':
		if len(pattern) > 1 {
			return s != "" && s[0] == pattern[1] && likeMatch(pattern[2:], s[1:])
		}
	}
	return s != "" && s[0] == pattern[0] && likeMatch(pattern[1:], s[1:])
}

func isOn(v string) bool { return strings.EqualFold(v, "ON") || v == "1" }

func orNone(v string) string {
	if v == "" {
		return "not set"
	}
	return v
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// listSome returns the first n items of list, and "and N more" for the rest.
func listSome(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(list[:n:n], fmt.Sprintf("and %d more", len(list)-n))
}

// cascadingKeys lists the foreign keys of the migrated tables whose ON DELETE or ON UPDATE rule
// changes other rows (CASCADE, SET NULL, SET DEFAULT), as "db.child.constraint (ON DELETE
// CASCADE)".
func cascadingKeys(c *client.Conn, tables []*schema.Table) ([]string, error) {
	migrated := map[string]bool{}
	var dbs []string
	for _, t := range tables {
		migrated[t.ID.String()] = true
		if !slices.Contains(dbs, t.ID.Schema) {
			dbs = append(dbs, t.ID.Schema)
		}
	}
	var out []string
	for _, db := range dbs {
		rows, err := QueryStrings(c, `SELECT TABLE_NAME, CONSTRAINT_NAME, DELETE_RULE, UPDATE_RULE
		  FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? ORDER BY TABLE_NAME, CONSTRAINT_NAME`, db)
		if err != nil {
			return nil, fmt.Errorf("read the foreign keys of %s: %w", db, err)
		}
		for _, r := range rows {
			if !migrated[db+"."+*r[0]] {
				continue
			}
			var rules []string
			for i, on := range []string{"DELETE", "UPDATE"} {
				if rule := strings.ToUpper(*r[2+i]); rule != "RESTRICT" && rule != "NO ACTION" {
					rules = append(rules, "ON "+on+" "+rule)
				}
			}
			if len(rules) > 0 {
				out = append(out, db+"."+*r[0]+"."+*r[1]+" ("+strings.Join(rules, ", ")+")")
			}
		}
	}
	return out, nil
}

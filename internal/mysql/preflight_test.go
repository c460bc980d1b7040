package mysql

import (
	"context"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/schema"
	"github.com/migrated/migrated/internal/testenv"
)

func TestPreflightParseGrant(t *testing.T) {
	for _, c := range []struct {
		line string
		want grant
		ok   bool
	}{
		{"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
			grant{privs: []string{"ALL PRIVILEGES"}, db: "*", table: "*", grantee: "root@localhost"}, true},
		{"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u1`@`%` IDENTIFIED BY PASSWORD '*B69027D44F6E5EDC07F1AEAD1477967B16F28227'",
			grant{privs: []string{"REPLICATION SLAVE", "BINLOG MONITOR"}, db: "*", table: "*", grantee: "u1@%"}, true},
		{"GRANT INSERT, UPDATE, DELETE, CREATE ON `\\_migrated`.* TO `u1`@`%`",
			grant{privs: []string{"INSERT", "UPDATE", "DELETE", "CREATE"}, db: `\_migrated`, table: "*", grantee: "u1@%"}, true},
		{"GRANT SELECT (`id`, `a b`), INSERT ON `app`.`t` TO `u9`@`%`",
			grant{privs: []string{"INSERT"}, db: "app", table: "t", grantee: "u9@%"}, true},
		{"GRANT SELECT (`id`) ON `app`.`t` TO `u9`@`%`", grant{}, false},
		{"GRANT SELECT ON `we``ird.db`.`t.1` TO 'u'@'10.0.%'",
			grant{privs: []string{"SELECT"}, db: "we`ird.db", table: "t.1", grantee: "u@10.0.%"}, true},
		{"GRANT REPLICATION SLAVE ON *.* TO `r1`", grant{privs: []string{"REPLICATION SLAVE"}, db: "*", table: "*", grantee: "r1"}, true},
		{"GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `migrated`@`%`",
			grant{privs: []string{"SELECT", "RELOAD", "REPLICATION SLAVE", "REPLICATION CLIENT"}, db: "*", table: "*", grantee: "migrated@%"}, true},
		{"GRANT `r1` TO `u3`@`%`", grant{}, false},
		{"GRANT `r1`@`%` TO `u3`@`%`", grant{}, false},
		{"GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION", grant{}, false},
		{"GRANT EXECUTE ON PROCEDURE `mysql`.`addgeometrycolumn` TO `u9`@`%`", grant{}, false},
		{"SET DEFAULT ROLE `r1` FOR `u3`@`%`", grant{}, false},
	} {
		got, ok := parseGrant(c.line)
		if ok != c.ok || (ok && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("parseGrant(%s) = %+v, %v; want %+v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestPreflightLikeMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"_migrated", "_migrated", true},
		{"_migrated", "xmigrated", true},
		{`\_migrated`, "_migrated", true},
		{`\_migrated`, "xmigrated", false},
		{"app%", "app", true},
		{"app%", "app_2", true},
		{"app%", "ap", false},
		{"%", "", true},
		{"a%b%c", "aXXbYc", true},
		{"a%b%c", "aXXbY", false},
		{"App", "app", false},
	} {
		if got := likeMatch(c.pattern, c.s); got != c.want {
			t.Errorf("likeMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestPreflightGrants(t *testing.T) {
	var g grants
	g.user, g.role = "u@%", "r1"
	for _, l := range []string{
		"GRANT `r1` TO `u`@`%`",
		"GRANT USAGE ON *.* TO `u`@`%`",
		"GRANT SELECT ON `app%`.* TO `u`@`%`",
		"GRANT INSERT ON `shop`.`orders` TO `u`@`%`",
		"GRANT `r2` TO `r1`",
		"GRANT BINLOG MONITOR ON *.* TO `r1`",
		"GRANT REPLICATION SLAVE ON *.* TO `r2`",
		"GRANT ALL PRIVILEGES ON `_migrated`.* TO `r2`",
	} {
		if gr, ok := parseGrant(l); ok {
			g.list = append(g.list, gr)
		}
	}
	for _, c := range []struct {
		name string
		got  bool
		want bool
	}{
		{"global from the active role", g.global(g.direct, "BINLOG MONITOR"), true},
		{"global from a nested role counts for any", g.global(g.any, "REPLICATION SLAVE"), true},
		{"but not for direct", g.global(g.direct, "REPLICATION SLAVE"), false},
		{"usage gives nothing", g.global(g.any, "SELECT"), false},
		{"database pattern", g.has(g.any, "SELECT", "app_eu", "t"), true},
		{"database pattern whole database", g.has(g.any, "SELECT", "app_eu", "*"), true},
		{"database pattern mismatch", g.has(g.any, "SELECT", "shop", "orders"), false},
		{"table grant", g.has(g.any, "INSERT", "shop", "orders"), true},
		{"table grant is not the database", g.has(g.any, "INSERT", "shop", "*"), false},
		{"all privileges on a database", g.has(g.any, "DELETE", "_migrated", "*"), true},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if got, want := g.missing("_migrated", sourceStatePrivileges), []string(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("missing on _migrated = %q", got)
	}
	if got, want := g.missing("shop", []string{"SELECT", "INSERT"}), []string{"SELECT", "INSERT"}; !reflect.DeepEqual(got, want) {
		t.Errorf("missing on shop = %q, want %q", got, want)
	}
}

func TestPreflightServerInfo(t *testing.T) {
	for _, c := range []struct {
		version string
		problem bool
	}{
		{"10.11.19-MariaDB-0+deb12u1-log", false},
		{"10.6.0-MariaDB", false},
		{"10.5.27-MariaDB", true},
		{"11.4.2-MariaDB", false},
		{"8.0.36", false},
		{"8.4.0-commercial", false},
		{"5.7.44-log", true},
	} {
		s := &serverInfo{version: c.version, flavor: Flavor(c.version)}
		parts := strings.SplitN(c.version, ".", 3)
		s.major, s.minor = atoi(parts[0]), atoi(parts[1])
		if got := s.versionProblem(); (got != "") != c.problem {
			t.Errorf("%s: versionProblem = %q", c.version, got)
		}
	}
	s := &serverInfo{user: "mig'rated@10.0.%"}
	if got, want := s.account(), `'mig''rated'@'10.0.%'`; got != want {
		t.Errorf("account = %s, want %s", got, want)
	}
	for _, c := range []struct {
		vars    map[string]string
		keep    time.Duration
		setting string
	}{
		{map[string]string{"binlog_expire_logs_seconds": "0", "expire_logs_days": "0.000000"}, 0, ""},
		{map[string]string{"binlog_expire_logs_seconds": "3600", "expire_logs_days": "0.041667"}, time.Hour, "binlog_expire_logs_seconds = 3600"},
		{map[string]string{"binlog_expire_logs_seconds": "0", "expire_logs_days": "2"}, 48 * time.Hour, "expire_logs_days = 2"},
		{map[string]string{"expire_logs_days": "0.5"}, 12 * time.Hour, "expire_logs_days = 0.5"},
	} {
		keep, setting := (&serverInfo{vars: c.vars}).binlogRetention()
		if keep != c.keep || setting != c.setting {
			t.Errorf("binlogRetention(%v) = %s, %q; want %s, %q", c.vars, keep, setting, c.keep, c.setting)
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			break
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// connectAs opens a migrated session on m as user.
func connectAs(t *testing.T, m *testenv.MariaDB, user, password, db string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, Addr{Host: m.Host(), Port: uint16(m.Port()), User: user, Password: password, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustExec(t *testing.T, m *testenv.MariaDB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if err := m.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// checks returns the Check of each problem, and logs the problems.
func checks(t *testing.T, probs []schema.Problem) []string {
	t.Helper()
	var out []string
	for _, p := range probs {
		t.Logf("problem: %s", p)
		out = append(out, p.Check)
	}
	return out
}

func wantProblems(t *testing.T, probs []schema.Problem, err error, want ...string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if got := checks(t, probs); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("checks = %q, want %q", got, want)
	}
}

func wantIn(t *testing.T, msg string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("message %q\ndoes not contain %q", msg, p)
		}
	}
}

func TestCheckSourceTables(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	if err := m.CreateDB(context.Background(), "pf_src"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, m,
		"CREATE TABLE pf_src.good (id INT PRIMARY KEY, v TEXT) ENGINE = InnoDB",
		"CREATE TABLE pf_src.uniq (code VARCHAR(10) NOT NULL, UNIQUE KEY (code)) ENGINE = InnoDB",
		"CREATE TABLE pf_src.nokey (a INT, b INT) ENGINE = InnoDB",
		"CREATE TABLE pf_src.nullable (a INT NULL, UNIQUE KEY (a)) ENGINE = InnoDB",
		"CREATE TABLE pf_src.legacy (id INT PRIMARY KEY) ENGINE = MyISAM",
		"CREATE TABLE pf_src.child (id INT PRIMARY KEY, good_id INT, uniq_code VARCHAR(10),"+
			" CONSTRAINT fk_good FOREIGN KEY (good_id) REFERENCES pf_src.good (id) ON DELETE CASCADE,"+
			" CONSTRAINT fk_uniq FOREIGN KEY (uniq_code) REFERENCES pf_src.uniq (code)) ENGINE = InnoDB",
		"CREATE TABLE pf_src.ids (id INT PRIMARY KEY, u UUID) ENGINE = InnoDB",
	)
	c := connectAs(t, m, m.User(), m.Password(), "pf_src")
	tables, err := Tables(c, "pf_src", nil)
	if err != nil {
		t.Fatal(err)
	}
	probs, err := CheckSource(c, tables, time.Hour)
	wantProblems(t, probs, err, "primary keys", "engines", "column types", "foreign keys")
	wantIn(t, probs[0].Message, "2 table(s) have no primary key", "pf_src.nokey, pf_src.nullable;", "ADD PRIMARY KEY", "tables.exclude-tables")
	wantIn(t, probs[1].Message, "1 table(s) use an engine without transactions", "pf_src.legacy (MyISAM)", "ALTER TABLE `pf_src`.`legacy` ENGINE = InnoDB")
	// The cascading key is named; the restricting one is not.
	wantIn(t, probs[2].Message, "pf_src.ids.u (uuid)", "CHAR(36)")
	wantIn(t, probs[3].Message, "1 foreign key(s) cascade", "pf_src.child.fk_good (ON DELETE CASCADE)", "RESTRICT")
	if strings.Contains(probs[3].Message, "fk_uniq") {
		t.Errorf("a restricting foreign key is reported: %s", probs[3].Message)
	}

	good, err := Tables(c, "pf_src", func(db, table string) bool { return table == "good" || table == "uniq" })
	if err != nil {
		t.Fatal(err)
	}
	probs, err = CheckSource(c, good, time.Hour)
	wantProblems(t, probs, err)

	probs, err = CheckSource(c, nil, time.Hour)
	wantProblems(t, probs, err, "tables")

	// The list of tables is cut at 10.
	var many []*schema.Table
	for i := range 12 {
		many = append(many, &schema.Table{ID: cdc.TableID{Schema: "pf_src", Name: "t" + string(rune('a'+i))}})
	}
	probs, err = CheckSource(c, many, time.Hour)
	wantProblems(t, probs, err, "primary keys")
	wantIn(t, probs[0].Message, "12 table(s)", "pf_src.tj, and 2 more;")
}

func TestCheckSourcePrivileges(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	if err := m.CreateDB(ctx, "pf_priv"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, m,
		"CREATE TABLE pf_priv.a (id INT PRIMARY KEY, v INT)",
		"CREATE TABLE pf_priv.b (id INT PRIMARY KEY)",
		"CREATE TABLE pf_priv.c (id INT PRIMARY KEY, secret TEXT)",
		// Only SELECT: no binlog, no _migrated.
		"CREATE OR REPLACE USER 'pf_reader'@'%' IDENTIFIED BY 'pw1'",
		"GRANT SELECT ON pf_priv.* TO 'pf_reader'@'%'",
		// Everything, but SELECT on single tables (and on c only one column of it), and
		// _migrated through an escaped pattern.
		"CREATE OR REPLACE USER 'pf_partial'@'%' IDENTIFIED BY 'pw2'",
		"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'pf_partial'@'%'",
		"GRANT SELECT ON pf_priv.a TO 'pf_partial'@'%'",
		"GRANT SELECT (id) ON pf_priv.c TO 'pf_partial'@'%'",
		"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `\\_migrated`.* TO 'pf_partial'@'%'",
		// Everything through a default role; SUPER alone does not give REPLICATION SLAVE.
		"CREATE OR REPLACE ROLE pf_role",
		"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO pf_role",
		"GRANT SELECT ON pf_priv.* TO pf_role",
		"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `_migrated`.* TO pf_role",
		"CREATE OR REPLACE USER 'pf_roled'@'%' IDENTIFIED BY 'pw3'",
		"GRANT pf_role TO 'pf_roled'@'%'",
		"SET DEFAULT ROLE pf_role FOR 'pf_roled'@'%'",
		"CREATE OR REPLACE USER 'pf_super'@'%' IDENTIFIED BY 'pw4'",
		"GRANT SUPER, SELECT ON *.* TO 'pf_super'@'%'",
		"GRANT ALL PRIVILEGES ON `_migrated`.* TO 'pf_super'@'%'",
	)
	root := connectAs(t, m, m.User(), m.Password(), "pf_priv")
	tables, err := Tables(root, "pf_priv", nil)
	if err != nil {
		t.Fatal(err)
	}
	probs, err := CheckSource(root, tables, time.Hour)
	wantProblems(t, probs, err)

	probs, err = CheckSource(connectAs(t, m, "pf_reader", "pw1", "pf_priv"), tables, time.Hour)
	wantProblems(t, probs, err, "privileges", "privileges")
	wantIn(t, probs[0].Message, "user 'pf_reader'@'%' lacks REPLICATION SLAVE and REPLICATION CLIENT", "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'pf_reader'@'%' on the source")
	wantIn(t, probs[1].Message, "watermark", "lacks SELECT, INSERT, UPDATE, DELETE, CREATE there", "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `_migrated`.* TO 'pf_reader'@'%'")

	probs, err = CheckSource(connectAs(t, m, "pf_partial", "pw2", "pf_priv"), tables, time.Hour)
	wantProblems(t, probs, err, "privileges")
	wantIn(t, probs[0].Message, "cannot read 2 table(s) on the source: pf_priv.b, pf_priv.c;", "GRANT SELECT ON `pf_priv`.* TO 'pf_partial'@'%'")

	probs, err = CheckSource(connectAs(t, m, "pf_roled", "pw3", "pf_priv"), tables, time.Hour)
	wantProblems(t, probs, err)

	probs, err = CheckSource(connectAs(t, m, "pf_super", "pw4", "pf_priv"), tables, time.Hour)
	wantProblems(t, probs, err, "privileges")
	wantIn(t, probs[0].Message, "lacks REPLICATION SLAVE on the source", "GRANT REPLICATION SLAVE ON *.*")
}

// TestCheckSourceSettings runs on servers of its own, since it changes global settings.
func TestCheckSourceSettings(t *testing.T) {
	testenv.SkipIfShort(t)
	if os.Getenv(testenv.MariaDBURLEnv) != "" {
		t.Skip(testenv.MariaDBURLEnv + " is set: cannot start own servers")
	}
	var (
		wg      sync.WaitGroup
		minimal *testenv.MariaDB // binlog_row_image = MINIMAL from the start
		nobin   *testenv.MariaDB // no binary log
		err1    error
		err2    error
	)
	wg.Go(func() {
		minimal, err1 = testenv.StartMariaDB(testenv.MariaDBOptions{Settings: map[string]string{"binlog_row_image": "MINIMAL"}})
	})
	wg.Go(func() {
		nobin, err2 = testenv.StartMariaDB(testenv.MariaDBOptions{Settings: map[string]string{"skip-log-bin": ""}})
	})
	wg.Wait()
	for _, m := range []*testenv.MariaDB{minimal, nobin} {
		if m != nil {
			t.Cleanup(func() { m.Stop() })
		}
	}
	for _, err := range []error{err1, err2} {
		if err != nil {
			testenv.SkipOrFail(t, err)
		}
	}
	ctx := context.Background()
	table := "CREATE TABLE pf.t (id INT PRIMARY KEY)"

	if err := nobin.CreateDB(ctx, "pf"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, nobin, table)
	c := connectAs(t, nobin, nobin.User(), nobin.Password(), "pf")
	tables, err := Tables(c, "pf", nil)
	if err != nil {
		t.Fatal(err)
	}
	probs, err := CheckSource(c, tables, time.Hour)
	wantProblems(t, probs, err, "log_bin")
	wantIn(t, probs[0].Message, "source binary log is off; set log_bin = mysql-bin and a non-zero server_id in the [mysqld] section of my.cnf and restart the source")

	if err := minimal.CreateDB(ctx, "pf"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, minimal, table)
	c = connectAs(t, minimal, minimal.User(), minimal.Password(), "pf")
	tables, err = Tables(c, "pf", nil)
	if err != nil {
		t.Fatal(err)
	}
	probs, err = CheckSource(c, tables, time.Hour)
	wantProblems(t, probs, err, "binlog_row_image")
	wantIn(t, probs[0].Message, "source binlog_row_image is MINIMAL", "SET GLOBAL binlog_row_image = 'FULL'", "binlog_row_image = FULL in my.cnf", "reconnect")

	// SET GLOBAL from another session: c's own session still logs ROW, and the check must
	// read the global value the application's new sessions get.
	mustExec(t, minimal, "SET GLOBAL binlog_format = 'STATEMENT'", "SET GLOBAL binlog_row_image = 'FULL'")
	if got, _, err := QueryString(c, "SELECT @@SESSION.binlog_format"); err != nil || got != "ROW" {
		t.Fatalf("session binlog_format = %q, %v", got, err)
	}
	probs, err = CheckSource(c, tables, time.Hour)
	wantProblems(t, probs, err, "binlog_format")
	wantIn(t, probs[0].Message, "source binlog_format is STATEMENT", "SET GLOBAL binlog_format = 'ROW'", "binlog_format = ROW in my.cnf", "keep logging STATEMENT events until they reconnect")

	mustExec(t, minimal, "SET GLOBAL binlog_format = 'MIXED'")
	probs, err = CheckSource(c, tables, time.Hour)
	wantProblems(t, probs, err, "binlog_format")

	mustExec(t, minimal, "SET GLOBAL binlog_format = 'ROW'", "SET GLOBAL binlog_expire_logs_seconds = 3600")
	probs, err = CheckSource(c, tables, 45*time.Minute)
	wantProblems(t, probs, err, "binlog retention")
	wantIn(t, probs[0].Message, "source purges binary logs after 1h0m0s (binlog_expire_logs_seconds = 3600), less than twice the 45m0s", "SET GLOBAL binlog_expire_logs_seconds = 7200")
	probs, err = CheckSource(c, tables, 30*time.Minute)
	wantProblems(t, probs, err)

	mustExec(t, minimal, "SET GLOBAL binlog_expire_logs_seconds = 0")
	probs, err = CheckSource(c, tables, 1000*time.Hour)
	wantProblems(t, probs, err)
}

func TestCheckTarget(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	if err := m.CreateDB(context.Background(), "pf_dst"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, m,
		"CREATE TABLE pf_dst.full (id INT PRIMARY KEY)",
		"INSERT INTO pf_dst.full VALUES (1)",
		"CREATE TABLE pf_dst.empty (id INT PRIMARY KEY)",
		"CREATE OR REPLACE USER 'pf_writer'@'%' IDENTIFIED BY 'pw5'",
		"GRANT SELECT, INSERT ON pf_dst.* TO 'pf_writer'@'%'",
		"CREATE OR REPLACE USER 'pf_owner'@'%' IDENTIFIED BY 'pw6'",
		"GRANT ALL PRIVILEGES ON pf_dst.* TO 'pf_owner'@'%'",
		"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `_migrated`.* TO 'pf_owner'@'%'",
	)
	tbl := func(schemaName, name string) *schema.Table {
		return &schema.Table{ID: cdc.TableID{Schema: schemaName, Name: name}, Key: []string{"id"}}
	}
	tables := []*schema.Table{tbl("app", "full"), tbl("app", "empty"), tbl("app", "new")}
	root := connectAs(t, m, m.User(), m.Password(), "pf_dst")

	probs, err := CheckTarget(root, "pf_dst", tables, true)
	wantProblems(t, probs, err, "target tables")
	wantIn(t, probs[0].Message, "target already has rows in 1 of the tables to migrate (pf_dst.full)", "empty or drop them")

	probs, err = CheckTarget(root, "pf_dst", tables, false)
	wantProblems(t, probs, err)

	probs, err = CheckTarget(root, "pf_dst", []*schema.Table{tbl("app", "x"), tbl("billing", "x"), tbl("app", "y")}, true)
	wantProblems(t, probs, err, "target tables")
	wantIn(t, probs[0].Message, "1 pair(s) of source tables would become the same table in `pf_dst` on the target: app.x and billing.x;")

	probs, err = CheckTarget(connectAs(t, m, "pf_writer", "pw5", "pf_dst"), "pf_dst", tables[1:], true)
	wantProblems(t, probs, err, "target privileges", "target privileges")
	wantIn(t, probs[0].Message, "user 'pf_writer'@'%' cannot create and fill the tables in `pf_dst` on the target (it lacks UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES there)",
		"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES ON `pf_dst`.* TO 'pf_writer'@'%' on the target")
	wantIn(t, probs[1].Message, "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `_migrated`.* TO 'pf_writer'@'%' on the target")

	probs, err = CheckTarget(connectAs(t, m, "pf_owner", "pw6", "pf_dst"), "pf_dst", tables[1:], true)
	wantProblems(t, probs, err)
}

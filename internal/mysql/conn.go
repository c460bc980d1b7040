// Package mysql is everything that speaks MySQL and MariaDB: the catalog, preflight, the binlog
// change stream, the chunked snapshot reader and the target writer. It uses go-mysql's client
// and replication packages.
//
// Values travel as text, in the form MySQL's own text protocol prints them (with the session
// time zone at UTC), with these exceptions: BIT is its unsigned integer value in decimal, BINARY(n)
// keeps its trailing zero bytes, ENUM and SET are their member names, and YEAR 0 is "0000".
// The stream and the snapshot produce exactly this form, so a row read either way compares equal.
package mysql

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// Addr is a parsed mysql:// DSN.
type Addr struct {
	Host     string
	Port     uint16
	User     string
	Password string
	// DB is the database the DSN names: the one whose tables migrate.
	DB string
	// TLS is set by ?tls=true (or skip-verify, for self-signed test servers).
	TLS, SkipVerify bool
}

// HostPort returns "host:port".
func (a Addr) HostPort() string { return net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port))) }

// ParseDSN parses mysql://user[:password]@host[:port]/db[?tls=true|skip-verify]. A non-empty
// password argument replaces any password in the URL. The error never quotes the DSN.
func ParseDSN(dsn, password string) (Addr, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme != "mysql" || u.Host == "" {
		return Addr{}, fmt.Errorf(`mysql dsn must be a URL such as mysql://user@host:3306/db; percent-encode any "@", ":", "/", "?" or "#" in the user name and password`)
	}
	a := Addr{Host: u.Hostname(), Port: 3306, DB: strings.TrimPrefix(u.Path, "/")}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return Addr{}, fmt.Errorf("mysql dsn: port %q is not a number", p)
		}
		a.Port = uint16(n)
	}
	if u.User != nil {
		a.User = u.User.Username()
		a.Password, _ = u.User.Password()
	}
	if password != "" {
		a.Password = password
	}
	if a.DB == "" || strings.Contains(a.DB, "/") {
		return Addr{}, fmt.Errorf("mysql dsn must name one database: mysql://user@host:3306/db")
	}
	switch v := u.Query().Get("tls"); v {
	case "", "false":
	case "true":
		a.TLS = true
	case "skip-verify":
		a.TLS, a.SkipVerify = true, true
	default:
		return Addr{}, fmt.Errorf("mysql dsn: tls=%q: use true, skip-verify or false", v)
	}
	return a, nil
}

// sessionSetup makes every migrated session read and write values the same way: UTC for
// TIMESTAMP, utf8mb4, strict errors instead of silent truncation, explicit zero in an
// AUTO_INCREMENT column kept as zero, zero dates accepted (they are carried, never invented),
// and backslash escapes on for the literals this package writes.
const sessionSetup = "SET SESSION time_zone = '+00:00', " +
	"sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', " +
	"group_concat_max_len = 1048576"

// Connect opens a session on the DSN's database with the session settings every migrated
// session uses.
func Connect(ctx context.Context, a Addr) (*client.Conn, error) { return connect(ctx, a, false) }

// connect opens a session; localFiles lets it run LOAD DATA LOCAL (a target writer's session,
// see load.go). No file is ever read for the server: loadData answers with the rows it sends.
// Only the target's writer sessions ask for it, since on any other statement a server's file
// request leaves the connection unusable.
func connect(ctx context.Context, a Addr, localFiles bool) (*client.Conn, error) {
	var opts []client.Option
	if a.TLS {
		// The server name is needed to verify the certificate; skip-verify is for test servers.
		cfg := &tls.Config{ServerName: a.Host, InsecureSkipVerify: a.SkipVerify, MinVersion: tls.VersionTLS12}
		opts = append(opts, func(c *client.Conn) error { c.SetTLSConfig(cfg); return nil })
	}
	opts = append(opts, func(c *client.Conn) error { return c.SetCharset("utf8mb4") })
	if localFiles {
		opts = append(opts, func(c *client.Conn) error { return c.SetCapability(mysql.CLIENT_LOCAL_FILES) })
	}
	c, err := client.ConnectWithContext(ctx, a.HostPort(), a.User, a.Password, a.DB, 10*time.Second, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to mysql %s@%s/%s: %w", a.User, a.HostPort(), a.DB, redact(err, a.Password))
	}
	c.SetAttributes(map[string]string{"program_name": "migrated"})
	remember(serverKey(a), c.GetConnectionID())
	if _, err := c.Execute(sessionSetup); err != nil {
		c.Close()
		return nil, fmt.Errorf("set up the mysql session: %w", err)
	}
	return c, nil
}

// redact removes a password from an error's text.
func redact(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), password, "REDACTED"))
}

// Quote quotes an identifier with backticks.
func Quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// QuoteTable quotes db.table.
func QuoteTable(db, table string) string { return Quote(db) + "." + Quote(table) }

// Flavor tells MariaDB from MySQL by the server's version string.
func Flavor(version string) string {
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return mysql.MariaDBFlavor
	}
	return mysql.MySQLFlavor
}

// QueryStrings runs a query and returns each row's columns as strings; NULL is nil.
func QueryStrings(c *client.Conn, query string, args ...any) ([][]*string, error) {
	r, err := c.Execute(query, args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if r.Resultset == nil {
		return nil, nil
	}
	out := make([][]*string, len(r.Values))
	for i, row := range r.Values {
		out[i] = make([]*string, len(row))
		for j := range row {
			if row[j].Type == mysql.FieldValueTypeNull {
				continue
			}
			s := fieldString(&row[j])
			out[i][j] = &s
		}
	}
	return out, nil
}

// QueryString returns the first column of the first row; ok is false when there is no row or
// the value is NULL.
func QueryString(c *client.Conn, query string, args ...any) (string, bool, error) {
	rows, err := QueryStrings(c, query, args...)
	if err != nil || len(rows) == 0 || len(rows[0]) == 0 || rows[0][0] == nil {
		return "", false, err
	}
	return *rows[0][0], true, nil
}

// fieldString renders a text-protocol value as MySQL printed it. Integers come back parsed and
// are printed again exactly; floats are printed in the shortest form that reads back the same.
func fieldString(v *mysql.FieldValue) string {
	switch v.Type {
	case mysql.FieldValueTypeSigned:
		return strconv.FormatInt(v.AsInt64(), 10)
	case mysql.FieldValueTypeUnsigned:
		return strconv.FormatUint(v.AsUint64(), 10)
	case mysql.FieldValueTypeFloat:
		return strconv.FormatFloat(v.AsFloat64(), 'g', -1, 64)
	default:
		return string(v.AsString())
	}
}

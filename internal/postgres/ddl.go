package postgres

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/migrated/migrated/internal/schema"
)

// DumpOptions selects what pg_dump writes.
type DumpOptions struct {
	DSN     string
	Section string // "pre-data" or "post-data"
	// Snapshot makes the schema match the exported snapshot of the copy exactly.
	Snapshot string
	// Tables are the tables to move; pg_dump takes their schemas, less the other tables in them.
	Tables    []*schema.Table
	AllTables []*schema.Table
}

// Dump runs pg_dump --schema-only for one section. Ownership and privileges are left out: the
// target's roles are not the source's. The password goes through the environment, never argv.
func Dump(ctx context.Context, o DumpOptions) (string, error) {
	dsn, password := SplitPassword(o.DSN)
	args := []string{"--schema-only", "--section=" + o.Section, "--no-owner", "--no-privileges",
		"--no-publications", "--no-subscriptions", "--no-comments", "--exclude-schema=_migrated"}
	if o.Snapshot != "" {
		args = append(args, "--snapshot="+o.Snapshot)
	}
	moving := map[string]bool{}
	for _, t := range o.Tables {
		moving[t.ID.String()] = true
	}
	for _, s := range Schemas(o.Tables) {
		args = append(args, "--schema="+patternQuote(s))
	}
	for _, t := range o.AllTables {
		if !moving[t.ID.String()] && contains(Schemas(o.Tables), t.ID.Schema) {
			args = append(args, "--exclude-table="+patternQuote(t.ID.Schema)+"."+patternQuote(t.ID.Name))
		}
	}
	args = append(args, "--dbname="+dsn)
	cmd := exec.CommandContext(ctx, "pg_dump", args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
	if password == "" {
		cmd.Env = os.Environ()
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pg_dump --section=%s of the source failed: %v: %s; pg_dump must be on PATH and at least the source's major version",
			o.Section, err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

func patternQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

var kwPassword = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// SplitPassword takes the password out of a DSN so that it can travel in PGPASSWORD.
func SplitPassword(dsn string) (string, string) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn, ""
		}
		pw := ""
		if u.User != nil {
			pw, _ = u.User.Password()
			u.User = url.User(u.User.Username())
		}
		q := u.Query()
		if p := q.Get("password"); p != "" {
			pw = p
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		return u.String(), pw
	}
	m := kwPassword.FindStringSubmatch(dsn)
	if m == nil {
		return dsn, ""
	}
	pw := m[1]
	if strings.HasPrefix(pw, "'") {
		pw = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(pw[1 : len(pw)-1])
	}
	return strings.TrimSpace(kwPassword.ReplaceAllString(dsn, " ")), pw
}

// StripMeta drops psql meta-commands (pg_dump writes \restrict and \unrestrict since the 2025
// security releases), which the server does not understand.
// Only those two are removed: other lines starting with a backslash may sit inside function
// bodies or string literals.
func StripMeta(script string) string {
	return restrictLine.ReplaceAllString(script, "")
}

var restrictLine = regexp.MustCompile(`(?m)^\\(un)?restrict [A-Za-z0-9]+\n?`)

// trailingSet matches the SET lines pg_dump writes between entries (default_tablespace,
// default_table_access_method): they configure the entry that follows.
var trailingSet = regexp.MustCompile(`(?s)((?:\n*SET [a-z_]+ = [^\n]*;\n*)+)$`)

// Script reassembles a dump for one transaction, with CREATE SCHEMA made idempotent (the
// target has public already).
func Script(dump string) string {
	preamble, steps := SplitDump(dump)
	var b strings.Builder
	b.WriteString(preamble)
	for _, s := range steps {
		b.WriteString("\n")
		b.WriteString(s.SQL)
		b.WriteString("\n")
	}
	return b.String()
}

// Step is one entry of a pg_dump script: a named object and its SQL.
type Step struct {
	Name string // e.g. "INDEX public.orders_customer_idx"
	Type string // pg_dump's TOC type: INDEX, CONSTRAINT, FK CONSTRAINT, TRIGGER, ...
	SQL  string
}

var tocHeader = regexp.MustCompile(`(?m)^-- Name: (.*?); Type: (.*?); Schema: (.*?); Owner: .*$`)

// SplitDump cuts a pg_dump script into its TOC entries. The preamble (SET statements) is returned
// apart; it must run before each entry on a fresh session. psql meta-commands (\restrict) are dropped.
func SplitDump(script string) (preamble string, steps []Step) {
	script = StripMeta(script)
	locs := tocHeader.FindAllStringSubmatchIndex(script, -1)
	if len(locs) == 0 {
		return script, nil
	}
	preamble = script[:locs[0][0]]
	carried := ""
	for i, loc := range locs {
		end := len(script)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		name, typ, sch := script[loc[2]:loc[3]], script[loc[4]:loc[5]], script[loc[6]:loc[7]]
		sql := strings.TrimSpace(script[loc[1]:end])
		sql = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(sql, "--"), "\n"))
		if carried != "" {
			sql = carried + "\n" + sql
			carried = ""
		}
		if m := trailingSet.FindStringIndex(sql); m != nil && m[0] > 0 {
			carried = strings.TrimSpace(sql[m[0]:])
			sql = strings.TrimSpace(sql[:m[0]])
		}
		if typ == "SCHEMA" {
			sql = strings.Replace(sql, "CREATE SCHEMA ", "CREATE SCHEMA IF NOT EXISTS ", 1)
		}
		steps = append(steps, Step{Name: typ + " " + sch + "." + name, Type: typ, SQL: sql})
	}
	return preamble, steps
}

// Parallel reports whether a post-data step may run beside others of its kind: index builds and
// primary key or unique constraints each touch one table. Foreign keys, attachments and
// triggers run afterwards, one at a time, in pg_dump's order.
func (s Step) Parallel() bool {
	return s.Type == "INDEX" || s.Type == "CONSTRAINT"
}

package mysql

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/migrated/migrated/internal/schema"
)

// CreateTables creates each source table on the target database from the source's SHOW
// CREATE TABLE, keeping the columns (generated ones too: the target computes them), CHECK
// constraints, the table options, the primary key and the key the migration identifies rows
// by (Table.Key). Secondary indexes, other unique keys, FULLTEXT and SPATIAL keys and foreign
// keys are left out and returned as post-data statements, to run after the snapshot: foreign
// keys last, after every table's indexes (a foreign key needs the referenced key).
//
// A secondary UNIQUE key must not exist during the snapshot: a snapshot reconciled with the
// stream passes through states where two rows transiently share a unique value, and
// INSERT ... ON DUPLICATE KEY UPDATE would then update the wrong row. Plain indexes are left
// for later because building them once is faster than maintaining them row by row.
//
// It refuses a table that already exists on the target with rows. An existing empty table is
// dropped and created again, so that the post-data statements apply cleanly. The post-data
// ALTERs add foreign keys without checking existing rows when the session that runs them has
// foreign_key_checks = 0.
func CreateTables(src *client.Conn, srcDB string, dst *client.Conn, dstDB string, tables []*schema.Table) (post []string, err error) {
	existing, err := QueryStrings(dst, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", dstDB)
	if err != nil {
		return nil, fmt.Errorf("list the tables of target database %s: %w", Quote(dstDB), err)
	}
	exists := map[string]bool{}
	for _, r := range existing {
		exists[*r[0]] = true
	}
	type plan struct {
		name, create string
		parts        createParts
	}
	plans := make([]plan, 0, len(tables))
	for _, t := range tables {
		target := QuoteTable(dstDB, t.ID.Name)
		if exists[t.ID.Name] {
			_, hasRows, err := QueryString(dst, "SELECT 1 FROM "+target+" LIMIT 1")
			if err != nil {
				return nil, fmt.Errorf("check target table %s: %w", target, err)
			}
			if hasRows {
				return nil, fmt.Errorf("target table %s already has rows; empty or drop it (or choose another target database) and start the migration again", target)
			}
		}
		show, err := showCreateTable(src, QuoteTable(srcDB, t.ID.Name))
		if err != nil {
			return nil, err
		}
		keep := ""
		if name, ok := strings.CutPrefix(t.KeyKind, "unique key "); ok {
			keep = name
		}
		create, parts, err := splitCreateTable(show, target, keep)
		if err != nil {
			return nil, fmt.Errorf("source table %s: %w", QuoteTable(srcDB, t.ID.Name), err)
		}
		plans = append(plans, plan{name: t.ID.Name, create: create, parts: parts})
	}

	// Dropping an empty table that others reference needs foreign key checks off.
	fkChecks, _, err := QueryString(dst, "SELECT @@SESSION.foreign_key_checks")
	if err != nil {
		return nil, fmt.Errorf("read foreign_key_checks on the target: %w", err)
	}
	if _, err := dst.Execute("SET SESSION foreign_key_checks = 0"); err != nil {
		return nil, fmt.Errorf("set foreign_key_checks on the target: %w", err)
	}
	defer func() {
		if _, rerr := dst.Execute("SET SESSION foreign_key_checks = " + fkChecks); rerr != nil && err == nil {
			err = fmt.Errorf("restore foreign_key_checks on the target: %w", rerr)
		}
	}()
	var fks []string
	for _, p := range plans {
		target := QuoteTable(dstDB, p.name)
		if exists[p.name] {
			if _, err := dst.Execute("DROP TABLE " + target); err != nil {
				return nil, fmt.Errorf("drop empty target table %s to create it again: %w", target, err)
			}
		}
		if _, err := dst.Execute(p.create); err != nil {
			return nil, fmt.Errorf("create target table %s: %w", target, err)
		}
		if len(p.parts.indexes) > 0 {
			post = append(post, "ALTER TABLE "+target+" ADD "+strings.Join(p.parts.indexes, ", ADD "))
		}
		// InnoDB builds one FULLTEXT index per statement.
		for _, ft := range p.parts.fulltext {
			post = append(post, "ALTER TABLE "+target+" ADD "+ft)
		}
		if len(p.parts.foreignKeys) > 0 {
			fks = append(fks, "ALTER TABLE "+target+" ADD "+strings.Join(p.parts.foreignKeys, ", ADD "))
		}
	}
	return append(post, fks...), nil
}

// AddsForeignKey reports whether a post-data statement of CreateTables adds foreign keys,
// which must wait for every table's indexes.
func AddsForeignKey(q string) bool {
	_, def, ok := splitAlter(q)
	if !ok {
		return false
	}
	kind, _ := definitionKind(def)
	return kind == defForeignKey
}

// AlteredTable returns the quoted table a post-data statement of CreateTables alters.
func AlteredTable(q string) string {
	table, _, _ := splitAlter(q)
	return table
}

// splitAlter splits "ALTER TABLE `db`.`t` ADD def..." into the quoted table and the first
// definition.
func splitAlter(q string) (table, def string, ok bool) {
	rest, ok := strings.CutPrefix(q, "ALTER TABLE ")
	if !ok {
		return "", "", false
	}
	db, rest := leadingIdent(rest)
	name, rest := leadingIdent(strings.TrimPrefix(rest, "."))
	def, ok = strings.CutPrefix(strings.TrimSpace(rest), "ADD ")
	return QuoteTable(db, name), def, ok
}

// showCreateTable returns the definition SHOW CREATE TABLE prints for a quoted table.
func showCreateTable(c *client.Conn, table string) (string, error) {
	rows, err := QueryStrings(c, "SHOW CREATE TABLE "+table)
	if err != nil {
		return "", fmt.Errorf("read the definition of %s: %w", table, err)
	}
	if len(rows) == 0 || len(rows[0]) < 2 || rows[0][1] == nil {
		return "", fmt.Errorf("read the definition of %s: SHOW CREATE TABLE returned nothing", table)
	}
	return *rows[0][1], nil
}

// createParts are the definitions split off a CREATE TABLE, each ready to follow ADD.
type createParts struct {
	indexes     []string // KEY, UNIQUE KEY, SPATIAL KEY and any other index
	fulltext    []string
	foreignKeys []string
}

// splitCreateTable rewrites SHOW CREATE TABLE output as a CREATE TABLE of target without the
// indexes and foreign keys, which it returns. The primary key and the unique key named keep
// stay. SHOW CREATE TABLE prints one definition per line, indented two spaces, with newlines
// inside strings escaped, so the lines are the definitions.
func splitCreateTable(show, target, keep string) (string, createParts, error) {
	var parts createParts
	lines := strings.Split(show, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "CREATE TABLE ") || !strings.HasSuffix(lines[0], " (") {
		return "", parts, fmt.Errorf("unexpected SHOW CREATE TABLE output %q", firstLine(show))
	}
	var kept []string
	end := -1
	for i := 1; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, ")") {
			end = i
			break
		}
		def := strings.TrimSuffix(strings.TrimSpace(line), ",")
		switch kind, name := definitionKind(def); kind {
		case defIndex:
			parts.indexes = append(parts.indexes, def)
		case defUnique:
			if name == keep {
				kept = append(kept, def)
			} else {
				parts.indexes = append(parts.indexes, def)
			}
		case defFulltext:
			parts.fulltext = append(parts.fulltext, def)
		case defForeignKey:
			parts.foreignKeys = append(parts.foreignKeys, def)
		default:
			kept = append(kept, def)
		}
	}
	if end < 0 || len(kept) == 0 {
		return "", parts, fmt.Errorf("unexpected SHOW CREATE TABLE output: no end of the column list")
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE " + target + " (\n  ")
	b.WriteString(strings.Join(kept, ",\n  "))
	b.WriteString("\n")
	b.WriteString(strings.Join(lines[end:], "\n"))
	return b.String(), parts, nil
}

type defKind uint8

const (
	defOther      defKind = iota // a column, PRIMARY KEY, a CHECK constraint, a period: kept
	defIndex                     // a non-unique or spatial index
	defUnique                    // a UNIQUE key, with its name
	defFulltext                  // a FULLTEXT index
	defForeignKey                // a FOREIGN KEY constraint
)

// definitionKind classifies one definition of a CREATE TABLE.
func definitionKind(def string) (defKind, string) {
	if strings.HasPrefix(def, "`") {
		return defOther, "" // a column
	}
	upper := strings.ToUpper(def)
	switch {
	case strings.HasPrefix(upper, "UNIQUE KEY ") || strings.HasPrefix(upper, "UNIQUE INDEX "):
		_, rest, _ := strings.Cut(def, " ")
		_, rest, _ = strings.Cut(rest, " ")
		name, _ := leadingIdent(rest)
		return defUnique, name
	case strings.HasPrefix(upper, "FULLTEXT "):
		return defFulltext, ""
	case strings.HasPrefix(upper, "KEY "), strings.HasPrefix(upper, "INDEX "),
		strings.HasPrefix(upper, "SPATIAL "), strings.HasPrefix(upper, "VECTOR "):
		return defIndex, ""
	case strings.HasPrefix(upper, "FOREIGN KEY "):
		return defForeignKey, ""
	case strings.HasPrefix(upper, "CONSTRAINT "):
		_, rest := leadingIdent(strings.TrimSpace(def[len("CONSTRAINT "):]))
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(rest)), "FOREIGN KEY ") {
			return defForeignKey, ""
		}
	}
	return defOther, ""
}

// leadingIdent reads a backquoted identifier at the start of s and returns it unquoted, with
// the rest of s.
func leadingIdent(s string) (name, rest string) {
	if !strings.HasPrefix(s, "`") {
		name, rest, _ = strings.Cut(s, " ")
		return name, rest
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '`' {
			if i+1 < len(s) && s[i+1] == '`' {
				b.WriteByte('`')
				i++
				continue
			}
			return b.String(), s[i+1:]
		}
		b.WriteByte(s[i])
	}
	return b.String(), ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

package config

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// Tables selects the tables to migrate. Patterns use path.Match globs ('*', '?', '[a-z]') and
// are case-sensitive. A table is migrated when it passes both the schema and the table
// filters; an exclude always wins over an include. Match knows nothing of system schemas
// (pg_catalog, information_schema, mysql, ...): leaving them out when listing tables is the
// source driver's job, so an empty include list means every user schema.
type Tables struct {
	// IncludeSchemas lists schema patterns to migrate. Empty means every schema.
	IncludeSchemas []string `yaml:"include-schemas"`
	// ExcludeSchemas lists schema patterns to skip.
	ExcludeSchemas []string `yaml:"exclude-schemas"`
	// IncludeTables lists "schema.table" patterns to migrate, e.g. "public.orders" or
	// "app.*". Empty means every table of an included schema.
	IncludeTables []string `yaml:"include-tables"`
	// ExcludeTables lists "schema.table" patterns to skip, e.g. "*.tmp_*".
	ExcludeTables []string `yaml:"exclude-tables"`
	// Types overrides the target type of single columns when the engines differ: the key is
	// "schema.table.column" (for MySQL, "database.table.column") as the source spells the
	// names, the value the target column type. An override wins over the type map in
	// docs/type-mapping.md and is not checked.
	Types map[string]string `yaml:"types,omitempty"`
}

// Match reports whether schema.table is selected for migration. Patterns are checked when
// the config is loaded, so a malformed one here simply does not match.
func (t Tables) Match(schema, table string) bool {
	if len(t.IncludeSchemas) > 0 && !matchAny(t.IncludeSchemas, schema) {
		return false
	}
	if matchAny(t.ExcludeSchemas, schema) {
		return false
	}
	if len(t.IncludeTables) > 0 && !matchAnyTable(t.IncludeTables, schema, table) {
		return false
	}
	return !matchAnyTable(t.ExcludeTables, schema, table)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, name); ok && err == nil {
			return true
		}
	}
	return false
}

func matchAnyTable(patterns []string, schema, table string) bool {
	for _, p := range patterns {
		sp, tp, ok := strings.Cut(p, ".")
		if !ok {
			continue
		}
		if ok, err := path.Match(sp, schema); !ok || err != nil {
			continue
		}
		if ok, err := path.Match(tp, table); ok && err == nil {
			return true
		}
	}
	return false
}

// validate reports malformed patterns, naming each by its index in the list.
func (t Tables) validate(p *problems) {
	for _, l := range []struct {
		key      string
		patterns []string
		table    bool
	}{
		{"tables.include-schemas", t.IncludeSchemas, false},
		{"tables.exclude-schemas", t.ExcludeSchemas, false},
		{"tables.include-tables", t.IncludeTables, true},
		{"tables.exclude-tables", t.ExcludeTables, true},
	} {
		for i, pat := range l.patterns {
			field := fmt.Sprintf("%s[%d]", l.key, i)
			if msg := checkPattern(pat, l.table); msg != "" {
				p.add(field, msg)
			}
		}
	}
	for _, col := range slices.Sorted(maps.Keys(t.Types)) {
		field := fmt.Sprintf("tables.types[%q]", col)
		parts := strings.Split(col, ".")
		if len(parts) != 3 || slices.Contains(parts, "") {
			p.add(field, "must be schema.table.column, e.g. \"app.orders.total\"; names containing a dot cannot be overridden")
		} else if strings.TrimSpace(t.Types[col]) == "" {
			p.add(field, "must name the target column type, e.g. \"decimal(65,30)\"")
		}
	}
}

func checkPattern(pat string, table bool) string {
	if !table {
		if pat == "" {
			return "must not be empty"
		}
		if _, err := path.Match(pat, ""); err != nil {
			return fmt.Sprintf("%q is not a valid glob pattern", pat)
		}
		return ""
	}
	sp, tp, ok := strings.Cut(pat, ".")
	if !ok || sp == "" || tp == "" {
		return fmt.Sprintf("%q must be schema.table, e.g. \"public.orders\" or \"public.*\"", pat)
	}
	_, err1 := path.Match(sp, "")
	_, err2 := path.Match(tp, "")
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("%q is not a valid glob pattern", pat)
	}
	return ""
}

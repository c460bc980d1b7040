package config

import "testing"

func TestTablesMatch(t *testing.T) {
	for _, c := range []struct {
		name          string
		tables        Tables
		schema, table string
		want          bool
	}{
		{"empty selects all", Tables{}, "public", "orders", true},
		{"schema included", Tables{IncludeSchemas: []string{"app", "billing"}}, "billing", "invoices", true},
		{"schema not included", Tables{IncludeSchemas: []string{"app"}}, "billing", "invoices", false},
		{"schema glob", Tables{IncludeSchemas: []string{"tenant_*"}}, "tenant_42", "users", true},
		{"schema excluded", Tables{ExcludeSchemas: []string{"scratch"}}, "scratch", "t", false},
		{"exclude wins over include", Tables{IncludeSchemas: []string{"*"}, ExcludeSchemas: []string{"tmp*"}}, "tmp1", "t", false},
		{"table included", Tables{IncludeTables: []string{"public.orders"}}, "public", "orders", true},
		{"table not included", Tables{IncludeTables: []string{"public.orders"}}, "public", "users", false},
		{"table glob", Tables{IncludeTables: []string{"public.order_*"}}, "public", "order_lines", true},
		{"schema glob in table pattern", Tables{IncludeTables: []string{"*.users"}}, "tenant_1", "users", true},
		{"table excluded", Tables{ExcludeTables: []string{"*.tmp_*"}}, "public", "tmp_import", false},
		{"table exclude wins", Tables{IncludeTables: []string{"public.*"}, ExcludeTables: []string{"public.audit"}}, "public", "audit", false},
		{"table include needs schema include", Tables{IncludeSchemas: []string{"app"}, IncludeTables: []string{"audit.log"}}, "audit", "log", false},
		{"case sensitive", Tables{IncludeTables: []string{"public.Orders"}}, "public", "orders", false},
		{"dot in table name", Tables{IncludeTables: []string{"public.a.b"}}, "public", "a.b", true},
		{"malformed pattern never matches", Tables{IncludeTables: []string{"public.[x"}}, "public", "[x", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got, want := c.tables.Match(c.schema, c.table), c.want; got != want {
				t.Errorf("Match(%q, %q) = %v, want %v", c.schema, c.table, got, want)
			}
		})
	}
}

package schema

import "testing"

func TestPGDefault(t *testing.T) {
	for _, tt := range []struct {
		def, typ, want string
		ok             bool
	}{
		{"", "integer", "", true},
		{"NULL", "text", "", true},
		{"0", "integer", "0", true},
		{"-1.50", "numeric(10,2)", "-1.50", true},
		{"1", "bytea", "", false},
		{"'active'", "character varying(20)", "'active'", true},
		{"'new'", "text", "'new'", true},
		{"'{}'", "json", "'{}'", true},
		{"'7'", "bigint", "7", true},
		{"'it''s'", "text", "", false},
		{`'a\b'`, "text", "", false},
		{"current_timestamp()", "timestamp with time zone", "CURRENT_TIMESTAMP", true},
		{"current_timestamp(6)", "timestamp(6) without time zone", "CURRENT_TIMESTAMP", true},
		{"CURRENT_TIMESTAMP", "text", "", false},
		{"curdate()", "date", "CURRENT_DATE", true},
		{"'2024-02-29'", "date", "'2024-02-29'", true},
		{"'0000-00-00'", "date", "", false},
		{"'0000-00-00 00:00:00'", "timestamp(6) without time zone", "", false},
		{"'2024-01-02 03:04:05.123'", "timestamp(6) with time zone", "", false},
		{"'2024-01-02 03:04:05.123'", "timestamp(6) without time zone", "'2024-01-02 03:04:05.123'", true},
		{"'12:30:00'", "time(6) without time zone", "'12:30:00'", true},
		{"uuid()", "uuid", "", false},
		{"active", "text", "", false}, // MySQL 8's unquoted literal
		{"b'1'", "bigint", "", false},
		{"'x'", "bytea", "", false},
	} {
		got, ok := PGDefault(tt.def, tt.typ)
		if got != tt.want || ok != tt.ok {
			t.Errorf("PGDefault(%q, %q) = %q, %v; want %q, %v", tt.def, tt.typ, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMySQLDefault(t *testing.T) {
	for _, tt := range []struct {
		def, typ, want string
		ok             bool
		pg             string // the PostgreSQL column's type, when it matters
	}{
		{"", "int", "", true, ""},
		{"0", "int", "0", true, ""},
		{"'-1'::integer", "int", "-1", true, ""},
		{"(-1)", "bigint", "-1", true, ""},
		{"1.5", "decimal(10,2)", "1.5", true, ""},
		{"'2.5'::numeric", "decimal(10,2)", "2.5", true, ""},
		{"true", "tinyint(1)", "1", true, ""},
		{"false", "tinyint(1)", "0", true, ""},
		{"true", "varchar(5)", "", false, ""},
		{"'active'::text", "longtext", "('active')", true, ""},
		{"'active'::character varying", "varchar(20)", "'active'", true, ""},
		{"'{}'::jsonb", "json", "('{}')", true, ""},
		{"'x'::bytea", "longblob", "", false, ""},
		{"now()", "datetime(6)", "CURRENT_TIMESTAMP(6)", true, "timestamp(6) without time zone"},
		{"now()", "datetime(6)", "(UTC_TIMESTAMP(6))", true, "timestamp(6) with time zone"},
		{"now()", "datetime", "(UTC_TIMESTAMP)", true, "timestamp with time zone"},
		{"'{1,2}'::integer[]", "json", "", false, "integer[]"},
		{"CURRENT_TIMESTAMP", "timestamp(3)", "CURRENT_TIMESTAMP(3)", true, ""},
		{"now()", "varchar(40)", "", false, ""},
		{"CURRENT_DATE", "date", "(CURRENT_DATE)", true, ""},
		{"'2020-01-01'::date", "date", "'2020-01-01'", true, ""},
		{"nextval('t_id_seq'::regclass)", "bigint", "", false, ""},
		{"gen_random_uuid()", "char(36)", "", false, ""},
		{"'it''s'::text", "longtext", "", false, ""},
		{"lower('X'::text)", "longtext", "", false, ""},
	} {
		got, ok := MySQLDefault(tt.def, tt.pg, tt.typ)
		if got != tt.want || ok != tt.ok {
			t.Errorf("MySQLDefault(%q, %q, %q) = %q, %v; want %q, %v", tt.def, tt.pg, tt.typ, got, ok, tt.want, tt.ok)
		}
	}
}

package postgres

import (
	"os"
	"strings"
	"testing"
)

// statementsOf drops comment lines and blank lines, leaving the SQL a step runs.
func statementsOf(sql string) string {
	var kept []string
	for _, line := range strings.Split(sql, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "--") {
			continue
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "\n")
}

func TestSplitDumpPostData(t *testing.T) {
	dump, err := os.ReadFile("testdata/post-data.sql")
	if err != nil {
		t.Fatal(err)
	}
	preamble, steps := SplitDump(string(dump))

	for _, want := range []string{
		"SET statement_timeout = 0;",
		"SET client_encoding = 'UTF8';",
		"SELECT pg_catalog.set_config('search_path', '', false);",
		"SET default_tablespace = '';",
	} {
		if !strings.Contains(preamble, want) {
			t.Errorf("preamble lacks %q", want)
		}
	}
	if strings.Contains(preamble, "-- Name:") {
		t.Error("preamble holds a TOC entry")
	}

	want := []struct {
		name, typ, sql string
		parallel       bool
	}{
		{"CONSTRAINT public.customers customers_email_key", "CONSTRAINT",
			"ALTER TABLE ONLY public.customers\n    ADD CONSTRAINT customers_email_key UNIQUE (email);", true},
		{"CONSTRAINT public.customers customers_pkey", "CONSTRAINT",
			"ALTER TABLE ONLY public.customers\n    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);", true},
		{"CONSTRAINT public.orders orders_pkey", "CONSTRAINT",
			"ALTER TABLE ONLY public.orders\n    ADD CONSTRAINT orders_pkey PRIMARY KEY (id, placed_at);", true},
		{"CONSTRAINT public.orders_2024 orders_2024_pkey", "CONSTRAINT",
			"ALTER TABLE ONLY public.orders_2024\n    ADD CONSTRAINT orders_2024_pkey PRIMARY KEY (id, placed_at);", true},
		{"INDEX public.orders_customer_idx", "INDEX",
			"CREATE INDEX orders_customer_idx ON ONLY public.orders USING btree (customer_id);", true},
		{"INDEX public.orders_2024_customer_id_idx", "INDEX",
			"CREATE INDEX orders_2024_customer_id_idx ON public.orders_2024 USING btree (customer_id);", true},
		{"INDEX Sales.Line Items_sku_idx", "INDEX",
			`CREATE INDEX "Line Items_sku_idx" ON "Sales"."Line Items" USING btree (sku) WHERE (qty > 0);`, true},
		{"INDEX ATTACH public.orders_2024_customer_id_idx", "INDEX ATTACH",
			"ALTER INDEX public.orders_customer_idx ATTACH PARTITION public.orders_2024_customer_id_idx;", false},
		{"INDEX ATTACH public.orders_2024_pkey", "INDEX ATTACH",
			"ALTER INDEX public.orders_pkey ATTACH PARTITION public.orders_2024_pkey;", false},
		{"TRIGGER public.customers customers_touch", "TRIGGER",
			"CREATE TRIGGER customers_touch BEFORE UPDATE ON public.customers FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();", false},
		{"FK CONSTRAINT public.orders orders_customer_id_fkey", "FK CONSTRAINT",
			"ALTER TABLE public.orders\n    ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id) ON DELETE CASCADE;", false},
	}
	if got, want := len(steps), len(want); got != want {
		t.Fatalf("steps = %d, want %d", got, want)
	}
	for i, w := range want {
		s := steps[i]
		t.Run(w.name, func(t *testing.T) {
			if got, want := s.Name, w.name; got != want {
				t.Errorf("name = %q, want %q", got, want)
			}
			if got, want := s.Type, w.typ; got != want {
				t.Errorf("type = %q, want %q", got, want)
			}
			if got, want := statementsOf(s.SQL), w.sql; got != want {
				t.Errorf("sql:\n got %q\nwant %q", got, want)
			}
			if got, want := s.Parallel(), w.parallel; got != want {
				t.Errorf("parallel = %t, want %t", got, want)
			}
			if strings.Contains(s.SQL, `\restrict`) || strings.Contains(s.SQL, `\unrestrict`) {
				t.Error("step keeps a psql meta-command")
			}
		})
	}
}

func TestSplitDumpWithoutEntries(t *testing.T) {
	preamble, steps := SplitDump("\\restrict abc\nSET lock_timeout = 0;\n\\unrestrict abc\n")
	if got, want := len(steps), 0; got != want {
		t.Errorf("steps = %d, want %d", got, want)
	}
	if got, want := preamble, "SET lock_timeout = 0;\n"; got != want {
		t.Errorf("preamble = %q, want %q", got, want)
	}
}

func TestSplitDumpTablespace(t *testing.T) {
	dump := `SET default_tablespace = '';

--
-- Name: a_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX a_idx ON public.a USING btree (x);


SET default_tablespace = fast;

--
-- Name: b_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX b_idx ON public.b USING btree (y);


SET default_tablespace = '';

--
-- Name: c_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX c_idx ON public.c USING btree (z);
`
	_, steps := SplitDump(dump)
	if got, want := len(steps), 3; got != want {
		t.Fatalf("steps = %d, want %d", got, want)
	}
	if strings.Contains(steps[0].SQL, "fast") {
		t.Errorf("a_idx step sets b_idx's tablespace:\n%s", steps[0].SQL)
	}
	if !strings.Contains(steps[1].SQL, "SET default_tablespace = fast;") {
		t.Errorf("b_idx step lacks its tablespace:\n%s", steps[1].SQL)
	}
}

func TestStepParallel(t *testing.T) {
	for _, tt := range []struct {
		typ  string
		want bool
	}{
		{"INDEX", true},
		{"CONSTRAINT", true},
		{"FK CONSTRAINT", false},
		{"INDEX ATTACH", false},
		{"TRIGGER", false},
		{"RULE", false},
		{"POLICY", false},
		{"STATISTICS", false},
	} {
		t.Run(tt.typ, func(t *testing.T) {
			if got, want := (Step{Type: tt.typ}).Parallel(), tt.want; got != want {
				t.Errorf("Parallel = %t, want %t", got, want)
			}
		})
	}
}

const preData = `--
-- PostgreSQL database dump
--

\restrict Qx9

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: app; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA app;


SET default_table_access_method = heap;

--
-- Name: users; Type: TABLE; Schema: app; Owner: -
--

CREATE TABLE app.users (
    id bigint NOT NULL,
    note text DEFAULT 'CREATE SCHEMA x'::text
);


--
-- PostgreSQL database dump complete
--

\unrestrict Qx9
`

func TestScript(t *testing.T) {
	got := Script(preData)
	for _, want := range []string{
		"SET statement_timeout = 0;",
		"CREATE SCHEMA IF NOT EXISTS app;",
		"CREATE TABLE app.users (\n    id bigint NOT NULL,\n    note text DEFAULT 'CREATE SCHEMA x'::text\n);",
		"SET default_table_access_method = heap;",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, `\restrict`) || strings.Contains(got, `\unrestrict`) {
		t.Errorf("script keeps a psql meta-command:\n%s", got)
	}
	if got, want := strings.Count(got, "IF NOT EXISTS"), 1; got != want {
		t.Errorf("IF NOT EXISTS added %d times, want %d", got, want)
	}
	// The statements keep their order.
	if strings.Index(got, "CREATE SCHEMA") > strings.Index(got, "CREATE TABLE") {
		t.Error("schema created after its table")
	}
}

func TestScriptKeepsBackslashLines(t *testing.T) {
	dump := `--
-- Name: latex_row(text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.latex_row(a text, b text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$SELECT a || ' & ' || b || '
\\'$$;
`
	if got := Script(dump); !strings.Contains(got, "\n\\\\'$$;") {
		t.Errorf("function body altered:\n%s", got)
	}
}

func TestSplitPassword(t *testing.T) {
	for _, tt := range []struct {
		name, dsn    string
		wantDSN, pw  string
		compareWords bool // keyword DSNs: compare the words, not the spacing
	}{
		{"url", "postgres://app:s3cret@db.example:5432/shop?sslmode=require",
			"postgres://app@db.example:5432/shop?sslmode=require", "s3cret", false},
		{"postgresql url with escaped password", "postgresql://app:p%40ss%3Aw%2Frd@db/shop",
			"postgresql://app@db/shop", "p@ss:w/rd", false},
		{"url without password", "postgres://app@db/shop", "postgres://app@db/shop", "", false},
		{"url without user", "postgres://db/shop", "postgres://db/shop", "", false},
		{"url password parameter", "postgres://app@db/shop?password=s3cret&sslmode=disable",
			"postgres://app@db/shop?sslmode=disable", "s3cret", false},
		{"keyword", "host=db user=app password=s3cret dbname=shop", "host=db user=app dbname=shop", "s3cret", true},
		{"keyword first", "password=s3cret host=db", "host=db", "s3cret", true},
		{"keyword last", "host=db password=s3cret", "host=db", "s3cret", true},
		{"keyword spaced", "host=db password = s3cret user=app", "host=db user=app", "s3cret", true},
		{"keyword quoted with spaces and quote", `host=db password='my s3cret \'pw\'' user=app`,
			"host=db user=app", "my s3cret 'pw'", true},
		{"keyword quoted backslash", `host=db password='a\\b' user=app`, "host=db user=app", `a\b`, true},
		{"keyword quoted empty", `host=db password='' user=app`, "host=db user=app", "", true},
		{"keyword without password", "host=db user=app", "host=db user=app", "", true},
		{"other key ending in password", "host=db sslpassword=k user=app", "host=db sslpassword=k user=app", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dsn, pw := SplitPassword(tt.dsn)
			if got, want := pw, tt.pw; got != want {
				t.Errorf("password = %q, want %q", got, want)
			}
			if tt.compareWords {
				dsn = strings.Join(strings.Fields(dsn), " ")
			}
			if got, want := dsn, tt.wantDSN; got != want {
				t.Errorf("dsn = %q, want %q", got, want)
			}
			if tt.pw != "" && strings.Contains(dsn, tt.pw) {
				t.Errorf("dsn %q still holds the password", dsn)
			}
		})
	}
}

func TestPatternQuote(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"public", `"public"`},
		{"Sales", `"Sales"`},
		{`we"ird`, `"we""ird"`},
		{"a*b", `"a*b"`},
	} {
		if got := patternQuote(tt.in); got != tt.want {
			t.Errorf("patternQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

package postgres

import (
	"context"
	"testing"

	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestCompactableTables checks, against a real catalog, which tables may have queued writes to
// one key folded together: only where no other unique index, exclusion constraint or firing
// trigger could see the order, in any partition, and where equal keys have equal text.
func TestCompactableTables(t *testing.T) {
	ctx := context.Background()
	_, dsn := testDB(t, "compactable", `
CREATE TABLE plain (id bigint PRIMARY KEY, v text);
CREATE TABLE composite (a int, b text, c date, PRIMARY KEY (a, b, c));
CREATE TABLE second_unique (id int PRIMARY KEY, email text UNIQUE);
CREATE TABLE money_key (amount numeric PRIMARY KEY);
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE ci_key (name text COLLATE ci PRIMARY KEY);
CREATE TABLE fired (id int PRIMARY KEY);
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER t BEFORE INSERT ON fired FOR EACH ROW EXECUTE FUNCTION noop();
ALTER TABLE fired ENABLE ALWAYS TRIGGER t;
CREATE TABLE quiet (id int PRIMARY KEY);
CREATE TRIGGER t BEFORE INSERT ON quiet FOR EACH ROW EXECUTE FUNCTION noop();
CREATE TABLE parts (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
CREATE TABLE parts_a PARTITION OF parts FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE odd_parts (id int, d date, code text, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
CREATE TABLE odd_parts_a PARTITION OF odd_parts FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE UNIQUE INDEX ON odd_parts_a (code);`)
	target, err := NewTarget(ctx, dsn, "m", "forward")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close(ctx)
	for name, want := range map[string]bool{
		"plain": true, "composite": true, "quiet": true, "parts": true,
		"second_unique": false, "money_key": false, "ci_key": false, "fired": false, "odd_parts": false,
	} {
		if got := target.compactable[cdc.TableID{Schema: "public", Name: name}]; got != want {
			t.Errorf("compactable[%s] = %v, want %v", name, got, want)
		}
	}
}

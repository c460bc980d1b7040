package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/testenv"
)

// TestWholeRowProblems finds the tables whose rows can hold an out-of-line value and whose
// replica identity is not FULL, and passes the others, on a real catalog.
func TestWholeRowProblems(t *testing.T) {
	ctx := context.Background()
	conn, _ := testDB(t, "wholerows", `
CREATE TABLE narrow (id bigint PRIMARY KEY, side varchar(8), n numeric(12,2), at timestamptz, ok boolean, u uuid);
CREATE TABLE doc (id bigint PRIMARY KEY, body jsonb, note text);
CREATE TABLE doc_full (id bigint PRIMARY KEY, body jsonb);
ALTER TABLE doc_full REPLICA IDENTITY FULL;
CREATE TABLE wide (id bigint PRIMARY KEY, a varchar(300), b varchar(300));
CREATE TABLE "Mixed Case" (id int PRIMARY KEY, raw bytea);`)
	tables, err := Tables(ctx, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	probs, err := WholeRowProblems(ctx, conn, tables)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range probs {
		got = append(got, p.Message)
	}
	all := strings.Join(got, "\n")
	if len(probs) != 3 {
		t.Fatalf("%d problems, want 3 (doc, wide, \"Mixed Case\"):\n%s", len(probs), all)
	}
	for i, want := range []string{
		`public."Mixed Case": column(s) raw can be stored out of line (TOAST)`,
		`public.doc: column(s) body, note can be stored out of line (TOAST)`,
		`public.wide: its bounded columns can together pass 2 kB`,
	} {
		if !strings.HasPrefix(got[i], want) || !strings.Contains(got[i], "REPLICA IDENTITY FULL") {
			t.Errorf("problem %d = %s\nwant it to start %q and name the statement that fixes it", i, got[i], want)
		}
	}
	// The statement it names clears the problem.
	if _, err := conn.Exec(ctx, `ALTER TABLE public.doc REPLICA IDENTITY FULL`); err != nil {
		t.Fatal(err)
	}
	if probs, err = WholeRowProblems(ctx, conn, tables); err != nil || len(probs) != 2 {
		t.Errorf("after ALTER TABLE public.doc REPLICA IDENTITY FULL: %v (%v)", probs, err)
	}
}

// testDB creates a database of the test server, runs setup in it, and returns a session on it
// and its DSN.
func testDB(t *testing.T, name, setup string) (*pgx.Conn, string) {
	t.Helper()
	pg := testenv.RequirePostgres(t)
	ctx := context.Background()
	dsn, err := pg.CreateDB(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, setup); err != nil {
		t.Fatal(err)
	}
	return conn, dsn
}

package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/testenv"
)

func TestSessionDSN(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"postgres://u@h/db", "postgres://u@h/db?application_name=migrated&options=-c%20default_transaction_read_only%3Doff", ""},
		{"postgres://u@h/db?application_name=app", "postgres://u@h/db?application_name=app&options=-c%20default_transaction_read_only%3Doff", ""},
		{"host=h dbname=db", "host=h dbname=db options='-c default_transaction_read_only=off' application_name=migrated", ""},
		{"host=h options=-cfoo=1", "", "sets options"},
	} {
		got, err := SessionDSN(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("SessionDSN(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("SessionDSN(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestFence fences a database with an application session open: the session is terminated, new
// sessions cannot write, migrated's own sessions still can, and Unfence reopens it.
func TestFence(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	ctx := context.Background()
	dsn, err := pg.CreateDB(ctx, "fence")
	if err != nil {
		t.Fatal(err)
	}
	own, err := SessionDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(dsn string) *pgx.Conn {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	admin := connect(own)
	if _, err := admin.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY); CREATE SEQUENCE s; SELECT nextval('s') FROM generate_series(1, 41)`); err != nil {
		t.Fatal(err)
	}
	app := connect(dsn)
	if _, err := app.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	pos, killed, err := Fence(ctx, admin, 5*time.Second)
	if err != nil || killed != 1 || pos == 0 {
		t.Fatalf("Fence = %s, %d killed, %v; want a position and the one application session", pos, killed, err)
	}
	if _, err := app.Exec(ctx, "INSERT INTO t VALUES (2)"); err == nil {
		t.Fatal("the application session survived the fence")
	}
	var pgErr *pgconn.PgError
	if _, err := connect(dsn).Exec(ctx, "INSERT INTO t VALUES (3)"); !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("a new application session wrote through the fence: %v", err)
	}
	if _, err := connect(own).Exec(ctx, "INSERT INTO t VALUES (4)"); err != nil {
		t.Fatalf("migrated's own session cannot write on the fenced database: %v", err)
	}
	if on, err := Fenced(ctx, admin); err != nil || !on {
		t.Fatalf("Fenced = %v, %v", on, err)
	}
	if _, _, err := Fence(ctx, admin, 5*time.Second); err != nil {
		t.Fatalf("a second Fence: %v", err)
	}
	if err := Unfence(ctx, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(dsn).Exec(ctx, "INSERT INTO t VALUES (5)"); err != nil {
		t.Fatalf("after Unfence: %v", err)
	}
	if on, _ := Fenced(ctx, admin); on {
		t.Fatal("Fenced after Unfence")
	}

	// Sequences: moved past the other side by the gap, never backwards.
	other, err := pg.CreateDB(ctx, "fence_other")
	if err != nil {
		t.Fatal(err)
	}
	to := connect(other)
	if _, err := to.Exec(ctx, `CREATE SEQUENCE s`); err != nil {
		t.Fatal(err)
	}
	set, err := SyncSequences(ctx, admin, to, 100)
	if err != nil || len(set) != 1 || set[0].To != 141 {
		t.Fatalf("SyncSequences = %+v, %v; want s set to 141", set, err)
	}
	var next int64
	if err := to.QueryRow(ctx, "SELECT nextval('s')").Scan(&next); err != nil || next != 142 {
		t.Fatalf("nextval after sync = %d, %v", next, err)
	}
	if set, err := SyncSequences(ctx, admin, to, 100); err != nil || len(set) != 0 {
		t.Fatalf("a second sync moved %+v, %v; a sequence already past must stay", set, err)
	}
}

func TestTextDSN(t *testing.T) {
	for _, dsn := range []string{"host=h dbname=db", "postgres://u@h:5432/db?sslmode=disable"} {
		s, err := SessionDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		got, err := TextDSN(s)
		if err != nil {
			t.Fatalf("TextDSN(%q): %v", s, err)
		}
		if u, err := url.QueryUnescape(got); err == nil {
			got = u
		}
		for _, want := range []string{"default_transaction_read_only=off", "TimeZone=UTC", "bytea_output=hex", "extra_float_digits=1"} {
			if !strings.Contains(got, want) {
				t.Errorf("TextDSN(%q) = %q, lacks %s", s, got, want)
			}
		}
	}
	if _, err := TextDSN("host=h"); err == nil {
		t.Error("a DSN that skipped SessionDSN was accepted")
	}
}

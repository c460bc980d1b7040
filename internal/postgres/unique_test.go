package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/migrated/migrated/internal/cdc"
)

// TestExtraUniqueKeys lists the unique indexes and constraints besides the primary key, and
// leaves out the primary keys and the plain indexes.
func TestExtraUniqueKeys(t *testing.T) {
	conn, _ := testDB(t, "extraunique", `
CREATE SCHEMA app;
CREATE TABLE app.users (id int PRIMARY KEY, email text UNIQUE, name text, nick text);
CREATE UNIQUE INDEX users_nick ON app.users (lower(nick));
CREATE INDEX users_name ON app.users (name);
CREATE TABLE public.plain (id int PRIMARY KEY, v int);
CREATE INDEX plain_v ON public.plain (v);`)
	got, err := ExtraUniqueKeys(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	want := map[cdc.TableID][]string{{Schema: "app", Name: "users"}: {"users_email_key", "users_nick"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ExtraUniqueKeys = %v, want %v", got, want)
	}
}

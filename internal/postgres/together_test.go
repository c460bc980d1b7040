package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/state"
)

// TestUpsertsTogether checks, on a real server, that a transaction's upserts into a compactable
// table land in a few multi-row statements with every value as the changes had it (NULLs, JSON,
// bytes, time with a zone, an identity column that is always generated), next to folded updates,
// deletes, a moved key, a partial update and a truncate, each followed by a new write to the
// keys they touched; that a row the target refuses in such a statement is still named exactly,
// with the transaction rolled back and the target usable after; and that a snapshot chunk's
// fresh rows go in as plain inserts, or fail whole with ErrHeld when the target holds one.
func TestUpsertsTogether(t *testing.T) {
	ctx := context.Background()
	conn, dsn := testDB(t, "together", `
CREATE TABLE items (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text,
  doc jsonb,
  at timestamptz,
  raw bytea,
  qty int CHECK (qty >= 0));
CREATE TABLE tags (id int PRIMARY KEY, v text);`)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := state.Open(ctx, pool, "m"); err != nil {
		t.Fatal(err)
	}
	tg, err := NewTarget(ctx, dsn, "m", "forward")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close(ctx)
	items := rel("items", "id*", "name", "doc", "at", "raw", "qty")
	if !tg.compactable[items.Table] {
		t.Fatal("items is not compactable; the test needs it to be")
	}
	// want is the table's expected content, each row as the text the checksum query gives.
	want := map[int]string{}
	row := func(id, qty int, name string) []cdc.Value {
		v := []cdc.Value{text(strconv.Itoa(id)), text(name), text(fmt.Sprintf(`{"n": %d, "s": "ü"}`, id)),
			text("2026-11-24 10:00:00.123456+00"), text(`\x00ff` + fmt.Sprintf("%02x", id%256)), text(strconv.Itoa(qty))}
		if id%7 == 0 {
			v[1], v[2], v[4] = nul, nul, nul
		}
		return v
	}
	expect := func(v []cdc.Value) {
		id, _ := strconv.Atoi(string(v[0].Data))
		f := make([]string, len(v))
		for i, x := range v {
			f[i] = string(x.Data)
			if x.Kind == cdc.ValueNull {
				f[i] = "<nil>"
			}
		}
		f[3] = "2026-11-24 10:00:00.123456+00"
		want[id] = fmt.Sprint(f)
	}
	var changes []*cdc.Change
	for id := 1; id <= 500; id++ {
		r := row(id, id, "item "+strconv.Itoa(id))
		changes = append(changes, &cdc.Change{Op: cdc.OpInsert, Relation: items, New: r})
		expect(r)
	}
	for id := 1; id <= 10; id++ {
		old, r := row(id, id, "item "+strconv.Itoa(id)), row(id, id+1, "updated")
		changes = append(changes, &cdc.Change{Op: cdc.OpUpdate, Relation: items, Old: old, New: r})
		expect(r)
	}
	for id := 11; id <= 20; id++ {
		changes = append(changes, &cdc.Change{Op: cdc.OpDelete, Relation: items, Old: row(id, id, "")})
		delete(want, id)
	}
	moved := row(5000, 21, "item 21")
	changes = append(changes, &cdc.Change{Op: cdc.OpUpdate, Relation: items, Old: row(21, 21, "item 21"), New: moved})
	delete(want, 21)
	expect(moved)
	// A partial update (a value left out, as PostgreSQL leaves out unchanged TOAST) frees its
	// key for a later write, which must come after it.
	partial := row(30, 31, "partial")
	partial[2] = same
	changes = append(changes, &cdc.Change{Op: cdc.OpUpdate, Relation: items, Old: row(30, 30, "item 30"), New: partial})
	again := row(30, 32, "after the partial update")
	changes = append(changes, &cdc.Change{Op: cdc.OpUpdate, Relation: items, Old: row(30, 31, "partial"), New: again})
	expect(again)
	for id := 1001; id <= 1100; id++ {
		r := row(id, 0, "late")
		changes = append(changes, &cdc.Change{Op: cdc.OpInsert, Relation: items, New: r})
		expect(r)
	}
	// A truncate between two writes of the same keys.
	tags := rel("tags", "id*", "v")
	for _, v := range []string{"first", "second"} {
		if v == "second" {
			changes = append(changes, &cdc.Change{Op: cdc.OpTruncate, Relation: tags, Truncated: []*cdc.Relation{tags}})
		}
		for id := 1; id <= 50; id++ {
			changes = append(changes, &cdc.Change{Op: cdc.OpInsert, Relation: tags, New: []cdc.Value{text(strconv.Itoa(id)), text(v)}})
		}
	}
	before := tg.statements
	if _, err := applyChanges(ctx, tg, changes); err != nil {
		t.Fatal(err)
	}
	if sent := tg.statements - before; sent > 40 {
		t.Errorf("%d changes took %d statements; upserts of one table should share statements", len(changes), sent)
	}
	check := func(when string) {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT id, name, doc::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00', raw::text, qty FROM items`)
		if err != nil {
			t.Fatal(err)
		}
		got := map[int]string{}
		for rows.Next() {
			var id, qty int
			var name, doc, raw *string
			var at string
			if err := rows.Scan(&id, &name, &doc, &at, &raw, &qty); err != nil {
				t.Fatal(err)
			}
			s := func(p *string) string {
				if p == nil {
					return "<nil>"
				}
				return *p
			}
			got[id] = fmt.Sprint([]string{strconv.Itoa(id), s(name), s(doc), at, s(raw), strconv.Itoa(qty)})
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d rows on the target, want %d", when, len(got), len(want))
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("%s: row %d = %s, want %s", when, id, got[id], w)
				return
			}
		}
	}
	check("after the first transaction")
	var tagged, all int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE v = 'second'), count(*) FROM tags`).Scan(&tagged, &all); err != nil || tagged != 50 || all != 50 {
		t.Errorf("tags after the truncate: %d rows, %d of the second write (%v); want 50, all of it", all, tagged, err)
	}

	// A refused row in the middle of a multi-row statement is named, whatever its neighbours.
	for _, tt := range []struct {
		name, qty, code string
	}{
		{"check constraint", "-1", "23514"},
		{"bad value", "many", "22P02"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var bad []*cdc.Change
			for id := 2001; id <= 2300; id++ {
				r := row(id, 1, "bad batch")
				if id == 2150 {
					r[5] = text(tt.qty)
				}
				bad = append(bad, &cdc.Change{Op: cdc.OpInsert, Relation: items, New: r})
			}
			x, err := applyChanges(ctx, tg, bad)
			if err == nil {
				t.Fatal("the transaction committed")
			}
			x.Rollback(ctx)
			var ce *apply.ChangeError
			if !errors.As(err, &ce) || apply.IsTransient(err) {
				t.Fatalf("error %v is not a permanent ChangeError", err)
			}
			if ce.Key != "id=2150" || ce.SQLState != tt.code {
				t.Errorf("error names key %q with SQLSTATE %s, want id=2150 and %s: %v", ce.Key, ce.SQLState, tt.code, err)
			}
		})
	}
	check("after the refused transactions")
	// The session is still good for the next transaction.
	r := row(3000, 3, "after")
	if _, err := applyChanges(ctx, tg, []*cdc.Change{{Op: cdc.OpInsert, Relation: items, New: r}}); err != nil {
		t.Fatal(err)
	}
	expect(r)
	check("after the next transaction")

	// A snapshot chunk's rows go in as plain inserts, many to a statement; a row already there
	// fails the transaction whole with ErrHeld, for the chunk to be written again as upserts.
	fresh := func(from, to int, edit func(id int, r []cdc.Value)) ([]cdc.Change, error) {
		x, err := tg.BeginFresh(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rows []cdc.Change
		for id := from; id <= to; id++ {
			r := row(id, 1, "chunk")
			if edit != nil {
				edit(id, r)
			}
			rows = append(rows, cdc.Change{Op: cdc.OpInsert, Relation: items, New: r})
			if err := x.Add(ctx, &rows[len(rows)-1]); err != nil {
				x.Rollback(ctx)
				return rows, err
			}
		}
		if err := x.Commit(ctx, nil, time.Time{}); err != nil {
			x.Rollback(ctx)
			return rows, err
		}
		return rows, nil
	}
	before = tg.statements
	rows, err := fresh(4001, 4300, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sent := tg.statements - before; sent > 8 {
		t.Errorf("a chunk of %d fresh rows took %d statements", len(rows), sent)
	}
	for _, c := range rows {
		expect(c.New)
	}
	check("after a chunk of fresh rows")
	if _, err := fresh(4201, 4500, nil); !errors.Is(err, apply.ErrHeld) || apply.IsTransient(err) {
		t.Fatalf("a chunk over rows the target holds: error %v, want ErrHeld", err)
	}
	check("after a chunk refused for a row held")
	_, err = fresh(5001, 5300, func(id int, r []cdc.Value) {
		if id == 5222 {
			r[5] = text("-5")
		}
	})
	var ce *apply.ChangeError
	if !errors.As(err, &ce) || ce.Key != "id=5222" {
		t.Fatalf("a chunk with a refused row: error %v, want a ChangeError naming id=5222", err)
	}
	check("after a chunk with a refused row")
}

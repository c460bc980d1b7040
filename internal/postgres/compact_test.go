package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/cdc"
)

// queued runs changes through statements and queue, and renders the pipeline as
// "OP key=..." items in order.
func queued(t *testing.T, compactable bool, changes ...*cdc.Change) string {
	t.Helper()
	x := &targetTxn{t: &Target{compactable: map[cdc.TableID]bool{}}, last: map[string]int{}}
	for _, c := range changes {
		if compactable && c.Relation != nil {
			x.t.compactable[c.Relation.Table] = true
		}
		stmts, err := statements(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			verb, _, _ := strings.Cut(s.sql, " ")
			x.queue(c, s, pendingStmt{sd: &pgconn.StatementDescription{Name: verb}, args: s.args, change: c})
		}
	}
	var out []string
	for _, p := range x.pending {
		var vals []string
		for _, a := range p.args {
			vals = append(vals, string(a))
		}
		out = append(out, p.sd.Name+"("+strings.Join(vals, ",")+")")
	}
	return strings.Join(out, " ")
}

func TestQueueFoldsWritesToOneRow(t *testing.T) {
	acct := rel("acct", "id*", "bal", "doc")
	ins := func(id, bal string) *cdc.Change {
		return &cdc.Change{Op: cdc.OpInsert, Relation: acct, New: []cdc.Value{text(id), text(bal), text("d")}}
	}
	upd := func(id, bal string) *cdc.Change {
		return &cdc.Change{Op: cdc.OpUpdate, Relation: acct, New: []cdc.Value{text(id), text(bal), text("d")}}
	}
	partial := func(id, bal string) *cdc.Change {
		return &cdc.Change{Op: cdc.OpUpdate, Relation: acct, New: []cdc.Value{text(id), text(bal), same}}
	}
	move := func(from, to string) *cdc.Change { // key change carrying an unchanged TOAST value
		return &cdc.Change{Op: cdc.OpUpdate, Relation: acct, Old: []cdc.Value{text(from), {Kind: cdc.ValueNull}, {Kind: cdc.ValueNull}},
			New: []cdc.Value{text(to), text("0"), same}}
	}
	del := func(id string) *cdc.Change {
		return &cdc.Change{Op: cdc.OpDelete, Relation: acct, Old: []cdc.Value{text(id), {Kind: cdc.ValueNull}, {Kind: cdc.ValueNull}}}
	}
	trunc := &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{acct}}

	for _, tt := range []struct {
		name        string
		compactable bool
		changes     []*cdc.Change
		want        string
	}{
		{"hot row written once, in its first place", true,
			[]*cdc.Change{upd("1", "10"), upd("2", "5"), upd("1", "11"), upd("1", "12")},
			"INSERT(1,12,d) INSERT(2,5,d)"},
		{"not compactable keeps every write", false,
			[]*cdc.Change{upd("1", "10"), upd("1", "11")},
			"INSERT(1,10,d) INSERT(1,11,d)"},
		{"delete replaces the queued upsert", true,
			[]*cdc.Change{ins("1", "1"), ins("2", "2"), del("1")},
			"DELETE(1) INSERT(2,2,d)"},
		{"reinsert after delete", true,
			[]*cdc.Change{ins("1", "1"), del("1"), ins("1", "3")},
			"INSERT(1,3,d)"},
		{"partial update is never folded and ends folding for its row", true,
			[]*cdc.Change{upd("1", "10"), partial("1", "11"), upd("1", "12")},
			"INSERT(1,10,d) UPDATE(11,1) INSERT(1,12,d)"},
		{"partial key change ends folding for both keys", true,
			[]*cdc.Change{ins("2", "7"), del("2"), move("1", "2"), upd("2", "9")},
			"DELETE(2) UPDATE(2,0,1) INSERT(2,9,d)"},
		{"truncate ends folding", true,
			[]*cdc.Change{upd("1", "10"), trunc, upd("1", "11")},
			`INSERT(1,10,d) TRUNCATE() INSERT(1,11,d)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := queued(t, tt.compactable, tt.changes...); got != tt.want {
				t.Errorf("pipeline:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

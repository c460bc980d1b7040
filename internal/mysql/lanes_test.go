package mysql

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
	"github.com/migrated/migrated/internal/testenv"
)

// TestTargetLanes applies random batches on four sessions: the folded rows of kv spread over
// them by key, the changes of u (a unique key besides the row key, so not foldable) in order on
// the main one, and a truncate of kv in the middle of a batch. The target must end as applying
// the changes one by one would leave it, and every lane must have written rows.
func TestTargetLanes(t *testing.T) {
	f := newTargetFixture(t, "tgt_lanes", kvDDL,
		"CREATE TABLE u (id int NOT NULL, email varchar(40) NOT NULL, PRIMARY KEY (id), UNIQUE KEY (email))")
	f.target = f.newTarget(t, 4)
	if len(f.target.out) != 5 {
		t.Fatalf("%d sessions, want the main one and 4 lanes", len(f.target.out))
	}
	kv, u := f.rel(t, "kv"), f.rel(t, "u")
	if !f.target.foldable[kv.Table] || f.target.foldable[u.Table] {
		t.Fatalf("foldable = %v: want kv and not u", f.target.foldable)
	}
	uRow := func(op cdc.Op, id int, email string) *cdc.Change {
		c := &cdc.Change{Op: op, Relation: u}
		if op == cdc.OpDelete {
			c.Old = textValues(strconv.Itoa(id), email)
		} else {
			c.New = textValues(strconv.Itoa(id), email)
		}
		return c
	}
	r := rand.New(rand.NewPCG(3, 4))
	model := map[int]string{}
	for b := range 4 {
		batch := kvWorkload(r, kv, model, 2000, 500)
		if b == 2 {
			batch = append(batch, &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{kv}})
			clear(model)
			batch = append(batch, kvWorkload(r, kv, model, 1000, 500)...)
		}
		// Two rows of u swap their unique emails: only their order makes it possible.
		swap := []*cdc.Change{
			uRow(cdc.OpInsert, 2*b, fmt.Sprint("a", b)), uRow(cdc.OpInsert, 2*b+1, fmt.Sprint("b", b)),
			uRow(cdc.OpUpdate, 2*b, fmt.Sprint("c", b)), uRow(cdc.OpUpdate, 2*b+1, fmt.Sprint("a", b)),
		}
		for i, c := range swap {
			at := len(batch) * (i + 1) / (len(swap) + 1)
			batch = slices.Insert(batch, at, c)
		}
		pos := fmt.Sprint("0-1-", b+1)
		if err := f.apply(t, pos, batch...); err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		if got, want := f.kvRows(t), modelRows(model); !slices.Equal(got, want) {
			t.Fatalf("batch %d: kv has %d rows, applying one by one leaves %d", b, len(got), len(want))
		}
		if got, _, _, err := ReadPosition(f.dstConn, f.migration, "forward"); err != nil || got != pos {
			t.Fatalf("batch %d: position %q (%v), want %s", b, got, err, pos)
		}
	}
	var wantU []string
	for b := range 4 {
		wantU = append(wantU, fmt.Sprintf("%q %q", strconv.Itoa(2*b), fmt.Sprint("c", b)), fmt.Sprintf("%q %q", strconv.Itoa(2*b+1), fmt.Sprint("a", b)))
	}
	if got := f.dump(t, "SELECT id, email FROM u ORDER BY id"); !slices.Equal(got, wantU) {
		t.Errorf("u = %q, want %q", got, wantU)
	}
	for i, o := range f.target.out[1:] {
		rows, err := QueryStrings(o.s.conn, "SHOW SESSION STATUS LIKE 'Com_insert'")
		if err != nil || len(rows) != 1 {
			t.Fatalf("lane %d: %v", i, err)
		}
		if n, _ := strconv.Atoi(*rows[0][1]); n == 0 {
			t.Errorf("lane %d wrote no rows", i)
		}
	}
}

// TestTargetLanesRounds sends the folded rows every 40 keys, so that one transaction writes
// each lane in many rounds, a key moves between lanes across rounds, and a truncate comes after
// rounds already committed on the lanes: the target must still end as the changes applied one by
// one leave it.
func TestTargetLanesRounds(t *testing.T) {
	defer func(n int) { maxFolded = n }(maxFolded)
	maxFolded = 40
	f := newTargetFixture(t, "tgt_lanes_rounds", kvDDL)
	f.target = f.newTarget(t, 3)
	kv := f.rel(t, "kv")
	r := rand.New(rand.NewPCG(5, 6))
	model := map[int]string{}
	for b := range 3 {
		batch := kvWorkload(r, kv, model, 1500, 120)
		if b == 1 {
			batch = append(batch, &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{kv}})
			clear(model)
			batch = append(batch, kvWorkload(r, kv, model, 500, 120)...)
		}
		if err := f.apply(t, fmt.Sprint("0-1-", b+1), batch...); err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		if got, want := f.kvRows(t), modelRows(model); !slices.Equal(got, want) {
			t.Fatalf("batch %d: kv has %d rows, applying one by one leaves %d", b, len(got), len(want))
		}
	}

	// A send that fails in the middle of a transaction fails it for good: the rows it cleared
	// never landed, so no checkpoint may follow.
	txn, err := f.target.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	nullV := kvChange(kv, cdc.OpInsert, "5000", "")
	nullV.New[1] = cdc.Value{Kind: cdc.ValueNull}
	changes := append([]*cdc.Change{nullV}, kvInserts(kv, map[int]string{}, "x", laneKeys(60, 3, 1))...)
	var addErr error
	for _, c := range changes {
		if addErr = txn.Add(f.ctx, c); addErr != nil {
			break
		}
	}
	if addErr == nil {
		t.Fatal("a refused row in a mid-transaction send was not reported")
	}
	if err := txn.Commit(f.ctx, fakePos("0-1-9"), time.Now()); err == nil {
		t.Error("a transaction whose send failed committed")
	}
	txn.Rollback(f.ctx)
	if pos, _, _, _ := ReadPosition(f.dstConn, f.migration, "forward"); pos != "0-1-3" {
		t.Errorf("position = %q, want 0-1-3", pos)
	}
}

// laneKeys returns n kv keys from 1000 up that the fold sends to lane (1 to lanes).
func laneKeys(n, lanes, lane int) []int {
	var keys []int
	for k := 1000; len(keys) < n; k++ {
		if 1+laneOf(foldKey(textValues(strconv.Itoa(k)), []int{0}), lanes) == lane {
			keys = append(keys, k)
		}
	}
	return keys
}

// kvInserts returns inserts of keys into kv, valued by prefix and position, and records them
// in model.
func kvInserts(kv *cdc.Relation, model map[int]string, prefix string, keys []int) []*cdc.Change {
	var out []*cdc.Change
	for i, k := range keys {
		v := fmt.Sprint(prefix, i)
		model[k] = v
		out = append(out, kvChange(kv, cdc.OpInsert, strconv.Itoa(k), v))
	}
	return out
}

// TestTargetLanesFailures checks the failures of a batch spread over lanes: the checkpoint
// never moves past rows that are not durable, and applying again from it, grouped differently,
// converges whatever the lanes had committed.
func TestTargetLanesFailures(t *testing.T) {
	f := newTargetFixture(t, "tgt_lanes_fail", kvDDL)
	f.target = f.newTarget(t, 3)
	kv := f.rel(t, "kv")
	if err := f.apply(t, "0-1-1", kvChange(kv, cdc.OpInsert, "1", "a")); err != nil {
		t.Fatal(err)
	}
	checkpoint := func(want string) {
		t.Helper()
		if pos, _, _, _ := ReadPosition(f.dstConn, f.migration, "forward"); pos != want {
			t.Errorf("position = %q, want %s", pos, want)
		}
	}

	top := t                        // sessions opened in a subtest outlive it
	model := map[int]string{1: "a"} // what applying one change at a time leaves, across the subtests
	t.Run("a row refused on one lane", func(t *testing.T) {
		var batch []*cdc.Change
		for lane := 1; lane <= 3; lane++ {
			batch = append(batch, kvInserts(kv, model, fmt.Sprint("lane", lane, "-"), laneKeys(40, 3, lane))...)
		}
		bad := laneKeys(41, 3, 2)[40]
		nullV := kvChange(kv, cdc.OpInsert, strconv.Itoa(bad), "")
		nullV.New[1] = cdc.Value{Kind: cdc.ValueNull}
		err := f.apply(t, "0-1-2", append(batch, nullV)...)
		var ce *apply.ChangeError
		if !errors.As(err, &ce) || ce.Key != "id="+strconv.Itoa(bad) || ce.SQLState != "23000" {
			t.Fatalf("err = %v, want the NOT NULL violation of id=%d", err, bad)
		}
		checkpoint("0-1-1")
		for _, k := range laneKeys(40, 3, 2) {
			if got := f.dump(t, "SELECT count(*) FROM kv WHERE id = "+strconv.Itoa(k)); got[0] != `"0"` {
				t.Fatalf("row %d of the refused lane's rolled-back round is on the target", k)
			}
		}
		// The same sessions go on; the batch without the refused row converges.
		if err := f.apply(t, "0-1-2", batch...); err != nil {
			t.Fatal(err)
		}
		if got, want := f.kvRows(t), modelRows(model); !slices.Equal(got, want) {
			t.Errorf("kv has %d rows, want %d", len(got), len(want))
		}
		checkpoint("0-1-2")
	})

	t.Run("main session killed after the lanes committed", func(t *testing.T) {
		before := len(model)
		batch := kvInserts(kv, model, "killed-", laneKeys(300, 3, 1))
		batch = append(batch, kvInserts(kv, model, "killed-", laneKeys(300, 3, 3))...)
		id, _, err := QueryString(f.target.conn, "SELECT CONNECTION_ID()")
		if err != nil {
			t.Fatal(err)
		}
		txn, err := f.target.Begin(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range batch {
			if err := txn.Add(f.ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.dstConn.Execute("KILL CONNECTION " + id); err != nil {
			t.Fatal(err)
		}
		if err := txn.Commit(f.ctx, fakePos("0-1-3"), time.Now()); err == nil {
			t.Fatal("the commit on a killed main session succeeded")
		}
		txn.Rollback(f.ctx)
		checkpoint("0-1-2")
		if got := len(f.kvRows(t)); got != len(model) {
			t.Errorf("kv has %d rows: the lanes committed %d ahead of the checkpoint, want %d", got, got-before, len(model)-before)
		}
		// A restart applies from the checkpoint again, in two smaller batches.
		f.target = f.newTarget(top, 3)
		half := len(batch) / 2
		if err := f.apply(t, "0-1-2a", batch[:half]...); err != nil {
			t.Fatal(err)
		}
		if err := f.apply(t, "0-1-3", batch[half:]...); err != nil {
			t.Fatal(err)
		}
		if got, want := f.kvRows(t), modelRows(model); !slices.Equal(got, want) {
			t.Errorf("after the replay kv has %d rows, want %d", len(got), len(want))
		}
		checkpoint("0-1-3")
	})

	t.Run("a lane's lock wait times out and the round is tried again", func(t *testing.T) {
		k := laneKeys(1, 3, 2)[0]
		holder := dialTestDB(t, testenv.RequireMariaDB(t), f.dst)
		for _, q := range []string{"START TRANSACTION", fmt.Sprintf("SELECT * FROM kv WHERE id = %d FOR UPDATE", k)} {
			if _, err := holder.Execute(q); err != nil {
				t.Fatal(err)
			}
		}
		for _, o := range f.target.out[1:] {
			if err := o.s.exec(f.ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
				t.Fatal(err)
			}
		}
		released := make(chan struct{})
		go func() {
			defer close(released)
			time.Sleep(2 * time.Second) // two lock waits of the lane's five tries
			holder.Execute("ROLLBACK")
		}()
		err := f.apply(t, "0-1-4", kvChange(kv, cdc.OpUpdate, strconv.Itoa(k), "after the wait"))
		<-released
		if err != nil {
			t.Fatalf("the lane gave up on a lock wait: %v", err)
		}
		if got := f.dump(t, fmt.Sprintf("SELECT v FROM kv WHERE id = %d", k)); !slices.Equal(got, []string{`"after the wait"`}) {
			t.Errorf("row %d = %q", k, got)
		}
		checkpoint("0-1-4")
	})
}

package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestDemo runs the whole demo on a small dataset: two clusters, the writer, the daemon, the
// online verify, a cutover and a rollback that the writer follows through the routing hook, the
// catch-up and the independent verification. No acknowledged write may be lost on either side
// and every table must match.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the end-to-end demo in -short mode: it starts two PostgreSQL clusters")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out syncBuffer
	rep, err := Run(ctx, Options{SizeMB: 5, Stream: 2 * time.Second, DualWrite: 2 * time.Second, Out: &out})
	if errors.Is(err, ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("demo: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	checkDemo(t, rep, out.String())
}

// TestDemoMariaDB runs the MariaDB demo the way TestDemo runs PostgreSQL's: two servers of its
// own, the writer as an application account that the fence stops, and the same checks.
func TestDemoMariaDB(t *testing.T) {
	testenv.SkipIfShort(t)
	if os.Getenv(testenv.MariaDBURLEnv) != "" {
		t.Skipf("skipping: the MariaDB demo starts two servers of its own, and %s names one", testenv.MariaDBURLEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out syncBuffer
	rep, err := Run(ctx, Options{Engine: EngineMySQL, SizeMB: 5, Stream: 2 * time.Second, DualWrite: 2 * time.Second, Out: &out})
	if errors.Is(err, testenv.ErrNotInstalled) {
		testenv.SkipOrFail(t, err)
	}
	if err != nil {
		t.Fatalf("demo: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	checkDemo(t, rep, out.String())
	if !strings.Contains(out.String(), "starting two throwaway MariaDB servers") {
		t.Error("the output does not say it starts MariaDB servers")
	}
}

// checkDemo checks the report of a demo run on 6 tables, and its output: the verify, the
// cutover and the rollback done, every acknowledged write on both sides, every table equal.
func checkDemo(t *testing.T, rep *Report, out string) {
	t.Helper()
	if got, want := rep.WritesLost, 0; got != want {
		t.Errorf("writes lost = %d, want %d; missing on the target: %v, on the source: %v", got, want, rep.MissingOnTarget, rep.MissingOnSource)
	}
	if len(rep.MissingOnTarget) != 0 || len(rep.MissingOnSource) != 0 {
		t.Errorf("acknowledged writes missing: on the target %v, on the source %v", rep.MissingOnTarget, rep.MissingOnSource)
	}
	if len(rep.Mismatched) != 0 {
		t.Errorf("verify found mismatched tables: %v", rep.Mismatched)
	}
	if got, want := len(rep.Tables), 6; got != want {
		t.Errorf("verified %d tables, want %d", got, want)
	}
	if rep.WritesAcked == 0 || rep.KeysChecked == 0 {
		t.Errorf("the writer had %d writes acknowledged and %d keys checked; want some", rep.WritesAcked, rep.KeysChecked)
	}
	if rep.ChangesStreamed == 0 {
		t.Error("no changes were streamed")
	}

	if v := rep.Verify; !v.Ran || !v.Clean || v.Chunks == 0 || v.Tables != 6 {
		t.Errorf("online verify = %+v, want a clean run over 6 tables", v)
	}
	for _, s := range []struct {
		name string
		res  SwitchResult
	}{{"cutover", rep.Cutover}, {"rollback", rep.Rollback}} {
		if got, want := s.res.Outcome, "done"; got != want {
			t.Errorf("%s outcome = %q (%s), want %q", s.name, got, s.res.Error, want)
		}
		if s.res.WriteUnavailable <= 0 {
			t.Errorf("%s write-unavailable = %s, want > 0", s.name, s.res.WriteUnavailable)
		}
		if s.res.LongestGap <= 0 {
			t.Errorf("%s: the writer's longest gap = %s, want > 0", s.name, s.res.LongestGap)
		}
	}
	if got, want := strings.Join(rep.Routes, ","), "target,source"; got != want {
		t.Errorf("routes = %q, want %q", got, want)
	}
	if rep.WritesOnTarget == 0 || rep.WritesOnSource == 0 {
		t.Errorf("writes acknowledged: %d on the source, %d on the target; want some on each", rep.WritesOnSource, rep.WritesOnTarget)
	}
	if got, want := rep.WritesOnSource+rep.WritesOnTarget, rep.WritesAcked; got != want {
		t.Errorf("writes by side sum to %d, want %d", got, want)
	}
	if rep.ReverseChanges == 0 {
		t.Error("the reverse stream applied nothing to the source")
	}

	for _, want := range []string{"writes lost        0", "verify             clean", "migrated verify    clean",
		"cutover            writes unavailable", "rollback           writes unavailable", "dual-write", "on the target"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if rep.Err() != nil || !rep.OK() {
		t.Errorf("Report.Err() = %v, want nil", rep.Err())
	}
}

// TestReportErr checks that the report fails for a verify that is not clean, naming the rows,
// and for a lost write, and passes only with everything in order.
func TestReportErr(t *testing.T) {
	done := SwitchResult{Outcome: "done"}
	ok := Report{Verify: VerifyResult{Ran: true, Clean: true}, Cutover: done, Rollback: done}
	for _, tc := range []struct {
		name string
		edit func(r *Report)
		want string // in the error; empty for none
	}{
		{"ok", func(*Report) {}, ""},
		{"dirty verify", func(r *Report) {
			r.Verify = VerifyResult{Ran: true, Chunks: 9, Mismatched: 1, Samples: []server.Mismatch{{Table: "public.orders", Key: "(7)", Kind: "different"}}}
			r.Cutover, r.Rollback = SwitchResult{}, SwitchResult{}
		}, "different public.orders (7)"},
		{"no verify", func(r *Report) { r.Verify = VerifyResult{} }, "did not run"},
		{"aborted cutover", func(r *Report) {
			r.Cutover, r.Rollback = SwitchResult{Outcome: "aborted", Error: "drain timed out"}, SwitchResult{}
		}, "cutover was aborted: drain timed out"},
		{"lost on source", func(r *Report) {
			r.WritesLost, r.MissingOnSource = 1, map[string][]string{"orders": {"3"}}
		}, "on the source: orders 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			err := r.Err()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Err() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Err() = %v, want one naming %q", err, tc.want)
			}
			if got, want := r.OK(), tc.want == ""; got != want {
				t.Errorf("OK() = %v, want %v", got, want)
			}
		})
	}
}

// TestLedger checks which acknowledged keys must be on the target.
func TestLedger(t *testing.T) {
	l := NewLedger()
	l.Commit(SideSource, []Key{{"orders", "1"}, {"order_items", "1/1"}, {"order_items", "1/2"}}, nil)
	l.Commit(SideSource, []Key{{"orders", "2"}, {"order_items", "2/1"}, {"order_items", "2/2"}}, nil)
	l.Commit(SideTarget, nil, []Key{{"orders", "1"}}) // cascades to its items
	l.Forget([]Key{{"order_items", "2/2"}})           // a delete whose commit was not acknowledged
	l.Commit(SideTarget, []Key{{"orders", "1"}}, nil) // an update recorded after the delete stays excluded
	live, excluded := l.Live()
	if got, want := excluded, 4; got != want {
		t.Errorf("excluded = %d, want %d", got, want)
	}
	if got, want := strings.Join(live["orders"], ","), "2"; got != want {
		t.Errorf("live orders = %q, want %q", got, want)
	}
	if got, want := strings.Join(live["order_items"], ","), "2/1"; got != want {
		t.Errorf("live order items = %q, want %q", got, want)
	}
	if writes, txns := l.Stats(); writes != 8 || txns != 4 {
		t.Errorf("stats = %d writes, %d txns; want 8, 4", writes, txns)
	}
	if src, dst := l.Acked(SideSource), l.Acked(SideTarget); src != 6 || dst != 2 {
		t.Errorf("acked = %d on the source, %d on the target; want 6, 2", src, dst)
	}
}

func TestGeneratedCustomer(t *testing.T) {
	// SELECT md5('c' || 1)::uuid
	if got, want := generatedCustomer(1), "a9f7e97965d6cf799a529102a973b8b9"; strings.ReplaceAll(got, "-", "") != want {
		t.Errorf("generatedCustomer(1) = %s, want %s", got, want)
	}
}

// TestVerifyDetectsLoss proves that the checks can fail: a row missing on the target is reported
// as a lost write and its table as mismatched.
func TestVerifyDetectsLoss(t *testing.T) {
	pg := testenv.RequirePostgres(t)
	ctx := context.Background()
	var dsns [2]string
	for i, name := range []string{"verify_src", "verify_dst"} {
		dsn, err := pg.CreateDB(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows := 3 - i // the target lacks order 3
		if _, err := conn.Exec(ctx, schemaSQL+fmt.Sprintf(`
			INSERT INTO customers (id, name, email, country, created_at) VALUES (md5('c1')::uuid, 'Zoë', 'z@example.com', 'DE', '2025-01-01');
			INSERT INTO orders (id, customer_id, placed_at) OVERRIDING SYSTEM VALUE SELECT g, md5('c1')::uuid, '2025-01-01' FROM generate_series(1, %d) g;`, rows)); err != nil {
			t.Fatal(err)
		}
		dsns[i] = dsn
	}
	results, err := compareTables(ctx, dsns[0], dsns[1], func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if got, want := r.Equal, r.Table != "public.orders"; got != want {
			t.Errorf("%s: equal = %v, want %v (source %d rows, target %d)", r.Table, got, want, r.SourceRows, r.TargetRows)
		}
	}
	live := map[string][]string{"orders": {"1", "2", "3"}, "customers": {generatedCustomer(1)}}
	missing, err := missingKeys(ctx, SideTarget, dsns[1], live)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(missing), "map[orders:[3]]"; got != want {
		t.Errorf("missing = %s, want %s", got, want)
	}
}

// TestVerifyDetectsLossMariaDB is TestVerifyDetectsLoss for the MariaDB checks: an order missing
// on the target is a lost write, and its table differs; so does a value changed on one side.
func TestVerifyDetectsLossMariaDB(t *testing.T) {
	m := testenv.RequireMariaDB(t)
	ctx := context.Background()
	var conns [2]*client.Conn
	for i, db := range []string{"verify_src", "verify_dst"} {
		if err := m.CreateDB(ctx, db); err != nil {
			t.Fatal(err)
		}
		c, err := client.Connect(m.Addr(), m.User(), m.Password(), db)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		qs := append([]string{}, mySchema...)
		qs = append(qs, "INSERT INTO customers (id, name, email, country, prefs, created_at) VALUES (1, 'Zoë', 'z@example.com', 'DE', '{}', '2025-01-01')",
			"INSERT INTO orders (id, customer_id, placed_at) VALUES (1, 1, '2025-01-01'), (2, 1, '2025-01-01')")
		if i == 0 { // the target lacks order 3
			qs = append(qs, "INSERT INTO orders (id, customer_id, placed_at) VALUES (3, 1, '2025-01-01')")
		}
		qs = append(qs, "INSERT INTO order_items VALUES (1, 1, 1, 1, 9.99), (1, 2, 1, 1, "+[]string{"1.00", "2.00"}[i]+")")
		for _, q := range qs {
			if _, err := c.Execute(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		conns[i] = c
	}
	results, err := compareMyTables(ctx, conns[0], conns[1], func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(results), 6; got != want {
		t.Fatalf("compared %d tables, want %d", got, want)
	}
	for _, r := range results {
		different := r.Table == "verify_src.orders" || r.Table == "verify_src.order_items"
		if got, want := r.Equal, !different; got != want {
			t.Errorf("%s: equal = %v, want %v (source %d rows, target %d)", r.Table, got, want, r.SourceRows, r.TargetRows)
		}
	}
	live := map[string][]string{"orders": {"1", "2", "3"}, "customers": {"1"}, "order_items": {"1/1", "1/2", "2/1"}}
	missing, err := missingMyKeys(conns[1], SideTarget, live)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(missing), "map[order_items:[2/1] orders:[3]]"; got != want {
		t.Errorf("missing = %s, want %s", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the demo's concurrent progress output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestDemo runs the whole demo on a small dataset: two clusters, the writer, the daemon, the
// catch-up and the independent verification. No acknowledged write may be lost and every table
// must match.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the end-to-end demo in -short mode: it starts two PostgreSQL clusters")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out syncBuffer
	rep, err := Run(ctx, Options{SizeMB: 5, Stream: 2 * time.Second, Out: &out})
	if errors.Is(err, ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("demo: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	if got, want := rep.WritesLost, 0; got != want {
		t.Errorf("writes lost = %d, want %d; missing: %v", got, want, rep.Missing)
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
	for _, want := range []string{"writes lost        0", "verify             clean", "cutover"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if rep.Err() != nil {
		t.Errorf("Report.Err() = %v, want nil", rep.Err())
	}
}

// TestLedger checks which acknowledged keys must be on the target.
func TestLedger(t *testing.T) {
	l := NewLedger()
	l.Commit([]Key{{"orders", "1"}, {"order_items", "1/1"}, {"order_items", "1/2"}}, nil)
	l.Commit([]Key{{"orders", "2"}, {"order_items", "2/1"}, {"order_items", "2/2"}}, nil)
	l.Commit(nil, []Key{{"orders", "1"}}) // cascades to its items
	l.Commit(nil, []Key{{"order_items", "2/2"}})
	l.Commit([]Key{{"orders", "1"}}, nil) // an update recorded after the delete stays excluded
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
	if writes, txns := l.Stats(); writes != 9 || txns != 5 {
		t.Errorf("stats = %d writes, %d txns; want 9, 5", writes, txns)
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
	missing, err := missingKeys(ctx, dsns[1], live)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(missing), "map[orders:[3]]"; got != want {
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

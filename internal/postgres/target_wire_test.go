package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/migrated/migrated/internal/apply"
	"github.com/migrated/migrated/internal/cdc"
)

// fakeBackend speaks just enough of the PostgreSQL wire protocol over an in-memory pipe for a
// Target: startup, simple queries, Parse/Describe/Bind/Execute/Sync. It records each statement
// executed as "sql | arg, arg" and answers through the functions below.
type fakeBackend struct {
	// parse, when set, answers a Parse: an error to send, or drop to close the connection.
	parse func(sql string) (errCode string, drop bool)
	// exec, when set, answers an Execute or a simple query the same way.
	exec func(sql string, args []string) (errCode string, drop bool)

	mu  sync.Mutex
	log []string
}

func (b *fakeBackend) executed() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.log...)
}

var placeholder = regexp.MustCompile(`\$(\d+)`)

func (b *fakeBackend) serve(conn net.Conn) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	stmts := map[string]string{}
	var portalSQL string
	var portalArgs []string
	failed := false // an error skips the rest of the extended-protocol messages up to Sync
	fail := func(code string) {
		be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: "fake " + code})
		failed = true
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			b.record(m.String, nil)
			if code, drop := b.answer(b.exec, m.String, nil); drop {
				return
			} else if code != "" {
				be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: "fake " + code})
			} else {
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte(strings.Fields(m.String)[0])})
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'T'})
			if be.Flush() != nil {
				return
			}
		case *pgproto3.Parse:
			if failed {
				continue
			}
			if code, drop := b.answer(func(s string, _ []string) (string, bool) {
				if b.parse == nil {
					return "", false
				}
				return b.parse(s)
			}, m.Query, nil); drop {
				return
			} else if code != "" {
				fail(code)
				continue
			}
			stmts[m.Name] = m.Query
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Describe:
			if failed {
				continue
			}
			if m.ObjectType == 'S' {
				be.Send(&pgproto3.ParameterDescription{ParameterOIDs: paramOIDs(stmts[m.Name])})
			}
			be.Send(&pgproto3.NoData{})
		case *pgproto3.Bind:
			if failed {
				continue
			}
			portalSQL, portalArgs = stmts[m.PreparedStatement], nil
			for _, p := range m.Parameters {
				if p == nil {
					portalArgs = append(portalArgs, "NULL")
				} else {
					portalArgs = append(portalArgs, strconv.Quote(string(p)))
				}
			}
			be.Send(&pgproto3.BindComplete{})
		case *pgproto3.Execute:
			if failed {
				continue
			}
			b.record(portalSQL, portalArgs)
			if code, drop := b.answer(b.exec, portalSQL, portalArgs); drop {
				return
			} else if code != "" {
				fail(code)
				continue
			}
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte(strings.Fields(portalSQL)[0] + " 1")})
		case *pgproto3.Sync:
			status := byte('T')
			if failed {
				status = 'E'
			}
			failed = false
			be.Send(&pgproto3.ReadyForQuery{TxStatus: status})
			if be.Flush() != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

func (b *fakeBackend) answer(f func(string, []string) (string, bool), sql string, args []string) (string, bool) {
	if f == nil {
		return "", false
	}
	return f(sql, args)
}

func (b *fakeBackend) record(sql string, args []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log = append(b.log, strings.TrimSpace(strings.Join(append([]string{short(sql), "|"}, args...), " ")))
}

// short names a statement by its first words, e.g. "INSERT INTO public.items".
func short(sql string) string {
	w := strings.Fields(sql)
	if len(w) > 3 {
		w = w[:3]
	}
	return strings.ReplaceAll(strings.Join(w, " "), `"`, "")
}

// paramOIDs types each parameter as text, except the checkpoint's commit time.
func paramOIDs(sql string) []uint32 {
	n := 0
	for _, m := range placeholder.FindAllStringSubmatch(sql, -1) {
		i, _ := strconv.Atoi(m[1])
		n = max(n, i)
	}
	oids := make([]uint32, n)
	for i := range oids {
		oids[i] = 25 // text
	}
	if strings.Contains(sql, "_migrated.progress") && n == 4 {
		oids[3] = 1184 // timestamptz
	}
	return oids
}

// connectFake returns a Target whose connection talks to b.
func connectFake(t *testing.T, b *fakeBackend) *Target {
	t.Helper()
	cfg, err := pgx.ParseConfig("postgres://migrated@127.0.0.1:5432/target?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		client, server := net.Pipe()
		go b.serve(server)
		return client, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &Target{conn: conn, migration: "m1", stream: "forward", stmts: map[string]*pgconn.StatementDescription{}}
}

func insertOf(id string) *cdc.Change {
	return &cdc.Change{Op: cdc.OpInsert, Relation: rel("items", "id*", "sku"), New: []cdc.Value{text(id), nul}}
}

func applyChanges(ctx context.Context, tg *Target, changes []*cdc.Change) (apply.Txn, error) {
	x, err := tg.Begin(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if err := x.Add(ctx, c); err != nil {
			return x, err
		}
	}
	return x, x.Commit(ctx, LSN(0x16_B374D848), time.Time{})
}

func TestTargetCommit(t *testing.T) {
	b := &fakeBackend{}
	tg := connectFake(t, b)
	ctx := context.Background()
	if _, err := applyChanges(ctx, tg, []*cdc.Change{insertOf("1"), insertOf("2")}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"BEGIN |",
		`INSERT INTO public.items | "1" NULL`,
		`INSERT INTO public.items | "2" NULL`,
		`INSERT INTO _migrated.progress | "m1" "forward" "16/B374D848" NULL`,
		"COMMIT |",
	}
	if got, want := strings.Join(b.executed(), "\n"), strings.Join(want, "\n"); got != want {
		t.Errorf("executed:\n%s\nwant:\n%s", got, want)
	}
	// The same statement is prepared once per connection.
	if got, want := len(tg.stmts), 1; got != want {
		t.Errorf("prepared statements = %d, want %d", got, want)
	}
}

func TestTargetBatchErrorNamesItsChange(t *testing.T) {
	for _, tt := range []struct {
		name      string
		code      string
		transient bool
	}{
		{"unique violation", "23505", false},
		{"bad value", "22P02", false},
		{"deadlock", "40P01", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{exec: func(sql string, args []string) (string, bool) {
				if len(args) > 0 && args[0] == `"2"` {
					return tt.code, false
				}
				return "", false
			}}
			tg := connectFake(t, b)
			ctx := context.Background()
			x, err := applyChanges(ctx, tg, []*cdc.Change{insertOf("1"), insertOf("2"), insertOf("3")})
			if err == nil {
				t.Fatal("commit succeeded")
			}
			x.Rollback(ctx)
			if got, want := apply.IsTransient(err), tt.transient; got != want {
				t.Errorf("transient = %t, want %t: %v", got, want, err)
			}
			var ce *apply.ChangeError
			if !tt.transient {
				if !errors.As(err, &ce) {
					t.Fatalf("error %v is not a ChangeError", err)
				}
				if got, want := ce.Key, "id=2"; got != want {
					t.Errorf("key = %q, want %q: the error must name the failing change", got, want)
				}
				if got, want := ce.SQLState, tt.code; got != want {
					t.Errorf("SQLSTATE = %q, want %q", got, want)
				}
			}
			for _, s := range b.executed() {
				if strings.Contains(s, "_migrated.progress") || strings.HasPrefix(s, "COMMIT") {
					t.Errorf("ran %q after a failed change", s)
				}
			}
		})
	}
}

func TestTargetPrepareConnectionLost(t *testing.T) {
	b := &fakeBackend{parse: func(string) (string, bool) { return "", true }}
	tg := connectFake(t, b)
	ctx := context.Background()
	_, err := applyChanges(ctx, tg, []*cdc.Change{insertOf("1")})
	if err == nil {
		t.Fatal("apply succeeded over a dropped connection")
	}
	var ce *apply.ChangeError
	transient := apply.IsTransient(err) || (errors.As(err, &ce) && apply.IsTransient(ce.Err))
	if !transient {
		t.Errorf("error %v (%T) is permanent; a lost connection must be retried", err, err)
	}
}

func TestTargetPrepareRejected(t *testing.T) {
	// A statement the target cannot prepare (a missing table) is a permanent change error.
	b := &fakeBackend{parse: func(sql string) (string, bool) {
		if strings.HasPrefix(sql, "INSERT") {
			return "42P01", false
		}
		return "", false
	}}
	tg := connectFake(t, b)
	_, err := applyChanges(context.Background(), tg, []*cdc.Change{insertOf("1")})
	var ce *apply.ChangeError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a ChangeError", err)
	}
	if got, want := ce.SQLState, "42P01"; got != want {
		t.Errorf("SQLSTATE = %q, want %q", got, want)
	}
	if got, want := fmt.Sprint(ce.Table, " ", ce.Op), "public.items insert"; got != want {
		t.Errorf("change = %q, want %q", got, want)
	}
}

func TestTargetLargeTransaction(t *testing.T) {
	// More changes than pipelineDepth go out in several batches; an error in a later batch still
	// names its own change.
	b := &fakeBackend{exec: func(sql string, args []string) (string, bool) {
		if len(args) > 0 && args[0] == `"1234"` {
			return "23505", false
		}
		return "", false
	}}
	tg := connectFake(t, b)
	var changes []*cdc.Change
	for i := 0; i < pipelineDepth+500; i++ {
		changes = append(changes, insertOf(strconv.Itoa(i)))
	}
	_, err := applyChanges(context.Background(), tg, changes)
	var ce *apply.ChangeError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a ChangeError", err)
	}
	if got, want := ce.Key, "id=1234"; got != want {
		t.Errorf("key = %q, want %q", got, want)
	}
	if got, want := len(b.executed()), 1+1235; got != want {
		t.Errorf("statements executed = %d, want %d (BEGIN and the inserts up to the failure)", got, want)
	}
}

func TestTargetRollback(t *testing.T) {
	b := &fakeBackend{}
	tg := connectFake(t, b)
	ctx := context.Background()
	x, err := tg.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Add(ctx, insertOf("1")); err != nil {
		t.Fatal(err)
	}
	x.Rollback(ctx)
	// Queued statements are dropped, never sent.
	if got, want := strings.Join(b.executed(), "; "), "BEGIN |; ROLLBACK |"; got != want {
		t.Errorf("executed = %s, want %s", got, want)
	}
}

// TestTargetTogetherSessionLost: when a multi-row upsert fails and the session is lost before
// its rows can be tried alone, no row is blamed: the error is transient, for the stream to
// reconnect and try again.
func TestTargetTogetherSessionLost(t *testing.T) {
	b := &fakeBackend{exec: func(sql string, _ []string) (string, bool) {
		switch {
		case strings.Contains(sql, "), ($"):
			return "23514", false
		case strings.HasPrefix(sql, "ROLLBACK; BEGIN"):
			return "", true
		}
		return "", false
	}}
	tg := connectFake(t, b)
	tg.compactable = map[cdc.TableID]bool{{Schema: "public", Name: "items"}: true}
	ctx := context.Background()
	_, err := applyChanges(ctx, tg, []*cdc.Change{insertOf("1"), insertOf("2"), insertOf("3"), insertOf("4")})
	var ce *apply.ChangeError
	if !apply.IsTransient(err) || errors.As(err, &ce) {
		t.Fatalf("error %v: want a transient error that names no change", err)
	}
}

package demo

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/postgres"
	"golang.org/x/sync/errgroup"
)

// Key names one row the writer wrote: its table and its primary key as text ("42", "42/3" for
// order 42 line 3, or a uuid).
type Key struct {
	Table string
	ID    string
}

// The sides of the migration, as the routing hook names them (hooks.Facts.Writable).
const (
	SideSource = "source"
	SideTarget = "target"
)

// Ledger records what the writer's committed transactions did, so that the end of the demo can
// check that every acknowledged write reached both sides. It is safe for concurrent use.
type Ledger struct {
	mu            sync.Mutex
	acked         map[Key]struct{}
	deleted       map[Key]struct{}
	deletedOrders map[string]struct{} // deleting an order cascades to its items
	writes, txns  int64
	bySide        map[string]int64 // row writes acknowledged by each side
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{acked: map[Key]struct{}{}, deleted: map[Key]struct{}{}, deletedOrders: map[string]struct{}{},
		bySide: map[string]int64{}}
}

// Commit records one transaction that side acknowledged: the rows it inserted or updated, and
// the rows it deleted. A deleted row stays excluded even if a concurrent update is recorded
// after it.
func (l *Ledger) Commit(side string, written, deleted []Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forget(deleted)
	for _, k := range written {
		l.acked[k] = struct{}{}
	}
	n := int64(len(written) + len(deleted))
	l.writes += n
	l.bySide[side] += n
	l.txns++
}

// Forget leaves rows out of the check without counting a commit: it is for the rows of a delete
// whose commit may have happened without its acknowledgement reaching the writer.
func (l *Ledger) Forget(deleted []Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forget(deleted)
}

func (l *Ledger) forget(deleted []Key) {
	for _, k := range deleted {
		l.deleted[k] = struct{}{}
		if k.Table == "orders" {
			l.deletedOrders[k.ID] = struct{}{}
		}
	}
}

// Stats returns the row writes and transactions acknowledged so far.
func (l *Ledger) Stats() (writes, txns int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes, l.txns
}

// Acked returns the row writes that side acknowledged so far.
func (l *Ledger) Acked(side string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bySide[side]
}

// Live returns the acknowledged keys that must be on both sides, by table, and how many
// acknowledged keys were later deleted by the writer itself.
func (l *Ledger) Live() (live map[string][]string, excluded int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	live = map[string][]string{}
	for k := range l.acked {
		if _, ok := l.deleted[k]; ok {
			excluded++
			continue
		}
		if k.Table == "order_items" {
			order, _, _ := strings.Cut(k.ID, "/")
			if _, ok := l.deletedOrders[order]; ok {
				excluded++
				continue
			}
		}
		live[k.Table] = append(live[k.Table], k.ID)
	}
	return live, excluded
}

// Writer is the demo's application: it places orders with their items and events, moves orders
// through their statuses, updates customers and TOASTed documents, and deletes orders and items,
// each in a transaction, recording every commit in a Ledger. It writes to the side that the
// routing hook last named (Route), as an application behind a pooler or service discovery would.
type Writer struct {
	sides    map[string]*endpoint
	current  atomic.Pointer[endpoint]
	conns    int
	ledger   *Ledger
	pause    time.Duration
	products int64
	custs    int64
	maxOrder atomic.Int64
	maxDoc   atomic.Int64
	aborted  atomic.Int64
	refused  atomic.Int64
	gaps     gapMeter
}

// endpoint is one database the writer can write to.
type endpoint struct {
	side string
	pool *pgxpool.Pool
}

// NewWriter returns a writer that starts on source, which must hold the dataset ds, and moves to
// target when routed there. It runs as many connections as source's pool allows and waits
// pause between transactions on each, which keeps the demo's two CPUs free for the migration.
func NewWriter(source, target *pgxpool.Pool, ds Dataset, ledger *Ledger, pause time.Duration) *Writer {
	w := &Writer{
		sides:  map[string]*endpoint{SideSource: {SideSource, source}, SideTarget: {SideTarget, target}},
		conns:  int(source.Config().MaxConns),
		ledger: ledger, pause: pause, products: ds.Products, custs: ds.Customers,
	}
	w.current.Store(w.sides[SideSource])
	w.maxOrder.Store(ds.Orders)
	w.maxDoc.Store(ds.Documents)
	return w
}

// Route sends the writer's next transactions to side, SideSource or SideTarget. A transaction
// under way finishes where it began, or is refused there by the fence and retried on side.
func (w *Writer) Route(side string) error {
	ep, ok := w.sides[side]
	if !ok {
		return fmt.Errorf("unknown side %q; want %s or %s", side, SideSource, SideTarget)
	}
	w.current.Store(ep)
	return nil
}

// Side returns the side the writer writes to now.
func (w *Writer) Side() string { return w.current.Load().side }

// Refused returns how many transactions a fence refused so far; each was retried.
func (w *Writer) Refused() int64 { return w.refused.Load() }

// Run writes on each connection until ctx ends. A transaction under way when ctx ends is
// finished, so that it is either acknowledged and recorded or not committed at all. Deadlocks
// between the writer's own connections are retried, and so are the transactions a fence refuses,
// on whatever side the writer is routed to by then; any other error stops it.
func (w *Writer) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for i := range w.conns {
		g.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-time.After(w.pause):
				}
				txCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 30*time.Second)
				err := w.step(txCtx, r)
				cancel()
				var pgErr *pgconn.PgError
				switch {
				case err == nil:
				case errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001"):
					w.aborted.Add(1)
				case postgres.RefusedByFence(err):
					w.refused.Add(1)
					// Not acknowledged, so not recorded: the next round retries on the side the
					// hook names by then. The pause keeps a refused side from being hammered.
					time.Sleep(10 * time.Millisecond)
				default:
					return fmt.Errorf("demo writer on the %s: %w", w.Side(), err)
				}
			}
		})
	}
	return g.Wait()
}

// step runs one transaction chosen at random on the side the writer is routed to, and records
// it once committed.
func (w *Writer) step(ctx context.Context, r *rand.Rand) error {
	var written, deleted []Key
	ep := w.current.Load()
	tx, err := ep.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	order := strconv.FormatInt(1+r.Int64N(w.maxOrder.Load()), 10)
	switch n := r.IntN(100); {
	case n < 45:
		written, err = w.placeOrder(ctx, tx, r)
	case n < 65:
		written, err = w.advanceOrder(ctx, tx, order, r)
	case n < 75:
		written, err = returning(ctx, tx, "customers", `UPDATE customers
			SET prefs = prefs || jsonb_build_object('visits', coalesce((prefs->>'visits')::int, 0) + 1, 'last_seen', now())
			WHERE id = $1 RETURNING id::text`, w.customer(r))
	case n < 83:
		deleted, err = returning(ctx, tx, "orders", `DELETE FROM orders WHERE id = $1 RETURNING id::text`, order)
	case n < 90:
		deleted, err = returning(ctx, tx, "order_items", `DELETE FROM order_items WHERE (order_id, line) =
			(SELECT order_id, max(line) FROM order_items WHERE order_id = $1 GROUP BY order_id)
			RETURNING order_id || '/' || line`, order)
	default:
		written, err = w.touchDocument(ctx, tx, r)
	}
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		// The commit may have happened without its acknowledgement reaching us: leave the
		// deleted rows out of the check rather than count them lost.
		w.ledger.Forget(deleted)
		return err
	}
	w.gaps.ack(time.Now())
	w.ledger.Commit(ep.side, written, deleted)
	return nil
}

// gapMeter measures the longest time between two acknowledged writes: the write pause of a
// cutover as the application sees it, with the routing and its reconnects included.
type gapMeter struct {
	mu    sync.Mutex
	last  time.Time
	worst time.Duration
}

func (g *gapMeter) ack(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.last.IsZero() {
		g.worst = max(g.worst, now.Sub(g.last))
	}
	g.last = now
}

// restart forgets the longest gap so far; the gap running now still counts from the last ack.
func (g *gapMeter) restart() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.worst = 0
}

// longest returns the longest gap since the last restart, the one running now included.
func (g *gapMeter) longest(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last.IsZero() {
		return g.worst
	}
	return max(g.worst, now.Sub(g.last))
}

// placeOrder inserts an order with 1 to 4 items and an event, for a new customer one time in ten.
func (w *Writer) placeOrder(ctx context.Context, tx pgx.Tx, r *rand.Rand) ([]Key, error) {
	var keys []Key
	cust := w.customer(r)
	if r.IntN(10) == 0 {
		k, err := returning(ctx, tx, "customers", `INSERT INTO customers (id, name, email, country, prefs)
			VALUES (gen_random_uuid(), 'Live Kundin ' || $1::text || ' ✓', 'live-' || gen_random_uuid() || '@example.com', 'SE', '{"live": true}')
			RETURNING id::text`, strconv.Itoa(r.IntN(1000)))
		if err != nil {
			return nil, err
		}
		keys, cust = append(keys, k...), k[0].ID
	}
	k, err := returning(ctx, tx, "orders", `INSERT INTO orders (customer_id, note) VALUES ($1, 'live order') RETURNING id::text`, cust)
	if err != nil {
		return nil, err
	}
	keys = append(keys, k...)
	order := k[0].ID
	items, err := returning(ctx, tx, "order_items", `INSERT INTO order_items (order_id, line, product_id, quantity, unit_price)
		SELECT $1::bigint, l, 1 + ($1::bigint + l) % $3::int, 1 + l % 3, round(l * 3.45, 2) FROM generate_series(1, $2::int) l
		RETURNING order_id || '/' || line`, order, 1+r.IntN(4), w.products)
	if err != nil {
		return nil, err
	}
	keys = append(keys, items...)
	if _, err := tx.Exec(ctx, `UPDATE orders SET total = (SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = $1) WHERE id = $1`, order); err != nil {
		return nil, err
	}
	ev, err := returning(ctx, tx, "events", `INSERT INTO events (occurred_at, customer_id, kind, payload)
		VALUES (now(), $1, 'order_placed', jsonb_build_object('order', $2::bigint)) RETURNING id::text`, cust, order)
	if err != nil {
		return nil, err
	}
	if id, err := strconv.ParseInt(order, 10, 64); err == nil {
		storeMax(&w.maxOrder, id)
	}
	return append(keys, ev...), nil
}

// advanceOrder sets an order's status and logs an event for it.
func (w *Writer) advanceOrder(ctx context.Context, tx pgx.Tx, order string, r *rand.Rand) ([]Key, error) {
	statuses := []string{"pending", "paid", "shipped", "delivered", "cancelled"}
	keys, err := returning(ctx, tx, "orders", `UPDATE orders SET status = $2 WHERE id = $1 RETURNING id::text`, order, statuses[r.IntN(len(statuses))])
	if err != nil || len(keys) == 0 {
		return keys, err
	}
	ev, err := returning(ctx, tx, "events", `INSERT INTO events (occurred_at, kind, payload)
		VALUES (now(), 'status_changed', jsonb_build_object('order', $1::bigint)) RETURNING id::text`, order)
	return append(keys, ev...), err
}

// touchDocument renames a document, which leaves its TOASTed body out of the change stream,
// rewrites a body, or adds a document.
func (w *Writer) touchDocument(ctx context.Context, tx pgx.Tx, r *rand.Rand) ([]Key, error) {
	doc := strconv.FormatInt(1+r.Int64N(w.maxDoc.Load()), 10)
	switch r.IntN(3) {
	case 0:
		return returning(ctx, tx, "documents", `UPDATE documents SET title = title || ' ✓', updated_at = now() WHERE id = $1 RETURNING id::text`, doc)
	case 1:
		return returning(ctx, tx, "documents", `UPDATE documents
			SET body = (SELECT string_agg(md5(random()::text || s), '') FROM generate_series(1, 250) s), updated_at = now()
			WHERE id = $1 RETURNING id::text`, doc)
	}
	return returning(ctx, tx, "documents", `INSERT INTO documents (id, customer_id, title, body)
		VALUES ($1::bigint, $2, 'Live note ' || $1::bigint, repeat('live text ', 1500)) RETURNING id::text`, w.maxDoc.Add(1), w.customer(r))
}

// customer returns the id of a random generated customer.
func (w *Writer) customer(r *rand.Rand) string {
	return generatedCustomer(1 + r.Int64N(w.custs))
}

// generatedCustomer is the uuid the dataset gives customer n: md5('c' || n)::uuid.
func generatedCustomer(n int64) string {
	sum := md5.Sum([]byte("c" + strconv.FormatInt(n, 10)))
	h := hex.EncodeToString(sum[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// returning runs a statement whose rows return one key each.
func returning(ctx context.Context, tx pgx.Tx, table, sql string, args ...any) ([]Key, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", table, err)
	}
	keys := make([]Key, len(ids))
	for i, id := range ids {
		keys[i] = Key{Table: table, ID: id}
	}
	return keys, nil
}

// storeMax raises v to n unless it is already higher.
func storeMax(v *atomic.Int64, n int64) {
	for cur := v.Load(); n > cur; cur = v.Load() {
		if v.CompareAndSwap(cur, n) {
			return
		}
	}
}

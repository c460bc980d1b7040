package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	deletedOrders map[string]struct{} // deleting an order deletes its items
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

// shop is an engine's half of the writer: the shop's transactions in the engine's SQL, and how
// to read its errors.
type shop interface {
	// session returns the state of one writer connection, which runs one transaction at a time.
	session() shopSession
	// conflict reports whether err is a deadlock or a serialization failure between the
	// writer's own connections: the transaction did not commit and is dropped.
	conflict(err error) bool
	// refused reports whether err is a fence turning the transaction away: a read-only server,
	// an ended session, a lost connection. It did not commit, and the writer retries on the side
	// the routing hook names by then.
	refused(err error) bool
}

// shopSession runs the shop's transactions for one writer connection.
type shopSession interface {
	// txn runs one transaction of the kind kind on side and returns the keys it wrote and
	// deleted, once committed. When the commit itself fails, its outcome is unknown: deleted
	// then lists the rows it deleted, which the ledger leaves out of the check.
	txn(ctx context.Context, side string, kind txKind, r *rand.Rand) (written, deleted []Key, err error)
	close()
}

// txKind is one of the shop's transactions.
type txKind int

const (
	txPlaceOrder    txKind = iota // an order with 1 to 4 items and an event, a new customer one time in ten
	txAdvanceOrder                // an order's status, and an event
	txTouchCustomer               // a customer's preferences
	txDeleteOrder                 // an order and its items
	txDeleteItem                  // an order's last item
	txTouchDocument               // a document renamed or rewritten, or a new one
)

// pickTx chooses the next transaction: mostly orders, as a shop's traffic would be.
func pickTx(r *rand.Rand) txKind {
	switch n := r.IntN(100); {
	case n < 45:
		return txPlaceOrder
	case n < 65:
		return txAdvanceOrder
	case n < 75:
		return txTouchCustomer
	case n < 83:
		return txDeleteOrder
	case n < 90:
		return txDeleteItem
	}
	return txTouchDocument
}

// orderStatuses are the values of the orders' status in both engines' schemas.
var orderStatuses = []string{"pending", "paid", "shipped", "delivered", "cancelled"}

// stock is what the writer knows of the shop's rows, shared by its connections: how many
// customers and products the dataset has, and the highest order and document ids so far.
type stock struct {
	customers, products int64
	maxOrder, maxDoc    atomic.Int64
}

func newStock(ds Dataset) *stock {
	s := &stock{customers: ds.Customers, products: ds.Products}
	s.maxOrder.Store(ds.Orders)
	s.maxDoc.Store(ds.Documents)
	return s
}

// customer returns the number (1-based) of a random generated customer.
func (s *stock) customer(r *rand.Rand) int64 { return 1 + r.Int64N(s.customers) }

// order returns the id of a random order, which the writer may have deleted since.
func (s *stock) order(r *rand.Rand) int64 { return 1 + r.Int64N(s.maxOrder.Load()) }

// document returns the id of a random document.
func (s *stock) document(r *rand.Rand) int64 { return 1 + r.Int64N(s.maxDoc.Load()) }

// placed records the id of an order the writer inserted.
func (s *stock) placed(order int64) { storeMax(&s.maxOrder, order) }

// Writer is the demo's application: it places orders with their items and events, moves orders
// through their statuses, updates customers and documents, and deletes orders and items, each in
// a transaction, recording every commit in a Ledger. It writes to the side that the routing hook
// last named (Route), as an application behind a pooler or service discovery would.
type Writer struct {
	shop     shop
	onTarget atomic.Bool
	conns    int
	ledger   *Ledger
	pause    time.Duration
	aborted  atomic.Int64
	refused  atomic.Int64
	gaps     gapMeter
}

// NewWriter returns a writer that starts on the source and moves to the target when routed
// there. It runs conns connections through shop and waits pause between transactions on each,
// which keeps the demo's two CPUs free for the migration.
func NewWriter(shop shop, conns int, ledger *Ledger, pause time.Duration) *Writer {
	return &Writer{shop: shop, conns: conns, ledger: ledger, pause: pause}
}

// Route sends the writer's next transactions to side, SideSource or SideTarget. A transaction
// under way finishes where it began, or is refused there by the fence and retried on side.
func (w *Writer) Route(side string) error {
	if side != SideSource && side != SideTarget {
		return fmt.Errorf("unknown side %q; want %s or %s", side, SideSource, SideTarget)
	}
	w.onTarget.Store(side == SideTarget)
	return nil
}

// Side returns the side the writer writes to now.
func (w *Writer) Side() string {
	if w.onTarget.Load() {
		return SideTarget
	}
	return SideSource
}

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
			s := w.shop.session()
			defer s.close()
			r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-time.After(w.pause):
				}
				txCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 30*time.Second)
				side, err := w.step(txCtx, s, r)
				cancel()
				switch {
				case err == nil:
				case w.shop.conflict(err):
					w.aborted.Add(1)
				case w.shop.refused(err):
					w.refused.Add(1)
					// Not acknowledged, so not recorded: the next round retries on the side the
					// hook names by then. The pause keeps a refused side from being hammered.
					time.Sleep(10 * time.Millisecond)
				default:
					return fmt.Errorf("demo writer on the %s: %w", side, err)
				}
			}
		})
	}
	return g.Wait()
}

// step runs one transaction chosen at random on the side the writer is routed to, and records
// it once committed.
func (w *Writer) step(ctx context.Context, s shopSession, r *rand.Rand) (string, error) {
	side := w.Side()
	written, deleted, err := s.txn(ctx, side, pickTx(r), r)
	if err != nil {
		// A commit may have happened without its acknowledgement reaching us: leave the
		// deleted rows out of the check rather than count them lost.
		w.ledger.Forget(deleted)
		return side, err
	}
	w.gaps.ack(time.Now())
	w.ledger.Commit(side, written, deleted)
	return side, nil
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

// storeMax raises v to n unless it is already higher.
func storeMax(v *atomic.Int64, n int64) {
	for cur := v.Load(); n > cur; cur = v.Load() {
		if v.CompareAndSwap(cur, n) {
			return
		}
	}
}

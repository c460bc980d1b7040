package demo

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/migrated/migrated/internal/postgres"
)

// pgShop runs the shop's transactions on PostgreSQL, through a pool on each side. The pools are
// safe for concurrent use, so it is its own session.
type pgShop struct {
	pools map[string]*pgxpool.Pool
	stock *stock
}

func (s *pgShop) session() shopSession { return s }

func (s *pgShop) close() {}

func (s *pgShop) conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

func (s *pgShop) refused(err error) bool { return postgres.RefusedByFence(err) }

func (s *pgShop) txn(ctx context.Context, side string, kind txKind, r *rand.Rand) (written, deleted []Key, err error) {
	tx, err := s.pools[side].Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	order := strconv.FormatInt(s.stock.order(r), 10)
	switch kind {
	case txPlaceOrder:
		written, err = s.placeOrder(ctx, tx, r)
	case txAdvanceOrder:
		written, err = s.advanceOrder(ctx, tx, order, r)
	case txTouchCustomer:
		written, err = returning(ctx, tx, "customers", `UPDATE customers
			SET prefs = prefs || jsonb_build_object('visits', coalesce((prefs->>'visits')::int, 0) + 1, 'last_seen', now())
			WHERE id = $1 RETURNING id::text`, s.customer(r))
	case txDeleteOrder:
		deleted, err = returning(ctx, tx, "orders", `DELETE FROM orders WHERE id = $1 RETURNING id::text`, order)
	case txDeleteItem:
		deleted, err = returning(ctx, tx, "order_items", `DELETE FROM order_items WHERE (order_id, line) =
			(SELECT order_id, max(line) FROM order_items WHERE order_id = $1 GROUP BY order_id)
			RETURNING order_id || '/' || line`, order)
	default:
		written, err = s.touchDocument(ctx, tx, r)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, deleted, err
	}
	return written, deleted, nil
}

// placeOrder inserts an order with 1 to 4 items and an event, for a new customer one time in ten.
func (s *pgShop) placeOrder(ctx context.Context, tx pgx.Tx, r *rand.Rand) ([]Key, error) {
	var keys []Key
	cust := s.customer(r)
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
		RETURNING order_id || '/' || line`, order, 1+r.IntN(4), s.stock.products)
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
		s.stock.placed(id)
	}
	return append(keys, ev...), nil
}

// advanceOrder sets an order's status and logs an event for it.
func (s *pgShop) advanceOrder(ctx context.Context, tx pgx.Tx, order string, r *rand.Rand) ([]Key, error) {
	keys, err := returning(ctx, tx, "orders", `UPDATE orders SET status = $2 WHERE id = $1 RETURNING id::text`, order, orderStatuses[r.IntN(len(orderStatuses))])
	if err != nil || len(keys) == 0 {
		return keys, err
	}
	ev, err := returning(ctx, tx, "events", `INSERT INTO events (occurred_at, kind, payload)
		VALUES (now(), 'status_changed', jsonb_build_object('order', $1::bigint)) RETURNING id::text`, order)
	return append(keys, ev...), err
}

// touchDocument renames a document, which leaves its TOASTed body out of the change stream,
// rewrites a body, or adds a document.
func (s *pgShop) touchDocument(ctx context.Context, tx pgx.Tx, r *rand.Rand) ([]Key, error) {
	doc := strconv.FormatInt(s.stock.document(r), 10)
	switch r.IntN(3) {
	case 0:
		return returning(ctx, tx, "documents", `UPDATE documents SET title = title || ' ✓', updated_at = now() WHERE id = $1 RETURNING id::text`, doc)
	case 1:
		return returning(ctx, tx, "documents", `UPDATE documents
			SET body = (SELECT string_agg(md5(random()::text || s), '') FROM generate_series(1, 250) s), updated_at = now()
			WHERE id = $1 RETURNING id::text`, doc)
	}
	return returning(ctx, tx, "documents", `INSERT INTO documents (id, customer_id, title, body)
		VALUES ($1::bigint, $2, 'Live note ' || $1::bigint, repeat('live text ', 1500)) RETURNING id::text`, s.stock.maxDoc.Add(1), s.customer(r))
}

// customer returns the id of a random generated customer.
func (s *pgShop) customer(r *rand.Rand) string { return generatedCustomer(s.stock.customer(r)) }

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

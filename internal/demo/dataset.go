package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// Dataset is the size of the generated shop database: row counts per table, derived from a
// target size in megabytes.
type Dataset struct {
	Customers int64
	Products  int64
	Orders    int64 // each order has 1 to 4 items, 2.5 on average
	Events    int64
	Documents int64 // about 9.6 KiB of incompressible text each
	// Months is how many months of events are generated, ending with the current one. On
	// PostgreSQL each is a partition of events, and one more covers next month for the writer.
	Months int
}

// rowBytes are the approximate bytes per row on disk of each table (heap or clustered index,
// TOAST or overflow pages, and secondary indexes), measured on each engine. They only need to be
// close: the report shows the real size.
type rowBytes struct {
	customer, order, item, event, document float64 // item: per item; an order has 2.5
}

// pgRowBytes are measured on PostgreSQL 15; a document is about 9.6 KiB of incompressible text,
// so it lives in TOAST.
var pgRowBytes = rowBytes{customer: 270, order: 125, item: 100, event: 215, document: 10400}

// Each table's share of the size.
const (
	customerShare = 0.10
	orderShare    = 0.35 // orders and their items together
	eventShare    = 0.25
	documentShare = 0.30
)

// newDataset sizes a dataset of about sizeMB mebibytes on disk with rows of size b, with at
// least a few rows in every table so that a tiny demo still exercises every type.
func newDataset(sizeMB int, b rowBytes) Dataset {
	size := float64(sizeMB) * (1 << 20)
	return Dataset{
		Customers: max(int64(size*customerShare/b.customer), 100),
		Products:  max(int64(sizeMB)*20, 200),
		Orders:    max(int64(size*orderShare/(b.order+2.5*b.item)), 200),
		Events:    max(int64(size*eventShare/b.event), 200),
		Documents: max(int64(size*documentShare/b.document), 20),
		Months:    12,
	}
}

// schemaSQL creates the tables without keys or indexes; constraintsSQL adds them after the bulk
// load, which is several times faster than checking foreign keys row by row.
const schemaSQL = `
CREATE TYPE product_category AS ENUM ('books', 'electronics', 'garden', 'toys', 'food & drink ☕');
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');

CREATE TABLE customers (
    id         uuid NOT NULL,
    name       text NOT NULL,
    email      text NOT NULL,
    country    char(2) NOT NULL,
    prefs      jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id         integer NOT NULL,
    sku        text NOT NULL,
    name       text NOT NULL,
    price      numeric(12,2) NOT NULL,
    tags       text[] NOT NULL DEFAULT '{}',
    category   product_category NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    customer_id uuid NOT NULL,
    status      order_status NOT NULL DEFAULT 'pending',
    placed_at   timestamptz NOT NULL DEFAULT now(),
    total       numeric(12,2),
    note        text
);
CREATE TABLE order_items (
    order_id   bigint NOT NULL,
    line       integer NOT NULL,
    product_id integer NOT NULL,
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(12,2) NOT NULL
);
CREATE TABLE events (
    id          bigserial,
    occurred_at timestamptz NOT NULL,
    customer_id uuid,
    kind        text NOT NULL,
    payload     jsonb
) PARTITION BY RANGE (occurred_at);
CREATE TABLE documents (
    id          bigint NOT NULL,
    customer_id uuid NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
`

const constraintsSQL = `
ALTER TABLE customers ADD PRIMARY KEY (id), ADD UNIQUE (email);
ALTER TABLE products ADD PRIMARY KEY (id), ADD UNIQUE (sku);
ALTER TABLE orders ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
ALTER TABLE order_items ADD PRIMARY KEY (order_id, line),
    ADD FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    ADD FOREIGN KEY (product_id) REFERENCES products (id);
ALTER TABLE events ADD PRIMARY KEY (id, occurred_at);
ALTER TABLE documents ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX order_items_product_idx ON order_items (product_id);
CREATE INDEX events_customer_idx ON events (customer_id);
`

// customerID is the id of generated customer n (1-based), so that other tables and the writer can
// refer to customers without looking them up.
const customerID = `md5('c' || %s)::uuid`

// loadStep is one bulk INSERT ... SELECT.
type loadStep struct {
	table string
	sql   string
	args  []any
}

// steps returns the bulk inserts, split in two lanes of about equal work that run in parallel.
func (ds Dataset) steps(firstMonth time.Time) [2][]loadStep {
	cust := func(expr string) string { return fmt.Sprintf(customerID, expr) }
	span := int64(time.Now().Sub(firstMonth).Seconds())
	return [2][]loadStep{{
		{"customers", `INSERT INTO customers (id, name, email, country, prefs, created_at)
SELECT ` + cust("g") + `,
       (ARRAY['Zoë','José','Łukasz','Søren','Ana','Björk','李','山田','Olúwásèun','Chloé 🙂'])[1 + g % 10] || ' ' ||
       (ARRAY['Müller','García','Dvořák','Nguyễn','O''Brien','Kowalska','Иванов','田中','Smith','Ødegård'])[1 + (g / 10) % 10],
       'user' || g || '@example.com',
       (ARRAY['DE','ES','PL','DK','BR','IS','CN','JP','NG','FR'])[1 + g % 10],
       jsonb_build_object('newsletter', g % 3 = 0, 'theme', (ARRAY['light','dark'])[1 + g % 2],
                          'tags', jsonb_build_array('t' || g % 7, 'vip'), 'sign', '🛒 "quoted"'),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds'
  FROM generate_series(1, $1::bigint) g`, []any{ds.Customers}},
		{"orders", `INSERT INTO orders (id, customer_id, status, placed_at, total, note) OVERRIDING SYSTEM VALUE
SELECT g, ` + cust("1 + (g * 7) % $2::bigint") + `, (enum_range(NULL::order_status))[1 + g % 5],
       timestamptz '2025-01-01 00:00:00+00' + (g % 31536000) * interval '1 second',
       round((g % 100000) / 7.0, 2), CASE WHEN g % 9 = 0 THEN 'leave at the door — merci' END
  FROM generate_series(1, $1::bigint) g`, []any{ds.Orders, ds.Customers}},
		{"events", `INSERT INTO events (id, occurred_at, customer_id, kind, payload)
SELECT g, $2::timestamptz + ((g * 7919) % $3::bigint) * interval '1 second', ` + cust("1 + g % $4::bigint") + `,
       (ARRAY['page_view','search','add_to_cart','checkout'])[1 + g % 4],
       jsonb_build_object('path', '/p/' || g % 5000, 'ms', g % 1000, 'ua', 'Mozilla/5.0 (X11; Linux x86_64)')
  FROM generate_series(1, $1::bigint) g`, []any{ds.Events, firstMonth, max(span, 1), ds.Customers}},
	}, {
		{"products", `INSERT INTO products (id, sku, name, price, tags, category, created_at)
SELECT g, 'SKU-' || lpad(g::text, 8, '0'), 'Product ' || g || ' – ' || (ARRAY['deluxe','mini','pro','classic'])[1 + g % 4],
       round((1 + (g * 7919) % 100000) / 100.0, 2), ARRAY['tag' || g % 13, 'tag' || g % 29, 'ünïcode'],
       (enum_range(NULL::product_category))[1 + g % 5], timestamptz '2023-06-01 00:00:00+00' + g * interval '1 hour'
  FROM generate_series(1, $1::int) g`, []any{ds.Products}},
		{"order_items", `INSERT INTO order_items (order_id, line, product_id, quantity, unit_price)
SELECT o, l, 1 + (o * 31 + l) % $2::int, 1 + (o + l) % 5, round((1 + (o * 13 + l) % 20000) / 100.0, 2)
  FROM generate_series(1, $1::bigint) o CROSS JOIN LATERAL generate_series(1, 1 + (o % 4)::int) l`, []any{ds.Orders, ds.Products}},
		{"documents", `INSERT INTO documents (id, customer_id, title, body)
SELECT g, ` + cust("1 + g % $2::bigint") + `, 'Invoice №' || g || ' — reçu',
       (SELECT string_agg(md5(random()::text || g || s), '') FROM generate_series(1, 200 + g % 200) s)
  FROM generate_series(1, $1::bigint) g`, []any{ds.Documents, ds.Customers}},
	}}
}

// partitionsSQL creates one events partition per month from firstMonth through next month.
func (ds Dataset) partitionsSQL(firstMonth time.Time) string {
	var b strings.Builder
	for m := firstMonth; m.Before(firstMonth.AddDate(0, ds.Months+1, 0)); m = m.AddDate(0, 1, 0) {
		fmt.Fprintf(&b, "CREATE TABLE events_%s PARTITION OF events FOR VALUES FROM ('%s') TO ('%s');\n",
			m.Format("2006_01"), m.Format(time.DateOnly), m.AddDate(0, 1, 0).Format(time.DateOnly))
	}
	return b.String()
}

// firstMonth is the start of the oldest events partition: Months-1 months before this one.
func (ds Dataset) firstMonth(now time.Time) time.Time {
	now = now.UTC()
	return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -(ds.Months - 1), 0)
}

// Load creates the schema in the database at dsn and fills it, two tables at a time. progress is
// called with each table as it starts and finishes loading.
func (ds Dataset) Load(ctx context.Context, dsn string, progress func(table string, done bool)) error {
	first := ds.firstMonth(time.Now())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the source: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, schemaSQL+ds.partitionsSQL(first)); err != nil {
		return fmt.Errorf("create the demo schema: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, lane := range ds.steps(first) {
		g.Go(func() error {
			c, err := pgx.Connect(gctx, dsn)
			if err != nil {
				return fmt.Errorf("connect to the source: %w", err)
			}
			defer c.Close(context.WithoutCancel(gctx))
			// Bulk loading: the demo cluster is throwaway, so skip waiting for WAL flushes.
			if _, err := c.Exec(gctx, "SET synchronous_commit = off; SET maintenance_work_mem = '256MB'"); err != nil {
				return err
			}
			for _, s := range lane {
				progress(s.table, false)
				if _, err := c.Exec(gctx, s.sql, s.args...); err != nil {
					return fmt.Errorf("generate %s: %w", s.table, err)
				}
				progress(s.table, true)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	progress("keys and indexes", false)
	finish := constraintsSQL + fmt.Sprintf(`
SELECT setval(pg_get_serial_sequence('orders', 'id'), %d);
SELECT setval(pg_get_serial_sequence('events', 'id'), %d);
ANALYZE;`, ds.Orders, ds.Events)
	if _, err := conn.Exec(ctx, "SET maintenance_work_mem = '256MB';"+finish); err != nil {
		return fmt.Errorf("add keys and indexes to the demo schema: %w", err)
	}
	progress("keys and indexes", true)
	return nil
}

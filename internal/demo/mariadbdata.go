package demo

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"golang.org/x/sync/errgroup"
)

// myRowBytes are measured on MariaDB 10.11 with InnoDB's DYNAMIC rows: a document of 6 to 13 KiB
// of text, most of them longer than half a page, takes a 16 KiB overflow page of its own.
var myRowBytes = rowBytes{customer: 265, order: 95, item: 80, event: 228, document: 14900}

// mySchema is the shop in MariaDB: InnoDB and utf8mb4, every table with a primary key (a table
// without one cannot be migrated) and AUTO_INCREMENT keys. The relations are indexed columns
// without FOREIGN KEY constraints: migrated adds a MySQL target's foreign keys after the copy,
// with the stream applying, and an ALTER TABLE ... ADD FOREIGN KEY then waits on the writer's
// transactions that write the parent and the child table until innodb_lock_wait_timeout, which
// fails the migration. (Foreign keys that cascade it refuses outright: InnoDB does not write a
// cascade's changes to the binlog.)
var mySchema = []string{
	`CREATE TABLE customers (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(100) NOT NULL,
    email      VARCHAR(120) NOT NULL,
    country    CHAR(2) NOT NULL,
    prefs      JSON NOT NULL,
    vip        BOOLEAN NOT NULL DEFAULT FALSE,
    birthday   DATE NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY customers_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	`CREATE TABLE products (
    id         INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sku        VARCHAR(16) NOT NULL,
    name       VARCHAR(200) NOT NULL,
    price      DECIMAL(12,2) NOT NULL,
    weight_kg  DOUBLE NOT NULL,
    category   ENUM('books', 'electronics', 'garden', 'toys', 'food & drink ☕') NOT NULL,
    tags       SET('new', 'sale', 'eco', 'gift') NOT NULL DEFAULT '',
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY products_sku (sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	`CREATE TABLE orders (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_id BIGINT UNSIGNED NOT NULL,
    status      ENUM('pending', 'paid', 'shipped', 'delivered', 'cancelled') NOT NULL DEFAULT 'pending',
    placed_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    total       DECIMAL(12,2) NULL,
    note        VARCHAR(200) NULL,
    revision    INT UNSIGNED NOT NULL DEFAULT 0,
    KEY orders_customer (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	`CREATE TABLE order_items (
    order_id   BIGINT NOT NULL,
    line       SMALLINT UNSIGNED NOT NULL,
    product_id INT UNSIGNED NOT NULL,
    quantity   SMALLINT UNSIGNED NOT NULL CHECK (quantity > 0),
    unit_price DECIMAL(12,2) NOT NULL,
    PRIMARY KEY (order_id, line),
    KEY order_items_product (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	`CREATE TABLE events (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    occurred_at TIMESTAMP(6) NOT NULL,
    customer_id BIGINT UNSIGNED NULL,
    kind        VARCHAR(32) NOT NULL,
    payload     JSON NULL,
    client_ip   VARBINARY(16) NULL,
    KEY events_customer (customer_id),
    KEY events_time (occurred_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	`CREATE TABLE documents (
    id          BIGINT NOT NULL PRIMARY KEY,
    customer_id BIGINT UNSIGNED NOT NULL,
    title       VARCHAR(200) NOT NULL,
    body        MEDIUMTEXT NOT NULL,
    thumbnail   BLOB NULL,
    revision    INT UNSIGNED NOT NULL DEFAULT 1,
    updated_at  DATETIME(6) NOT NULL,
    KEY documents_customer (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
}

// Values the generated rows cycle through.
var (
	myFirstNames = []string{"Zoë", "José", "Łukasz", "Søren", "Ana", "Björk", "李", "山田", "Olúwásèun", "Chloé 🙂"}
	myLastNames  = []string{"Müller", "García", "Dvořák", "Nguyễn", "O'Brien", "Kowalska", "Иванов", "田中", "Smith", "Ødegård"}
	myCountries  = []string{"DE", "ES", "PL", "DK", "BR", "IS", "CN", "JP", "NG", "FR"}
	myCategories = []string{"books", "electronics", "garden", "toys", "food & drink ☕"}
	myTags       = []string{"new", "sale", "eco", "gift"}
	myKinds      = []string{"page_view", "search", "add_to_cart", "checkout"}
)

// myGenTable is one generated table: how many rows, and row(b, g, r) appends the literal tuple of
// row g (1-based) to b; for order_items, the tuples of order g's items.
type myGenTable struct {
	name, columns string
	rows          int64
	row           func(b []byte, g int64, r *rand.Rand) []byte
}

// myLoadBatch is about how many bytes of SQL one INSERT carries, well under the server's
// max_allowed_packet (16 MiB).
const myLoadBatch = 1 << 20

// genTables returns the generated tables in two lanes of about equal work, loaded in parallel.
// Every value derives from the row's number, except the documents' random text, so that orders
// and items agree: an order's total is the sum of its items.
func (ds Dataset) genTables(firstMonth, now time.Time) [2][]myGenTable {
	span := max(int64(now.Sub(firstMonth).Seconds()), 1)
	base := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	customersFrom, productsFrom, ordersFrom := base("2024-01-01"), base("2023-06-01"), base("2025-01-01")
	return [2][]myGenTable{{
		{"customers", "id, name, email, country, prefs, vip, birthday, created_at", ds.Customers, func(b []byte, g int64, _ *rand.Rand) []byte {
			b = fmt.Appendf(b, "(%d,%s,'user%d@example.com','%s',", g, myQuote(myFirstNames[g%10]+" "+myLastNames[(g/10)%10]), g, myCountries[g%10])
			b = fmt.Appendf(b, `'{"newsletter": %t, "theme": "%s", "tags": ["t%d", "vip"], "sign": "🛒 \\"quoted\\""}',%t,`,
				g%3 == 0, []string{"light", "dark"}[g%2], g%7, g%17 == 0)
			if g%5 == 0 {
				b = append(b, "NULL,"...)
			} else {
				b = fmt.Appendf(b, "'%s',", base("1950-01-01").AddDate(0, 0, int(g*37%20000)).Format(time.DateOnly))
			}
			return fmt.Appendf(b, "%s)", myTime(customersFrom.Add(time.Duration(g)*17*time.Second+time.Duration(g%1e6)*time.Microsecond)))
		}},
		{"orders", "id, customer_id, status, placed_at, total, note, revision", ds.Orders, func(b []byte, g int64, _ *rand.Rand) []byte {
			var total int64
			for l := int64(1); l <= 1+g%4; l++ {
				q, cents := generatedItem(g, l)
				total += q * cents
			}
			note := "NULL"
			if g%9 == 0 {
				note = "'leave at the door — merci'"
			}
			return fmt.Appendf(b, "(%d,%d,'%s',%s,%s,%s,0)", g, 1+(g*7)%ds.Customers, orderStatuses[g%5],
				myTime(ordersFrom.Add(time.Duration(g%31536000)*time.Second+time.Duration(g*7%1e6)*time.Microsecond)), cents(total), note)
		}},
		{"events", "id, occurred_at, customer_id, kind, payload, client_ip", ds.Events, func(b []byte, g int64, _ *rand.Rand) []byte {
			cust := "NULL"
			if g%11 != 0 {
				cust = strconv.FormatInt(1+g%ds.Customers, 10)
			}
			ip := fmt.Sprintf("X'0a%02x%02x%02x'", g>>16&0xff, g>>8&0xff, g&0xff)
			if g%4 == 0 {
				ip = fmt.Sprintf("X'20010db8000000000000000000%06x'", g&0xffffff)
			}
			return fmt.Appendf(b, `(%d,%s,%s,'%s','{"path": "/p/%d", "ms": %d, "ua": "Mozilla/5.0 (X11; Linux x86_64)"}',%s)`,
				g, myTime(firstMonth.Add(time.Duration((g*7919)%span)*time.Second+time.Duration(g*13%1e6)*time.Microsecond)),
				cust, myKinds[g%4], g%5000, g%1000, ip)
		}},
	}, {
		{"products", "id, sku, name, price, weight_kg, category, tags, created_at", ds.Products, func(b []byte, g int64, _ *rand.Rand) []byte {
			var tags []string
			for i, t := range myTags {
				if g>>i&1 == 1 {
					tags = append(tags, t)
				}
			}
			return fmt.Appendf(b, "(%d,'SKU-%08d','Product %d – %s',%s,%s,%s,'%s',%s)", g, g, g,
				[]string{"deluxe", "mini", "pro", "classic"}[g%4], cents(1+(g*7919)%100000),
				strconv.FormatFloat(float64(g%5000)/1000+0.05, 'g', -1, 64), myQuote(myCategories[g%5]), strings.Join(tags, ","),
				myTime(productsFrom.Add(time.Duration(g)*time.Hour)))
		}},
		{"order_items", "order_id, line, product_id, quantity, unit_price", ds.Orders, func(b []byte, o int64, _ *rand.Rand) []byte {
			for l := int64(1); l <= 1+o%4; l++ {
				if l > 1 {
					b = append(b, ',')
				}
				q, price := generatedItem(o, l)
				b = fmt.Appendf(b, "(%d,%d,%d,%d,%s)", o, l, 1+(o*31+l)%ds.Products, q, cents(price))
			}
			return b
		}},
		{"documents", "id, customer_id, title, body, thumbnail, revision, updated_at", ds.Documents, func(b []byte, g int64, r *rand.Rand) []byte {
			b = fmt.Appendf(b, "(%d,%d,'Invoice №%d — reçu','", g, 1+g%ds.Customers, g)
			b = appendRandomHex(b, r, int(200+g%200)*32)
			b = append(b, "',"...)
			if g%3 == 0 {
				b = append(b, "NULL"...)
			} else {
				b = append(b, "X'"...)
				b = appendRandomHex(b, r, 2*(64+int(g%256)))
				b = append(b, '\'')
			}
			return fmt.Appendf(b, ",1,%s)", myTime(customersFrom.Add(time.Duration(g)*time.Minute)))
		}},
	}}
}

// generatedItem is the quantity and unit price in cents of line l of generated order o.
func generatedItem(o, l int64) (quantity, priceCents int64) {
	return 1 + (o+l)%5, 1 + (o*13+l)%20000
}

// cents formats an amount in cents as a DECIMAL literal.
func cents(n int64) string { return fmt.Sprintf("%d.%02d", n/100, n%100) }

// myTime formats t as a DATETIME(6) or TIMESTAMP(6) literal, in UTC as the sessions are.
func myTime(t time.Time) string { return t.UTC().Format("'2006-01-02 15:04:05.000000'") }

// myQuote quotes s as a string literal for a session with backslash escapes on (the default).
func myQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// appendRandomHex appends n random hexadecimal digits, which do not compress.
func appendRandomHex(b []byte, r *rand.Rand, n int) []byte {
	var w [8]byte
	for len(w)*2 <= n {
		for i := range w {
			w[i] = byte(r.Uint32())
		}
		b = hex.AppendEncode(b, w[:])
		n -= len(w) * 2
	}
	for ; n > 0; n-- {
		b = append(b, "0123456789abcdef"[r.IntN(16)])
	}
	return b
}

// load creates the shop in the source and fills it, two tables at a time, then reads its size.
func (e *mariaDBEngine) load(ctx context.Context, ds Dataset, progress func(table string, done bool)) (int64, error) {
	c, err := e.root(ctx, SideSource)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	for _, q := range mySchema {
		if _, err := c.Execute(q); err != nil {
			return 0, fmt.Errorf("create the demo schema: %w", err)
		}
	}
	now := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for lane, tables := range ds.genTables(ds.firstMonth(now), now) {
		g.Go(func() error {
			lc, err := e.root(gctx, SideSource)
			if err != nil {
				return err
			}
			defer lc.Close()
			// Bulk loading into a throwaway server: the rows are unique by construction, and the
			// snapshot copies them, so the binlog need not carry them.
			if _, err := lc.Execute("SET SESSION unique_checks = 0, sql_log_bin = 0"); err != nil {
				return err
			}
			r := rand.New(rand.NewPCG(uint64(lane), 42))
			for _, t := range tables {
				progress(t.name, false)
				if err := loadMyTable(gctx, lc, t, r); err != nil {
					return err
				}
				progress(t.name, true)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	// Fresh statistics, for the sizes the report shows.
	if _, err := c.Execute("ANALYZE TABLE customers, products, orders, order_items, events, documents"); err != nil {
		return 0, fmt.Errorf("analyze the demo tables: %w", err)
	}
	r, err := c.Execute("SELECT CAST(SUM(DATA_LENGTH + INDEX_LENGTH) AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", shopDB)
	if err != nil {
		return 0, fmt.Errorf("read the size of the demo tables: %w", err)
	}
	return r.GetInt(0, 0)
}

// loadMyTable inserts the rows of t in multi-row INSERTs of about myLoadBatch bytes.
func loadMyTable(ctx context.Context, c *client.Conn, t myGenTable, r *rand.Rand) error {
	head := "INSERT INTO " + t.name + " (" + t.columns + ") VALUES "
	b := make([]byte, 0, myLoadBatch+64<<10)
	flush := func() error {
		if len(b) == 0 {
			return nil
		}
		if _, err := c.Execute(head + string(b)); err != nil {
			return fmt.Errorf("generate %s: %w", t.name, err)
		}
		b = b[:0]
		return ctx.Err()
	}
	for g := int64(1); g <= t.rows; g++ {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = t.row(b, g, r)
		if len(b) >= myLoadBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

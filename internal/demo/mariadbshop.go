package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// mariaDBShop runs the shop's transactions on MariaDB as the application's account, one session
// per writer connection.
type mariaDBShop struct {
	e     *mariaDBEngine
	stock *stock
}

func (s *mariaDBShop) session() shopSession { return &mySession{shop: s} }

func (s *mariaDBShop) conflict(err error) bool {
	var myErr *gomysql.MyError
	return errors.As(err, &myErr) && (myErr.Code == gomysql.ER_LOCK_DEADLOCK || myErr.Code == gomysql.ER_LOCK_WAIT_TIMEOUT)
}

// refused reads the fence: read_only refuses the statement or the COMMIT (1290, or 1836 on
// MySQL), and the sessions that it kills get 1927 or just a closed connection.
func (s *mariaDBShop) refused(err error) bool {
	var myErr *gomysql.MyError
	if errors.As(err, &myErr) {
		switch myErr.Code {
		case gomysql.ER_OPTION_PREVENTS_STATEMENT, 1836, // ER_READ_ONLY_MODE
			1927,                                                     // ER_CONNECTION_KILLED (MariaDB)
			gomysql.ER_QUERY_INTERRUPTED, gomysql.ER_SERVER_SHUTDOWN, // KILL, shutdown
			2006, 2013: // server gone, connection lost
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.Is(err, gomysql.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &netErr) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// mySession is one writer connection: a session on the side it last wrote to, opened when first
// needed and closed after any error, since a fence may have ended it.
type mySession struct {
	shop *mariaDBShop
	side string
	c    *client.Conn
}

func (x *mySession) close() {
	if x.c != nil {
		x.c.Close()
		x.c = nil
	}
}

func (x *mySession) txn(ctx context.Context, side string, kind txKind, r *rand.Rand) (written, deleted []Key, err error) {
	if x.c != nil && x.side != side {
		x.close()
	}
	if x.c == nil {
		if x.c, err = x.shop.e.connect(ctx, side, appUser, x.shop.e.appPassword); err != nil {
			return nil, nil, err
		}
		x.side = side
	}
	written, deleted, err = x.run(kind, r)
	if err != nil {
		// Closing the session rolls back whatever it left open.
		x.close()
	}
	return written, deleted, err
}

// run runs one transaction on the session; see shopSession.
func (x *mySession) run(kind txKind, r *rand.Rand) (written, deleted []Key, err error) {
	if _, err := x.c.Execute("BEGIN"); err != nil {
		return nil, nil, err
	}
	order := x.shop.stock.order(r)
	switch kind {
	case txPlaceOrder:
		written, err = x.placeOrder(r)
	case txAdvanceOrder:
		written, err = x.advanceOrder(order, r)
	case txTouchCustomer:
		written, err = x.update("customers", x.shop.stock.customer(r), `prefs = JSON_SET(prefs,
			'$.visits', COALESCE(JSON_VALUE(prefs, '$.visits'), 0) + 1,
			'$.last_seen', DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ'))`)
	case txDeleteOrder:
		deleted, err = x.deleteOrder(order)
	case txDeleteItem:
		deleted, err = x.deleteItem(order)
	default:
		written, err = x.touchDocument(r)
	}
	if err != nil {
		return nil, nil, err
	}
	if _, err := x.c.Execute("COMMIT"); err != nil {
		return nil, deleted, err
	}
	return written, deleted, nil
}

// exec runs a statement built from the writer's own numbers and constants.
func (x *mySession) exec(format string, args ...any) (*gomysql.Result, error) {
	return x.c.Execute(fmt.Sprintf(format, args...))
}

// placeOrder inserts an order with 1 to 4 items and an event, for a new customer one time in
// ten. The order's total is the sum of its items.
func (x *mySession) placeOrder(r *rand.Rand) ([]Key, error) {
	var keys []Key
	cust := x.shop.stock.customer(r)
	if r.IntN(10) == 0 {
		res, err := x.exec(`INSERT INTO customers (name, email, country, prefs, created_at)
			VALUES ('Live Kundin %d ✓', CONCAT('live-', UUID(), '@example.com'), 'SE', '{"live": true}', NOW(6))`, r.IntN(1000))
		if err != nil {
			return nil, err
		}
		cust = int64(res.InsertId)
		keys = append(keys, myKey("customers", cust))
	}
	type item struct{ product, quantity, cents int64 }
	items := make([]item, 1+r.IntN(4))
	var total int64
	for i := range items {
		items[i] = item{product: 1 + r.Int64N(x.shop.stock.products), quantity: int64(1 + i%3), cents: int64(345 * (i + 1))}
		total += items[i].quantity * items[i].cents
	}
	res, err := x.exec("INSERT INTO orders (customer_id, placed_at, total, note) VALUES (%d, NOW(6), %s, 'live order')", cust, cents(total))
	if err != nil {
		return nil, err
	}
	order := int64(res.InsertId)
	keys = append(keys, myKey("orders", order))
	values := make([]string, len(items))
	for i, it := range items {
		values[i] = fmt.Sprintf("(%d, %d, %d, %d, %s)", order, i+1, it.product, it.quantity, cents(it.cents))
		keys = append(keys, Key{Table: "order_items", ID: fmt.Sprintf("%d/%d", order, i+1)})
	}
	if _, err := x.c.Execute("INSERT INTO order_items (order_id, line, product_id, quantity, unit_price) VALUES " + strings.Join(values, ", ")); err != nil {
		return nil, err
	}
	res, err = x.exec(`INSERT INTO events (occurred_at, customer_id, kind, payload, client_ip)
		VALUES (NOW(6), %d, 'order_placed', JSON_OBJECT('order', %d, 'items', %d), INET6_ATON('10.1.%d.%d'))`,
		cust, order, len(items), r.IntN(256), r.IntN(256))
	if err != nil {
		return nil, err
	}
	x.shop.stock.placed(order)
	return append(keys, myKey("events", int64(res.InsertId))), nil
}

// advanceOrder sets an order's status and logs an event for it.
func (x *mySession) advanceOrder(order int64, r *rand.Rand) ([]Key, error) {
	status := orderStatuses[r.IntN(len(orderStatuses))]
	keys, err := x.update("orders", order, "status = '"+status+"', revision = revision + 1")
	if err != nil || len(keys) == 0 {
		return keys, err
	}
	res, err := x.exec(`INSERT INTO events (occurred_at, kind, payload)
		VALUES (NOW(6), 'status_changed', JSON_OBJECT('order', %d, 'status', '%s'))`, order, status)
	if err != nil {
		return nil, err
	}
	return append(keys, myKey("events", int64(res.InsertId))), nil
}

// deleteOrder deletes an order and its items, as a foreign key that cascades would.
func (x *mySession) deleteOrder(order int64) ([]Key, error) {
	if _, err := x.exec("DELETE FROM order_items WHERE order_id = %d", order); err != nil {
		return nil, err
	}
	res, err := x.exec("DELETE FROM orders WHERE id = %d", order)
	if err != nil || res.AffectedRows == 0 {
		return nil, err
	}
	return []Key{myKey("orders", order)}, nil
}

// deleteItem deletes an order's last item.
func (x *mySession) deleteItem(order int64) ([]Key, error) {
	res, err := x.exec("SELECT line FROM order_items WHERE order_id = %d ORDER BY line DESC LIMIT 1 FOR UPDATE", order)
	if err != nil || res.RowNumber() == 0 {
		return nil, err
	}
	line, err := res.GetInt(0, 0)
	if err != nil {
		return nil, err
	}
	if _, err := x.exec("DELETE FROM order_items WHERE order_id = %d AND line = %d", order, line); err != nil {
		return nil, err
	}
	return []Key{{Table: "order_items", ID: fmt.Sprintf("%d/%d", order, line)}}, nil
}

// touchDocument renames a document, rewrites its body, or adds a document.
func (x *mySession) touchDocument(r *rand.Rand) ([]Key, error) {
	doc := x.shop.stock.document(r)
	switch r.IntN(3) {
	case 0:
		return x.update("documents", doc, "title = CONCAT(LEFT(title, 180), ' ✓'), revision = revision + 1, updated_at = NOW(6)")
	case 1:
		return x.update("documents", doc, "body = '"+string(appendRandomHex(nil, r, 8000))+"', revision = revision + 1, updated_at = NOW(6)")
	}
	doc = x.shop.stock.maxDoc.Add(1)
	if _, err := x.exec(`INSERT INTO documents (id, customer_id, title, body, updated_at)
		VALUES (%[1]d, %[2]d, 'Live note %[1]d', REPEAT('live text ', 1500), NOW(6))`, doc, x.shop.stock.customer(r)); err != nil {
		return nil, err
	}
	return []Key{myKey("documents", doc)}, nil
}

// update sets columns of the row id of table and returns its key if the row exists. set must
// change the row, as a revision counter does: MariaDB counts only the rows an UPDATE changes.
func (x *mySession) update(table string, id int64, set string) ([]Key, error) {
	res, err := x.c.Execute("UPDATE " + table + " SET " + set + " WHERE id = " + strconv.FormatInt(id, 10))
	if err != nil || res.AffectedRows == 0 {
		return nil, err
	}
	return []Key{myKey(table, id)}, nil
}

func myKey(table string, id int64) Key { return Key{Table: table, ID: strconv.FormatInt(id, 10)} }

package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/migrated/migrated/internal/schema"
)

// AppName is the application_name of every session migrated opens. A fence spares these
// sessions, and an operator can tell them apart in pg_stat_activity.
const AppName = "migrated"

// sessionOptions keep migrated's own sessions writable on a fenced database: a fence changes
// the database's default, and a client's startup options take precedence over it.
const sessionOptions = "-c default_transaction_read_only=off"

// SessionDSN returns dsn with migrated's application_name and session options added, for every
// connection migrated makes (libpq tools such as pg_dump accept the same keywords). A keyword
// DSN that sets options itself is refused: both cannot be honoured.
func SessionDSN(dsn string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("the DSN is not a valid URL")
		}
		q := u.Query()
		if q.Get("application_name") == "" {
			q.Set("application_name", AppName)
		}
		q.Set("options", strings.TrimSpace(q.Get("options")+" "+sessionOptions))
		// Spaces as %20: libpq and pgx do not read "+" in a URL as a space.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String(), nil
	}
	for _, field := range strings.Fields(dsn) {
		if strings.HasPrefix(field, "options=") {
			return "", errors.New("the DSN sets options, which migrated needs to set itself; move those settings to ALTER ROLE ... SET")
		}
	}
	out := dsn + " options='" + sessionOptions + "'"
	if !strings.Contains(dsn, "application_name=") {
		out += " application_name=" + AppName
	}
	return out, nil
}

// textSettings fix the settings that shape PostgreSQL's text output of values, for sessions
// whose text is compared or carried to another engine byte for byte: pgoutput prints values
// with its walsender's settings, which otherwise come from the server and the role.
const textSettings = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1 -c bytea_output=hex"

// TextDSN returns a SessionDSN result with textSettings added to its options.
func TextDSN(sessionDSN string) (string, error) {
	if strings.HasPrefix(sessionDSN, "postgres://") || strings.HasPrefix(sessionDSN, "postgresql://") {
		u, err := url.Parse(sessionDSN)
		if err != nil {
			return "", errors.New("the DSN is not a valid URL")
		}
		q := u.Query()
		q.Set("options", strings.TrimSpace(q.Get("options")+" "+textSettings))
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String(), nil
	}
	old := "options='" + sessionOptions + "'"
	if !strings.Contains(sessionDSN, old) {
		return "", errors.New("the DSN has not been through SessionDSN")
	}
	return strings.Replace(sessionDSN, old, "options='"+sessionOptions+" "+textSettings+"'", 1), nil
}

// Fence makes conn's database read-only for the application: new sessions default to read-only
// transactions, and every existing client session other than migrated's own is terminated, and
// waited for, so that no commit can land after the returned position. It is idempotent.
//
// A session that sets default_transaction_read_only or transaction_read_only off itself can still
// write, as can a superuser who does; the runbook says to check pg_stat_activity for such roles.
func Fence(ctx context.Context, conn *pgx.Conn, wait time.Duration) (LSN, int, error) {
	db, err := currentDatabase(ctx, conn)
	if err != nil {
		return 0, 0, err
	}
	// A prepared transaction can be committed from a read-only session, after the fence position.
	var prepared int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()`).Scan(&prepared); err != nil {
		return 0, 0, fmt.Errorf("look for prepared transactions: %w", err)
	}
	if prepared > 0 {
		return 0, 0, fmt.Errorf("%s has %d prepared transaction(s) (pg_prepared_xacts), which could commit after the fence; COMMIT PREPARED or ROLLBACK PREPARED them, then try again", db, prepared)
	}
	var fencedAt time.Time
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+quote(db)+" SET default_transaction_read_only = on"); err != nil {
		return 0, 0, fmt.Errorf("fence database %s (ALTER DATABASE ... SET default_transaction_read_only = on): %w; the migrated role must own the database or be a superuser", db, err)
	}
	// Sessions that start after this moment read the fence; only older ones need ending.
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&fencedAt); err != nil {
		return 0, 0, fmt.Errorf("read the time of the fence: %w", err)
	}
	killed := map[int32]bool{}
	deadline := time.Now().Add(wait)
	for {
		// Sessions that started before the ALTER committed still default to writable.
		var pids []int32
		err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(pid) FILTER (WHERE pg_terminate_backend(pid)), '{}')
		  FROM pg_stat_activity
		  WHERE `+appSessions+` AND coalesce(backend_start, '-infinity') <= $2`, AppName+"%", fencedAt).Scan(&pids)
		if err != nil {
			return 0, len(killed), fmt.Errorf("terminate application sessions on %s: %w; the migrated role needs pg_signal_backend", db, err)
		}
		left := len(pids)
		if left == 0 {
			break
		}
		for _, p := range pids {
			killed[p] = true
		}
		if time.Now().After(deadline) {
			return 0, len(killed), fmt.Errorf("%d application session(s) on %s did not exit within %s of being terminated", left, db, wait)
		}
		select {
		case <-ctx.Done():
			return 0, len(killed), ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The insert position, not the write position: with synchronous_commit off, a commit is
	// acknowledged before its WAL is written, and it must still fall before the fence.
	lsn, err := CurrentLSN(ctx, conn)
	return lsn, len(killed), err
}

// appSessions selects the application sessions of the current database in pg_stat_activity: every
// client session but migrated's own. A role without pg_read_all_stats sees other roles' sessions
// with most columns NULL, backend_type and application_name included; those count as
// application sessions, so a fence never skips one silently. $1 is AppName+"%".
const appSessions = `datname = current_database() AND pid <> pg_backend_pid()
	AND (backend_type = 'client backend' OR backend_type IS NULL)
	AND coalesce(application_name, '') NOT LIKE $1`

// CheckFence reports why the role of conn could not fence its database, or nil if it can: it
// must own the database (or be a superuser) to ALTER DATABASE, and be allowed to terminate the
// application's sessions.
func CheckFence(ctx context.Context, conn *pgx.Conn) error {
	var super, owner, signal bool
	var user, db string
	err := conn.QueryRow(ctx, `SELECT r.rolsuper, pg_has_role(d.datdba, 'MEMBER'), pg_has_role('pg_signal_backend', 'MEMBER'),
	    current_user, current_database()
	  FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`).Scan(&super, &owner, &signal, &user, &db)
	if err != nil {
		return fmt.Errorf("read the role's privileges: %w", err)
	}
	if super {
		return nil
	}
	var missing []string
	if !owner {
		missing = append(missing, fmt.Sprintf("own database %s (ALTER DATABASE %s OWNER TO %s)", db, quote(db), quote(user)))
	}
	if !signal {
		missing = append(missing, fmt.Sprintf("terminate sessions (GRANT pg_signal_backend TO %s)", quote(user)))
	}
	if len(missing) > 0 {
		return fmt.Errorf("role %s cannot fence %s: it must %s", user, db, strings.Join(missing, " and "))
	}
	return nil
}

// RefusedByFence reports whether err is how a fence turns an application's write away: a
// read-only transaction, a terminated session, a connection lost or refused while it reconnects.
// Such a write did not commit; an application (the demo's writer, the bench's) retries it on the
// side the routing hook points at.
func RefusedByFence(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "25006" || strings.HasPrefix(pgErr.Code, "57P") || strings.HasPrefix(pgErr.Code, "08")
	}
	var connectErr *pgconn.ConnectError
	var netErr *net.OpError
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Unfence lifts Fence: new sessions are writable again. Application sessions still open began
// under the fence and keep its read-only default for their lifetime, so they are terminated too:
// pools reconnect, and the new sessions can write. It is idempotent: on a database that is not
// fenced it does nothing, so a retry never ends writable sessions.
func Unfence(ctx context.Context, conn *pgx.Conn) error {
	db, err := currentDatabase(ctx, conn)
	if err != nil {
		return err
	}
	// Not fenced: nothing to lift, and the sessions open now are writable ones, left alone.
	if on, err := Fenced(ctx, conn); err != nil || !on {
		return err
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+quote(db)+" RESET default_transaction_read_only"); err != nil {
		return fmt.Errorf("unfence database %s (ALTER DATABASE ... RESET default_transaction_read_only): %w", db, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	  WHERE `+appSessions+` AND coalesce(backend_start, '-infinity') <= clock_timestamp()`, AppName+"%"); err != nil {
		return fmt.Errorf("end the read-only application sessions on %s: %w; the migrated role needs pg_signal_backend", db, err)
	}
	return nil
}

// Fenced reports whether conn's database is fenced.
func Fenced(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
	  WHERE d.datname = current_database() AND s.setrole = 0
	    AND 'default_transaction_read_only=on' = ANY (s.setconfig)`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read the fence state: %w", err)
	}
	return n > 0, nil
}

func currentDatabase(ctx context.Context, conn *pgx.Conn) (string, error) {
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return "", fmt.Errorf("read the database name: %w", err)
	}
	return db, nil
}

// SequenceSet is one sequence moved forward by SyncSequences.
type SequenceSet struct {
	Name     string
	From, To int64
}

// SyncSequences sets every sequence on to that also exists on from past from's value, by gap
// increments, so that the side taking writes next never hands out an id the other side already
// used. A sequence is never moved backwards; one never used on from is left alone.
func SyncSequences(ctx context.Context, from, to *pgx.Conn, gap int64) ([]SequenceSet, error) {
	// last_value is NULL both for a sequence never used and for one the role may not read: the
	// second must fail loudly, or the new side would hand out ids already used.
	const q = `SELECT format('%I.%I', schemaname, sequencename), last_value, increment_by,
	    has_sequence_privilege(format('%I.%I', schemaname, sequencename), 'SELECT')
	  FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema', '_migrated')`
	type seq struct {
		last *int64
		inc  int64
	}
	read := func(conn *pgx.Conn) (map[string]seq, error) {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("read sequences: %w", err)
		}
		out := map[string]seq{}
		var denied []string
		var name string
		var s seq
		var readable bool
		_, err = pgx.ForEachRow(rows, []any{&name, &s.last, &s.inc, &readable}, func() error {
			if !readable {
				denied = append(denied, name)
			}
			out[name] = s
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read sequences: %w", err)
		}
		if len(denied) > 0 {
			return nil, fmt.Errorf("the migrated role cannot read %d sequence(s): %s; GRANT SELECT ON ALL SEQUENCES IN SCHEMA ... TO it", len(denied), strings.Join(limit(denied, 10), ", "))
		}
		return out, nil
	}
	src, err := read(from)
	if err != nil {
		return nil, err
	}
	dst, err := read(to)
	if err != nil {
		return nil, err
	}
	var set []SequenceSet
	for name, s := range src {
		d, ok := dst[name]
		if !ok || s.last == nil {
			continue
		}
		want := *s.last + gap*s.inc
		if d.last != nil && ((s.inc > 0 && *d.last >= want) || (s.inc < 0 && *d.last <= want)) {
			continue
		}
		if _, err := to.Exec(ctx, "SELECT setval($1::regclass, $2, true)", name, want); err != nil {
			return set, fmt.Errorf("set sequence %s to %d: %w", name, want, err)
		}
		var old int64
		if d.last != nil {
			old = *d.last
		}
		set = append(set, SequenceSet{Name: name, From: old, To: want})
	}
	return set, nil
}

// FlushMark commits a tiny transaction with synchronous_commit on, so the WAL written before it
// (a heartbeat after a fence) is flushed and reaches the stream now, not at the WAL writer's
// next round.
func FlushMark(ctx context.Context, conn *pgx.Conn) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, 'migrated.flush', '')")
		return err
	})
}

// CountRows counts the rows of each given root table (a root's count covers its partitions).
func CountRows(ctx context.Context, conn *pgx.Conn, tables []*schema.Table) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range tables {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+ident(t.ID)).Scan(&n); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", ident(t.ID), err)
		}
		out[t.ID.Schema+"."+t.ID.Name] = n
	}
	return out, nil
}

// Querier runs a query returning one row: a connection, a pool or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CurrentLSN returns the server's WAL insert position now: past every commit that has been
// acknowledged, even with synchronous_commit off, where the write position may not be yet.
func CurrentLSN(ctx context.Context, q Querier) (LSN, error) {
	var pos string
	if err := q.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&pos); err != nil {
		return 0, fmt.Errorf("read the WAL position: %w", err)
	}
	return ParseLSN(pos)
}

package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/migrated/migrated/internal/schema"
)

// Problem is one failed preflight check. Message says what is wrong and what to do about it.
type Problem struct {
	Check   string `json:"check"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Check + ": " + p.Message }

// minVersion is PostgreSQL 13: pgoutput messages and publish_via_partition_root.
const minVersion = 130000

// CheckSource runs the read-only source checks. It changes nothing on the source: no slot, no
// publication, no setting. slotName is the slot the migration will own; it may already exist
// when the migration is resuming.
func CheckSource(ctx context.Context, conn *pgx.Conn, tables []*schema.Table, slotName string) ([]Problem, error) {
	var probs []Problem
	add := func(check, format string, args ...any) {
		probs = append(probs, Problem{Check: check, Message: fmt.Sprintf(format, args...)})
	}

	var (
		version                       int
		walLevel                      string
		maxSlots, usedSlots, ownSlots int
		maxSenders, usedSenders       int
		superuser, replication        bool
		canCreate                     bool
		user, database                string
	)
	err := conn.QueryRow(ctx, `
SELECT current_setting('server_version_num')::int, current_setting('wal_level'),
       current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_slots)::int,
       (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)::int,
       current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_stat_replication)::int,
       r.rolsuper, r.rolreplication,
       has_database_privilege(current_database(), 'CREATE'),
       current_user, current_database()
  FROM pg_roles r WHERE r.rolname = current_user`, slotName).Scan(
		&version, &walLevel, &maxSlots, &usedSlots, &ownSlots, &maxSenders, &usedSenders,
		&superuser, &replication, &canCreate, &user, &database)
	if err != nil {
		return nil, fmt.Errorf("read source settings: %w", err)
	}
	if version < minVersion {
		add("version", "source runs PostgreSQL %d.%d; migrated needs 13 or later", version/10000, version%10000)
	}
	if walLevel != "logical" {
		add("wal_level", "source wal_level is %s; set wal_level = logical in postgresql.conf and restart the source", walLevel)
	}
	// One slot for the migration, and one more for a fresh snapshot when a copy resumes.
	if need := 2 - ownSlots; maxSlots-usedSlots < need {
		add("max_replication_slots", "source has %d of %d replication slots in use and migrated needs %d free; raise max_replication_slots and restart the source, or drop unused slots (SELECT pg_drop_replication_slot(name))",
			usedSlots, maxSlots, need)
	}
	if maxSenders-usedSenders < 2 {
		add("max_wal_senders", "source has %d of %d WAL senders in use and migrated needs 2 free; raise max_wal_senders and restart the source",
			usedSenders, maxSenders)
	}
	if !superuser && !replication {
		add("privileges", "role %s cannot start replication; run ALTER ROLE %s REPLICATION on the source", user, pgx.Identifier{user}.Sanitize())
	}
	if !superuser && !canCreate {
		add("privileges", "role %s cannot create a publication; run GRANT CREATE ON DATABASE %s TO %s on the source", user, pgx.Identifier{database}.Sanitize(), pgx.Identifier{user}.Sanitize())
	}
	if len(tables) == 0 {
		add("tables", "no source table matches the tables section of the config; check tables.include-schemas and tables.include-tables")
	}
	var noKey []string
	for _, t := range tables {
		if t.IsRoot() && len(t.Key) == 0 {
			noKey = append(noKey, t.ID.String())
		}
	}
	if len(noKey) > 0 {
		add("primary keys", "%d table(s) have no primary key or replica identity index, so changes cannot be applied by key: %s; add a primary key, or ALTER TABLE ... REPLICA IDENTITY USING INDEX on a unique index over NOT NULL columns, or exclude the table with tables.exclude-tables",
			len(noKey), strings.Join(limit(noKey, 10), ", "))
	}
	if !superuser {
		denied, err := tablesWithout(ctx, conn, tables, "has_table_privilege(c.oid, 'SELECT')")
		if err != nil {
			return nil, err
		}
		if len(denied) > 0 {
			add("privileges", "role %s cannot read %d table(s): %s; GRANT SELECT on them to %s",
				user, len(denied), strings.Join(limit(denied, 10), ", "), pgx.Identifier{user}.Sanitize())
		}
		notOwned, err := tablesWithout(ctx, conn, tables, "pg_has_role(c.relowner, 'USAGE')")
		if err != nil {
			return nil, err
		}
		if len(notOwned) > 0 {
			add("privileges", "role %s does not own %d table(s), so it cannot publish them: %s; run migrated as the tables' owner or a superuser, or create the publication yourself",
				user, len(notOwned), strings.Join(limit(notOwned, 10), ", "))
		}
	}
	return probs, nil
}

func tablesWithout(ctx context.Context, conn *pgx.Conn, tables []*schema.Table, cond string) ([]string, error) {
	var names []string
	for _, t := range Roots(tables) {
		names = append(names, pgx.Identifier{t.ID.Schema, t.ID.Name}.Sanitize())
	}
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', s.nspname, c.relname) FROM unnest($1::text[]) AS n(name)
	  JOIN pg_class c ON c.oid = n.name::regclass JOIN pg_namespace s ON s.oid = c.relnamespace WHERE NOT `+cond+` ORDER BY 1`, names)
	if err != nil {
		return nil, fmt.Errorf("check table privileges: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// CheckTarget checks that the target can receive the migration. fresh is true when no migration
// state exists on the target yet: then the tables must not exist there.
func CheckTarget(ctx context.Context, conn *pgx.Conn, tables []*schema.Table, fresh bool) ([]Problem, error) {
	var probs []Problem
	var version int
	var superuser, canCreate bool
	var user, database string
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, r.rolsuper,
	       has_database_privilege(current_database(), 'CREATE'), current_user, current_database()
	  FROM pg_roles r WHERE r.rolname = current_user`).Scan(&version, &superuser, &canCreate, &user, &database)
	if err != nil {
		return nil, fmt.Errorf("read target settings: %w", err)
	}
	if version < minVersion {
		probs = append(probs, Problem{"target version", fmt.Sprintf("target runs PostgreSQL %d.%d; migrated needs 13 or later", version/10000, version%10000)})
	}
	if !superuser && !canCreate {
		probs = append(probs, Problem{"target privileges", fmt.Sprintf("role %s cannot create schemas on the target; run GRANT CREATE ON DATABASE %s TO %s on the target", user, pgx.Identifier{database}.Sanitize(), pgx.Identifier{user}.Sanitize())})
	}
	if !fresh {
		return probs, nil
	}
	var names []string
	for _, t := range tables {
		names = append(names, t.ID.String())
	}
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  WHERE c.relkind IN ('r','p') AND n.nspname || '.' || c.relname = ANY($1) ORDER BY 1`, names)
	if err != nil {
		return nil, fmt.Errorf("check target tables: %w", err)
	}
	existing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("check target tables: %w", err)
	}
	if len(existing) > 0 {
		probs = append(probs, Problem{"target tables", fmt.Sprintf("target already has %d of the tables to migrate (%s) and no migration state; migrate into an empty database, or drop those tables on the target",
			len(existing), strings.Join(limit(existing, 10), ", "))})
	}
	return probs, nil
}

func limit(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(list[:n:n], fmt.Sprintf("and %d more", len(list)-n))
}

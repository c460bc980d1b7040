package schema

import (
	"regexp"
	"strings"
	"time"
)

// Column defaults across engines. The defaults an application relies on after a cutover are
// nearly always a literal or the current time; those are translated. Any other expression (a
// function, a cast of something else, a sequence) is not carried: the caller reports it, so
// that it can be set on the target by hand. A literal that holds a quote or a backslash is not
// carried either, rather than risk its escaping.

var (
	numberRe  = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)
	quotedRe  = regexp.MustCompile(`^'([^'\\]*)'$`)
	nowRe     = regexp.MustCompile(`(?i)^(current_timestamp|now|localtimestamp|statement_timestamp|transaction_timestamp)(\(\s*[0-9]*\s*\))?$`)
	todayRe   = regexp.MustCompile(`(?i)^(current_date|curdate)(\(\s*\))?$`)
	pgCastRe  = regexp.MustCompile(`^(.*)::[a-z][a-z0-9_ ]*(\([0-9, ]+\))?(\[\])?$`)
	parenRe   = regexp.MustCompile(`^\((.*)\)$`)
	fspRe     = regexp.MustCompile(`\(([0-6])\)`)
	pgNumeric = regexp.MustCompile(`^(smallint|integer|bigint|real|double precision|numeric(\([0-9, ]+\))?)$`)
	myNumeric = regexp.MustCompile(`^(tinyint|smallint|mediumint|int|bigint|decimal|float|double)\b`)
)

// carried returns expr only when it is carried.
func carried(expr string, ok bool) (string, bool) {
	if !ok {
		return "", false
	}
	return expr, true
}

// validLiteral reports whether s is a value of the date or time type typ (either engine's
// name), in the form both engines read; a year 0 or a zero date is not.
func validLiteral(s, typ string) bool {
	switch {
	case strings.HasPrefix(typ, "date"):
		if typ == "date" {
			t, err := time.Parse("2006-01-02", s)
			return err == nil && t.Year() >= 1
		}
		fallthrough
	case strings.HasPrefix(typ, "timestamp"):
		for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04:05.999999"} {
			if t, err := time.Parse(layout, s); err == nil && t.Year() >= 1 {
				return true
			}
		}
		return false
	case strings.HasPrefix(typ, "time"):
		_, err := time.Parse("15:04:05.999999", s)
		return err == nil
	}
	return true
}

// PGDefault translates a MySQL column default, as MariaDB's information_schema prints it
// (literals quoted, expressions as SQL, NULL for none), for a PostgreSQL column of type pgType.
// It returns "" and true for no default, and false for one it does not carry. (MySQL 8 prints
// string literals unquoted; the catalog reader quotes them, see mysql.parseColumn.)
func PGDefault(def, pgType string) (string, bool) { return carried(pgDefault(def, pgType)) }

func pgDefault(def, pgType string) (string, bool) {
	d := strings.TrimSpace(def)
	timeType := strings.HasPrefix(pgType, "timestamp") || strings.HasPrefix(pgType, "date") || strings.HasPrefix(pgType, "time")
	switch {
	case d == "" || strings.EqualFold(d, "NULL"):
		return "", true
	case numberRe.MatchString(d):
		return d, pgNumeric.MatchString(pgType)
	case nowRe.MatchString(d):
		return "CURRENT_TIMESTAMP", strings.HasPrefix(pgType, "timestamp")
	case todayRe.MatchString(d):
		return "CURRENT_DATE", pgType == "date"
	}
	m := quotedRe.FindStringSubmatch(d)
	if m == nil {
		return "", false
	}
	s := m[1]
	switch {
	case pgNumeric.MatchString(pgType):
		return s, numberRe.MatchString(s)
	case strings.Contains(pgType, "with time zone"):
		// MySQL prints a TIMESTAMP literal in the session's time zone, without saying which.
		return "", false
	case timeType:
		return "'" + s + "'", validLiteral(s, pgType)
	case pgType == "text" || pgType == "json" || pgType == "jsonb" ||
		strings.HasPrefix(pgType, "character varying") || strings.HasPrefix(pgType, "character("):
		return "'" + s + "'", true
	}
	return "", false
}

// MySQLDefault translates a PostgreSQL column default, as pg_get_expr prints it ('x'::text,
// 42, true, now(), ...), of a column of type pgType for a MySQL column of type myType. It
// returns "" and true for no default, and false for one it does not carry (nextval, other
// functions, other casts, arrays).
func MySQLDefault(def, pgType, myType string) (string, bool) {
	return carried(mysqlDefault(def, pgType, myType))
}

func mysqlDefault(def, pgType, myType string) (string, bool) {
	d := strings.TrimSpace(def)
	for {
		// Casts and parentheses around a literal: 'x'::text, '-1'::integer, (-1).
		if m := pgCastRe.FindStringSubmatch(d); m != nil {
			if m[3] != "" {
				return "", false // an array, whose text MySQL would take as it is
			}
			d = strings.TrimSpace(m[1])
			continue
		}
		if m := parenRe.FindStringSubmatch(d); m != nil {
			d = strings.TrimSpace(m[1])
			continue
		}
		break
	}
	t := strings.ToLower(myType)
	textLike := strings.HasSuffix(t, "text") || strings.Contains(t, "text ") || strings.HasPrefix(t, "json")
	switch {
	case d == "" || strings.EqualFold(d, "NULL"):
		return "", true
	case strings.EqualFold(d, "true") || strings.EqualFold(d, "false"):
		if !strings.HasPrefix(t, "tinyint") {
			return "", false
		}
		if strings.EqualFold(d, "true") {
			return "1", true
		}
		return "0", true
	case numberRe.MatchString(d):
		return d, myNumeric.MatchString(t)
	case nowRe.MatchString(d):
		if !strings.HasPrefix(t, "datetime") && !strings.HasPrefix(t, "timestamp") {
			return "", false
		}
		// The precision must be the column's. A timestamptz becomes a datetime holding UTC
		// (the copied rows are in UTC), whatever the application session's time zone.
		now, fsp := "CURRENT_TIMESTAMP", ""
		if m := fspRe.FindStringSubmatch(t); m != nil {
			fsp = "(" + m[1] + ")"
		}
		if strings.Contains(pgType, "with time zone") {
			return "(UTC_TIMESTAMP" + fsp + ")", true
		}
		return now + fsp, true
	case todayRe.MatchString(d):
		return "(CURRENT_DATE)", t == "date"
	}
	m := quotedRe.FindStringSubmatch(d)
	if m == nil {
		return "", false
	}
	s := m[1]
	switch {
	case myNumeric.MatchString(t):
		return s, numberRe.MatchString(s)
	case strings.HasPrefix(t, "date") || strings.HasPrefix(t, "timestamp") || strings.HasPrefix(t, "time"):
		return "'" + s + "'", validLiteral(s, t)
	case textLike:
		// MySQL 8 takes a TEXT or JSON default only as an expression; MariaDB takes both.
		return "('" + s + "')", true
	case strings.HasPrefix(t, "varchar") || strings.HasPrefix(t, "char") || strings.HasPrefix(t, "enum"):
		return "'" + s + "'", true
	}
	return "", false
}

package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Engines.
const (
	EnginePostgres = "postgres"
	EngineMySQL    = "mysql"
)

// ErrNotPostgres is returned by PostgresDSN for an endpoint whose engine is not postgres.
var ErrNotPostgres = errors.New("config: endpoint engine is not postgres")

// Errors about a DSN never quote it: it may hold a password.
var (
	errPostgresURL = errors.New(`is not a valid postgres URL; percent-encode any "@", ":", "/", "?" or "#" in the user name and password`)
	errKeywordDSN  = errors.New(`is not a valid keyword/value string such as "host=db1 user=migrated dbname=app"; quote values that contain spaces with '...'`)
	errMySQLURL    = errors.New(`must be a URL such as mysql://user@host:3306/db; percent-encode any "@", ":", "/", "?" or "#" in the user name and password`)
)

// Redacted returns the endpoint's DSN with any password removed, for status output and logs.
func (e Endpoint) Redacted() string { return Redact(e.DSN) }

// PostgresDSN returns a DSN for pgx with the password from Password (or PasswordFile, which
// Load has read into Password) applied. That password replaces any in the DSN. A URL keeps
// its form; a keyword/value string gets password='...' appended, quoted and escaped.
func (e Endpoint) PostgresDSN() (string, error) {
	if e.Engine != EnginePostgres {
		return "", ErrNotPostgres
	}
	if e.Password == "" {
		return e.DSN, nil
	}
	if isPostgresURL(e.DSN) {
		u, err := url.Parse(e.DSN)
		if err != nil {
			return "", fmt.Errorf("config: postgres dsn %w", errPostgresURL)
		}
		var user string
		if u.User != nil {
			user = u.User.Username()
		}
		u.User = url.UserPassword(user, e.Password)
		// pgx lets a password query parameter override the userinfo, so drop it.
		u.RawQuery = filterQuery(u.RawQuery, func(key string) bool { return key == "password" })
		return u.String(), nil
	}
	pairs, err := parseKeywordDSN(e.DSN)
	if err != nil {
		return "", fmt.Errorf("config: postgres dsn %w", errKeywordDSN)
	}
	// Rebuild from the parsed pairs rather than splice the text: a trailing backslash in
	// the last value would otherwise escape the space before the appended password.
	var b strings.Builder
	for _, p := range pairs {
		if p.key != "password" {
			b.WriteString(p.key + "=" + formatKeywordValue(p.val) + " ")
		}
	}
	b.WriteString("password=" + quoteKeywordValue(e.Password))
	return b.String(), nil
}

// Redact returns dsn with any password removed so that it can be shown: from a URL's
// userinfo (user:secret@host becomes user@host) and query (password=..., sslpassword=...),
// and from a keyword/value string (password=secret becomes password=REDACTED). When dsn is
// too malformed to tell where a password would end, Redact removes more rather than less.
func Redact(dsn string) string {
	if dsn == "" {
		return ""
	}
	if i := schemeEnd(dsn); i > 0 {
		return dsn[:i] + redactAuthority(dsn[i:])
	}
	if pairs, err := parseKeywordDSN(dsn); err == nil {
		var b strings.Builder
		last := 0
		for _, p := range pairs {
			if isSecretKey(p.key) {
				b.WriteString(dsn[last:p.start])
				b.WriteString(p.key + "=REDACTED")
				last = p.end
			}
		}
		b.WriteString(dsn[last:])
		return b.String()
	}
	// A go-sql-driver style DSN, user:secret@tcp(host:3306)/db.
	if strings.Contains(dsn, "@") {
		return redactAuthority(dsn)
	}
	if strings.Contains(strings.ToLower(dsn), "password") {
		return "REDACTED"
	}
	return dsn
}

// redactAuthority redacts what follows a URL's "scheme://": userinfo and query.
func redactAuthority(rest string) string {
	var userinfo string
	hasUser := false
	// libpq and pgx end the userinfo at the first '@' that comes before any '/'.
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		userinfo, rest, hasUser = rest[:i], rest[i+1:], true
	}
	// Any '@' left means that the password held an unescaped '@', '/' or '?', or that a
	// query value holds an '@'. The two cannot be told apart, so treat everything up to the
	// last '@' as userinfo: the output may lose its host, but never keeps a password.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if !hasUser {
			userinfo = rest[:at]
		}
		rest, hasUser = rest[at+1:], true
	}
	var out strings.Builder
	// A real user name has these escaped; stopping at them keeps a guessed userinfo that
	// swallowed a path or query from carrying a password=... parameter through.
	if i := strings.IndexAny(userinfo, ":/?#"); i >= 0 {
		userinfo = userinfo[:i]
	}
	if hasUser && userinfo != "" {
		out.WriteString(userinfo + "@")
	}
	head, query, hasQuery := strings.Cut(rest, "?")
	out.WriteString(head)
	if hasQuery {
		query, fragment, hasFragment := strings.Cut(query, "#")
		if q := filterQuery(query, isSecretKey); q != "" {
			out.WriteString("?" + q)
		}
		if hasFragment {
			out.WriteString("#" + fragment)
		}
	}
	return out.String()
}

// filterQuery removes the parameters whose key drop reports, keeping the others in order.
func filterQuery(raw string, drop func(key string) bool) string {
	if raw == "" {
		return ""
	}
	var kept []string
	for _, kv := range strings.Split(raw, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if !drop(k) {
			kept = append(kept, kv)
		}
	}
	return strings.Join(kept, "&")
}

// isSecretKey reports whether a DSN parameter holds a password (password, sslpassword, ...).
func isSecretKey(key string) bool {
	return strings.Contains(strings.ToLower(key), "password")
}

// schemeEnd returns the index just past "scheme://" at the start of s, or 0.
func schemeEnd(s string) int {
	i := strings.Index(s, "://")
	if i <= 0 {
		return 0
	}
	for j, c := range s[:i] {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (j == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return 0
		}
	}
	return i + 3
}

// isPostgresURL uses the same test as pgx to tell a URL from a keyword/value string.
func isPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// kvPair is one key=value of a keyword/value DSN; start and end delimit it in the DSN.
type kvPair struct {
	key, val   string
	start, end int
}

const kvSpace = " \t\n\r\v\f"

// parseKeywordDSN splits a keyword/value DSN the way pgx does (which follows libpq): values
// are bare words or '...' quoted, and a backslash escapes the next character in both.
// Errors never quote the input.
func parseKeywordDSN(s string) ([]kvPair, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errors.New("NUL byte in connection string")
	}
	var pairs []kvPair
	i := len(s) - len(strings.TrimLeft(s, kvSpace))
	for i < len(s) {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, errors.New("keyword without =")
		}
		key := strings.Trim(s[i:i+eq], kvSpace)
		if key == "" || strings.ContainsAny(key, kvSpace) {
			return nil, errors.New("malformed keyword")
		}
		p := kvPair{key: key, start: i}
		j := i + eq + 1
		j += len(s[j:]) - len(strings.TrimLeft(s[j:], kvSpace))
		switch {
		case j == len(s):
			p.end = j
		case s[j] != '\'':
			end := j
			for ; end < len(s) && !strings.ContainsRune(kvSpace, rune(s[end])); end++ {
				if s[end] == '\\' {
					end++
					if end == len(s) {
						break
					}
				}
			}
			p.val, p.end = unescapeKeywordValue(s[j:end]), end
		default:
			end := j + 1
			for ; end < len(s) && s[end] != '\''; end++ {
				if s[end] == '\\' {
					end++
				}
			}
			if end >= len(s) {
				return nil, errors.New("unterminated quoted value")
			}
			p.val, p.end = unescapeKeywordValue(s[j+1:end]), end+1
		}
		pairs = append(pairs, p)
		i = p.end + len(s[p.end:]) - len(strings.TrimLeft(s[p.end:], kvSpace))
	}
	return pairs, nil
}

func unescapeKeywordValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// formatKeywordValue writes v for a keyword/value DSN, quoted only when it has to be.
func formatKeywordValue(v string) string {
	if v == "" || strings.ContainsAny(v, kvSpace+`'\`) {
		return quoteKeywordValue(v)
	}
	return v
}

// quoteKeywordValue quotes v for a keyword/value DSN.
func quoteKeywordValue(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// checkDSN returns why dsn is not usable for engine, or nil. It never quotes dsn.
func checkDSN(engine, dsn string) error {
	switch engine {
	case EnginePostgres:
		if isPostgresURL(dsn) {
			if _, err := url.Parse(dsn); err != nil || ambiguousUserinfo(dsn) {
				return errPostgresURL
			}
			return nil
		}
		if schemeEnd(dsn) > 0 {
			return errors.New(`must start with postgres:// or postgresql://, or be a keyword/value string such as "host=db1 dbname=app"`)
		}
		if pairs, err := parseKeywordDSN(dsn); err != nil || len(pairs) == 0 {
			return errKeywordDSN
		}
	case EngineMySQL:
		if !strings.HasPrefix(dsn, "mysql://") {
			return errMySQLURL
		}
		if u, err := url.Parse(dsn); err != nil || u.Host == "" || ambiguousUserinfo(dsn) {
			return errMySQLURL
		}
	}
	return nil
}

// ambiguousUserinfo reports a URL with more than one '@' before its path, which net/url and
// libpq split differently; the fix is to percent-encode the '@' in the password.
func ambiguousUserinfo(dsn string) bool {
	authority := dsn[schemeEnd(dsn):]
	if i := strings.IndexByte(authority, '/'); i >= 0 {
		authority = authority[:i]
	}
	return strings.Count(authority, "@") > 1
}

package config

import (
	"errors"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"url with password", "postgres://migrated:hunter2@db1:5432/app?sslmode=require", "postgres://migrated@db1:5432/app?sslmode=require"},
		{"url without password", "postgresql://migrated@db1/app", "postgresql://migrated@db1/app"},
		{"url without user", "postgres://db1/app", "postgres://db1/app"},
		{"url password only", "postgres://:hunter2@db1/app", "postgres://db1/app"},
		{"url escaped password", "postgres://u:p%40ss%2Fw@db1/app", "postgres://u@db1/app"},
		{"url password query", "postgres://db1/app?sslmode=require&password=hunter2&application_name=m", "postgres://db1/app?sslmode=require&application_name=m"},
		{"url sslpassword query", "postgres://db1/app?sslpassword=hunter2", "postgres://db1/app"},
		{"url escaped query key", "postgres://db1/app?pass%77ord=hunter2", "postgres://db1/app"},
		{"url raw @ in password", "postgres://u:hun@ter2@db1/app", "postgres://u@db1/app"},
		{"url raw / in password", "postgres://u:hun/ter2@db1/app", "postgres://u@db1/app"},
		{"url raw ? in password", "postgres://u:hun?ter2@db1/app", "postgres://u@db1/app"},
		{"url raw /? in password", "postgres://u:h/u?n=ter2@db1/app", "postgres://u@db1/app"},
		{"url multi host", "postgres://u:hunter2@h1:5432,h2:5433/app", "postgres://u@h1:5432,h2:5433/app"},
		{"mysql url", "mysql://root:hunter2@db1:3306/app", "mysql://root@db1:3306/app"},
		{"keyword", "host=db1 user=u password=hunter2 dbname=app", "host=db1 user=u password=REDACTED dbname=app"},
		{"keyword quoted with spaces and quotes", `host=db1 password='hun ter\'2 \\ x' dbname=app`, "host=db1 password=REDACTED dbname=app"},
		{"keyword spaces around =", "host = db1 password = 'a b' port=5432", "host = db1 password=REDACTED port=5432"},
		{"keyword escaped space", `password=hun\ ter2 host=db1`, "password=REDACTED host=db1"},
		{"keyword sslpassword", "host=db1 sslpassword=hunter2", "host=db1 sslpassword=REDACTED"},
		{"keyword no password", "host=db1 user=u dbname=app", "host=db1 user=u dbname=app"},
		{"keyword empty password", "host=db1 password=", "host=db1 password=REDACTED"},
		{"keyword unterminated quote", "host=db1 password='hunter2", "REDACTED"},
		{"go-sql-driver style", "root:hunter2@tcp(db1:3306)/app", "root@tcp(db1:3306)/app"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got, want := Redact(c.in), c.want; got != want {
				t.Errorf("Redact(%q) = %q, want %q", c.in, got, want)
			}
			if strings.Contains(Redact(c.in), "hunter2") {
				t.Errorf("Redact(%q) keeps the password", c.in)
			}
		})
	}
}

func TestEndpointRedacted(t *testing.T) {
	e := Endpoint{Engine: "postgres", DSN: "postgres://u:hunter2@db1/app", Password: "other"}
	if got, want := e.Redacted(), "postgres://u@db1/app"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
}

func TestPostgresDSN(t *testing.T) {
	for _, c := range []struct {
		name, dsn, password, want string
	}{
		{"url no password", "postgres://u@db1/app", "", "postgres://u@db1/app"},
		{"url password", "postgres://u@db1:5432/app?sslmode=require", "pw", "postgres://u:pw@db1:5432/app?sslmode=require"},
		{"url overrides userinfo", "postgresql://u:old@db1/app", "new", "postgresql://u:new@db1/app"},
		{"url overrides query", "postgres://u@db1/app?password=old&sslmode=disable", "new", "postgres://u:new@db1/app?sslmode=disable"},
		{"url escapes", "postgres://u@db1/app", "p@ss:w/rd?#", "postgres://u:p%40ss%3Aw%2Frd%3F%23@db1/app"},
		{"url no user", "postgres://db1/app", "pw", "postgres://:pw@db1/app"},
		{"keyword no password", "host=db1 user=u", "", "host=db1 user=u"},
		{"keyword password", "host=db1 user=u", "pw", "host=db1 user=u password='pw'"},
		{"keyword quotes", "host=db1", `it's a \ pw`, `host=db1 password='it\'s a \\ pw'`},
		{"keyword overrides", "host=db1 password='old one' dbname=app", "new", "host=db1 dbname=app password='new'"},
		{"keyword empty", "", "pw", "password='pw'"},
		{"keyword requotes", `host = db1  dbname='my app' options=a\ b`, "pw", `host=db1 dbname='my app' options='a b' password='pw'`},
		{"keyword trailing backslash", `host=db1 dbname=app\`, "pw", "host=db1 dbname=app password='pw'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Endpoint{Engine: "postgres", DSN: c.dsn, Password: c.password}.PostgresDSN()
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("PostgresDSN() = %q, want %q", got, c.want)
			}
		})
	}
}

func TestPostgresDSNErrors(t *testing.T) {
	const secret = "hunter2"
	for _, e := range []Endpoint{
		{Engine: "postgres", DSN: "postgres://u:" + secret + "@h:port/db", Password: "pw"},
		{Engine: "postgres", DSN: "host='" + secret, Password: "pw"},
	} {
		_, err := e.PostgresDSN()
		if err == nil {
			t.Fatalf("PostgresDSN(%q): no error", e.DSN)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error contains the secret: %v", err)
		}
	}
	if _, err := (Endpoint{Engine: "mysql", DSN: "mysql://u@h/db"}).PostgresDSN(); !errors.Is(err, ErrNotPostgres) {
		t.Errorf("mysql endpoint: got %v, want ErrNotPostgres", err)
	}
}

// TestKeywordQuoteRoundTrip checks that a quoted value parses back to itself.
func TestKeywordQuoteRoundTrip(t *testing.T) {
	for _, v := range []string{"", "plain", "with space", `q'uote`, `back\slash`, `\'`, `'\\''`, `trailing\`, "tab\tand\nnewline"} {
		pairs, err := parseKeywordDSN("host=h password=" + quoteKeywordValue(v) + " dbname=d")
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got, want := len(pairs), 3; got != want {
			t.Fatalf("%q: %d pairs, want %d", v, got, want)
		}
		if got, want := pairs[1].val, v; got != want {
			t.Errorf("round trip of %q gave %q", v, got)
		}
	}
}

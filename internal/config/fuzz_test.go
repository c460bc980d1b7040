package config

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary files to the parser. It must never panic, and a secret that
// reaches the config only through password-file or token-file must never show up in an
// error, nor in a redacted DSN built with it.
func FuzzParse(f *testing.F) {
	const secret = "PlantedFuzzSecret0123456789"
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(secret+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	// Only the planted file can be read: an input naming /dev/zero or a FIFO would hang.
	read := func(baseDir, name string) (string, error) {
		if filepath.Clean(name) != "secret" {
			return "", errors.New("fuzz: no such file")
		}
		return readSecretFile(baseDir, name)
	}
	vars := env(map[string]string{"FUZZ_VAR": "value", "FUZZ_NUM": "8"})

	for _, seed := range []string{
		"",
		minimal,
		minimal + "  password-file: secret\n",
		minimal + "  password-file: secret\n  password: x\n",
		strings.Replace(minimal, "host=db2 user=migrated dbname=app", "'host=db2 password=old'", 1) + "  password-file: secret\n",
		strings.Replace(minimal, "host=db2 user=migrated dbname=app", "postgres://u:old@db2/app?password=old", 1) + "  password-file: secret\n",
		strings.Replace(minimal, "host=db2 user=migrated dbname=app", "postgres://u@db2:bad/app", 1) + "  password-file: secret\n",
		strings.Replace(minimal, "host=db2 user=migrated dbname=app", "host='db2", 1) + "  password-file: secret\nname: BAD\n",
		minimal + "api: {listen: '0.0.0.0:1', token-file: secret}\n",
		minimal + "snapshot: {workers: ${FUZZ_NUM}, split-rows: 10}\napply: {batch-delay: 5}\n",
		minimal + "cutover: {window: 'Mon-Fri,Sun 22:00-02:00 Europe/Berlin'}\n",
		minimal + "cutover: {hooks: {exec: [/bin/true, x], webhook: 'https://u:p@h/x?t=1', timeout: 5s}, sequence-gap: 0}\nverify: {chunk-rows: 100}\n",
		minimal + "tables: {include-tables: ['a.*', '[x'], exclude-schemas: ['*']}\n",
		minimal + "a: &x {workers: 3}\nsnapshot: *x\n",
		"source:\n  engine: mysql\n  dsn: mysql://u@h:3306/db\n  password: $${FUZZ_VAR}\n  passwrd: x\n",
		"name: x\n---\nname: y\n",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte(secret)) {
			return // the input itself holds the secret; nothing to learn
		}
		cfg, err := parse(data, dir, vars, read)
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error contains the secret:\n%s", err)
			}
			return
		}
		// A config that loaded is valid, so everything derived from it must work.
		for _, e := range []Endpoint{cfg.Source, cfg.Target} {
			if strings.Contains(e.Redacted(), secret) {
				t.Fatalf("Redacted() contains the secret: %s", e.Redacted())
			}
			if e.Engine != EnginePostgres {
				continue
			}
			dsn, err := e.PostgresDSN()
			if err != nil {
				t.Fatalf("PostgresDSN of a valid config: %v", err)
			}
			if strings.Contains(Redact(dsn), secret) {
				t.Fatalf("Redact(PostgresDSN()) contains the secret: %s", Redact(dsn))
			}
			if e.Password != "" {
				if got := passwordOf(t, dsn); got != e.Password {
					t.Fatalf("PostgresDSN() = %q carries password %q, want %q", dsn, got, e.Password)
				}
			}
		}
		if _, err := cfg.Cutover.InWindow(time.Now()); err != nil {
			t.Fatalf("InWindow of a valid config: %v", err)
		}
		cfg.Tables.Match("public", "orders")
		_ = cfg.Cutover.Hooks.RedactedWebhook()
	})
}

// passwordOf reads the password back out of a DSN built by PostgresDSN.
func passwordOf(t *testing.T, dsn string) string {
	if isPostgresURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil || u.User == nil {
			t.Fatalf("PostgresDSN() = %q does not parse back: %v", dsn, err)
		}
		pw, _ := u.User.Password()
		return pw
	}
	pairs, err := parseKeywordDSN(dsn)
	if err != nil || len(pairs) == 0 {
		t.Fatalf("PostgresDSN() = %q does not parse back: %v", dsn, err)
	}
	var pw string
	for _, p := range pairs {
		if p.key == "password" {
			pw = p.val // the last one wins, as in pgx
		}
	}
	return pw
}

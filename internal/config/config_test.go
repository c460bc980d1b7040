package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// minimal is the smallest valid config; cases append to it.
const minimal = `
name: orders
source:
  engine: postgres
  dsn: postgres://migrated@db1:5432/app
target:
  engine: postgres
  dsn: host=db2 user=migrated dbname=app
`

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *ValidationError", err)
	}
	var out []string
	for _, p := range ve.Problems {
		out = append(out, p.String())
	}
	return out
}

func TestParseFull(t *testing.T) {
	data := `
name: orders_to_pg16
source:
  engine: mysql
  dsn: mysql://migrated@db1:3306/app
  password: ${SRC_PASS}
target:
  engine: postgres
  dsn: postgres://migrated@db2:5432/app?sslmode=verify-full
  password: "${DST_PASS}"
tables:
  include-schemas: [app, billing]
  exclude-schemas: [scratch]
  include-tables: ["app.*", "billing.invoices"]
  exclude-tables: ["*.tmp_*"]
  types:
    app.places.location: bytea
    app.events.tags: longtext
snapshot:
  workers: 8
  split-rows: 500000
apply:
  batch-changes: 1000
  batch-delay: 50ms
  workers: 2
stream:
  heartbeat-interval: 2s
  status-interval: 500ms
  reconnect-max-backoff: 1m
cutover:
  max-lag: 2s
  timeout: 1m30s
  window: Sat,Sun 01:00-03:00 UTC
  verify-max-age: 6h
  sequence-gap: 50000
  final-check-max-rows: 2000000
  hooks:
    exec: [/usr/local/bin/route-writes, --to, "${ROUTE_TO}"]
    webhook: https://router.internal/migrated?token=${HOOK_TOKEN}
    timeout: 10s
verify:
  chunk-rows: 5000
api:
  listen: 0.0.0.0:7654
  token: ${API_TOKEN}
log:
  level: debug
  format: json
`
	vars := env(map[string]string{"SRC_PASS": "s3cret", "DST_PASS": "p@ss word", "API_TOKEN": "tok", "ROUTE_TO": "new db", "HOOK_TOKEN": "hooktok"})
	got, err := parse([]byte(data), "", vars, readSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Name:   "orders_to_pg16",
		Source: Endpoint{Engine: "mysql", DSN: "mysql://migrated@db1:3306/app", Password: "s3cret"},
		Target: Endpoint{Engine: "postgres", DSN: "postgres://migrated@db2:5432/app?sslmode=verify-full", Password: "p@ss word"},
		Tables: Tables{
			IncludeSchemas: []string{"app", "billing"},
			ExcludeSchemas: []string{"scratch"},
			IncludeTables:  []string{"app.*", "billing.invoices"},
			ExcludeTables:  []string{"*.tmp_*"},
			Types:          map[string]string{"app.places.location": "bytea", "app.events.tags": "longtext"},
		},
		Snapshot: Snapshot{Workers: 8, SplitRows: 500000},
		Apply:    Apply{BatchChanges: 1000, BatchDelay: Duration(50 * time.Millisecond), Workers: 2},
		Stream: Stream{
			HeartbeatInterval:   Duration(2 * time.Second),
			StatusInterval:      Duration(500 * time.Millisecond),
			ReconnectMaxBackoff: Duration(time.Minute),
		},
		Cutover: Cutover{
			MaxLag:       Duration(2 * time.Second),
			Timeout:      Duration(90 * time.Second),
			Window:       "Sat,Sun 01:00-03:00 UTC",
			VerifyMaxAge: Duration(6 * time.Hour),
			SequenceGap:  50000, FinalCheckMaxRows: 2_000_000,
			Hooks: Hooks{
				Exec:    []string{"/usr/local/bin/route-writes", "--to", "new db"},
				Webhook: "https://router.internal/migrated?token=hooktok",
				Timeout: Duration(10 * time.Second),
			},
		},
		Verify: Verify{ChunkRows: 5000},
		API:    API{Listen: "0.0.0.0:7654", Token: "tok"},
		Log:    Log{Level: "debug", Format: "json"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}

	// Marshalling and parsing again gives the same config back.
	out, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := parse(out, "", env(nil), readSecretFile)
	if err != nil {
		t.Fatalf("parse marshalled config: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, got) {
		t.Fatalf("round trip changed the config:\n%s", out)
	}
	if got, want := again.Apply.BatchDelay.String(), "50ms"; got != want {
		t.Errorf("batch-delay = %q, want %q", got, want)
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := parse([]byte(minimal), "", env(nil), readSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.Name = "orders"
	want.Source = Endpoint{Engine: "postgres", DSN: "postgres://migrated@db1:5432/app"}
	want.Target = Endpoint{Engine: "postgres", DSN: "host=db2 user=migrated dbname=app"}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", *got, want)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"snapshot.workers", got.Snapshot.Workers, 4},
		{"snapshot.split-rows", got.Snapshot.SplitRows, int64(2_000_000)},
		{"apply.batch-changes", got.Apply.BatchChanges, 5000},
		{"apply.batch-delay", got.Apply.BatchDelay.Duration(), 200 * time.Millisecond},
		{"apply.workers", got.Apply.Workers, 4},
		{"stream.heartbeat-interval", got.Stream.HeartbeatInterval.Duration(), time.Second},
		{"stream.status-interval", got.Stream.StatusInterval.Duration(), time.Second},
		{"stream.reconnect-max-backoff", got.Stream.ReconnectMaxBackoff.Duration(), 30 * time.Second},
		{"cutover.max-lag", got.Cutover.MaxLag.Duration(), 5 * time.Second},
		{"cutover.timeout", got.Cutover.Timeout.Duration(), 30 * time.Second},
		{"cutover.verify-max-age", got.Cutover.VerifyMaxAge.Duration(), 24 * time.Hour},
		{"cutover.sequence-gap", got.Cutover.SequenceGap, int64(1000)},
		{"cutover.final-check-max-rows", got.Cutover.FinalCheckMaxRows, int64(100000)},
		{"cutover.hooks.exec", len(got.Cutover.Hooks.Exec), 0},
		{"cutover.hooks.webhook", got.Cutover.Hooks.Webhook, ""},
		{"cutover.hooks.timeout", got.Cutover.Hooks.Timeout.Duration(), 30 * time.Second},
		{"verify.chunk-rows", got.Verify.ChunkRows, 10000},
		{"api.listen", got.API.Listen, "127.0.0.1:7654"},
		{"log.level", got.Log.Level, "info"},
		{"log.format", got.Log.Format, "auto"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseProblems(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string // every line of the error, in order
	}{
		{"empty file", "", []string{
			"config: name: required; name the migration, e.g. orders_to_pg16",
			`config: source.engine: required; set "postgres" or "mysql"`,
			"config: source.dsn: required",
			`config: target.engine: required; set "postgres" or "mysql"`,
			"config: target.dsn: required",
		}},
		{"missing dsn", strings.Replace(minimal, "  dsn: postgres://migrated@db1:5432/app\n", "", 1), []string{"config: source.dsn: required"}},
		{"duplicate key", minimal + "  dsn: host=db3\nsnapshot: {workers: 0}\n", []string{
			"config: target.dsn: is set twice, on lines 8 and 9; keep one",
		}},
		{"workers zero", minimal + "snapshot: {workers: 0}\n", []string{"config: snapshot.workers: must be between 1 and 64, got 0"}},
		{"workers too many", minimal + "snapshot: {workers: 65}\n", []string{"config: snapshot.workers: must be between 1 and 64, got 65"}},
		{"split rows", minimal + "snapshot: {split-rows: 10}\n", []string{"config: snapshot.split-rows: must be at least 1000, got 10"}},
		{"batch changes", minimal + "apply: {batch-changes: 1000001}\n", []string{"config: apply.batch-changes: must be between 1 and 1000000, got 1000001"}},
		{"heartbeat", minimal + "stream: {heartbeat-interval: 10ms}\n", []string{"config: stream.heartbeat-interval: must be between 100ms and 1h, got 10ms"}},
		{"zero duration", minimal + "cutover: {timeout: 0s}\n", []string{"config: cutover.timeout: must be greater than 0, got 0s"}},
		{"bad duration", minimal + "apply: {batch-delay: 200}\n", []string{`config: apply.batch-delay: invalid duration "200": write a number with a unit, such as "200ms", "5s" or "1m30s"`}},
		{"wrong type", minimal + "snapshot: {workers: many}\n", []string{"config: snapshot.workers: cannot unmarshal !!str `many` into int"}},
		{"bad name", strings.Replace(minimal, "orders", "Orders-1", 1), []string{`config: name: must be a lowercase letter followed by up to 40 lowercase letters, digits or _, got "Orders-1"`}},
		{"bad engine", strings.Replace(minimal, "engine: postgres", "engine: oracle", 1), []string{`config: source.engine: must be "postgres" or "mysql" (also for MariaDB), got "oracle"`}},
		{"mysql dsn", strings.Replace(minimal, "engine: postgres", "engine: mysql", 1), []string{
			`config: source.dsn: must be a URL such as mysql://user@host:3306/db; percent-encode any "@", ":", "/", "?" or "#" in the user name and password`,
		}},
		{"same database", strings.Replace(minimal, "host=db2 user=migrated dbname=app", "postgres://migrated@db1:5432/app", 1), []string{
			"config: target.dsn: is the same as source.dsn; the target must be a different database",
		}},
		{"table pattern", minimal + "tables: {include-tables: [public.orders, orders]}\n", []string{
			`config: tables.include-tables[1]: "orders" must be schema.table, e.g. "public.orders" or "public.*"`,
		}},
		{"type override keys", minimal + "tables:\n  types:\n    app.t: int\n    app.t.c: ''\n    app..c: int\n    a.b.c.d: int\n    app.t.ok: decimal(65,30)\n", []string{
			`config: tables.types["a.b.c.d"]: must be schema.table.column, e.g. "app.orders.total"; names containing a dot cannot be overridden`,
			`config: tables.types["app..c"]: must be schema.table.column, e.g. "app.orders.total"; names containing a dot cannot be overridden`,
			`config: tables.types["app.t"]: must be schema.table.column, e.g. "app.orders.total"; names containing a dot cannot be overridden`,
			`config: tables.types["app.t.c"]: must name the target column type, e.g. "decimal(65,30)"`,
		}},
		{"type override not a map", minimal + "tables: {types: [a.b.c]}\n", []string{
			"config: tables.types: cannot unmarshal !!seq into map[string]string",
		}},
		{"bad glob", minimal + "tables: {exclude-schemas: ['[a']}\n", []string{`config: tables.exclude-schemas[0]: "[a" is not a valid glob pattern`}},
		{"window", minimal + "cutover: {window: 'Sat 01:00-03:00'}\n", []string{
			`config: cutover.window: must be "DAYS HH:MM-HH:MM ZONE", e.g. "Sat 01:00-03:00 UTC" or "Mon-Fri 22:00-02:00 Europe/Berlin"`,
		}},
		{"verify max age negative", minimal + "cutover: {verify-max-age: -1s}\n", []string{
			"config: cutover.verify-max-age: must be 0 (a verify of any age) or more, got -1s",
		}},
		{"verify max age zero", minimal + "cutover: {verify-max-age: 0s}\n", nil},
		{"sequence gap negative", minimal + "cutover: {sequence-gap: -1}\n", []string{
			"config: cutover.sequence-gap: must be between 0 and 1000000000000, got -1",
		}},
		{"sequence gap too big", minimal + "cutover: {sequence-gap: 1000000000001}\n", []string{
			"config: cutover.sequence-gap: must be between 0 and 1000000000000, got 1000000000001",
		}},
		{"sequence gap zero", minimal + "cutover: {sequence-gap: 0}\n", nil},
		{"final check max rows negative", minimal + "cutover: {final-check-max-rows: -1}\n", []string{
			"config: cutover.final-check-max-rows: must be between 0 and 1000000000000, got -1",
		}},
		{"hook exec empty command", minimal + "cutover: {hooks: {exec: ['', --to-target]}}\n", []string{
			"config: cutover.hooks.exec[0]: must name the command to run, e.g. [/usr/local/bin/route-writes, --to-target]; it runs without a shell",
		}},
		{"hook exec empty list", minimal + "cutover: {hooks: {exec: []}}\n", nil},
		{"hook webhook scheme", minimal + "cutover: {hooks: {webhook: 'ftp://router/x'}}\n", []string{
			"config: cutover.hooks.webhook: must be an http:// or https:// URL, e.g. https://router.internal/migrated",
		}},
		{"hook webhook no scheme", minimal + "cutover: {hooks: {webhook: 'router.internal/x'}}\n", []string{
			"config: cutover.hooks.webhook: must be an http:// or https:// URL, e.g. https://router.internal/migrated",
		}},
		{"hook webhook no host", minimal + "cutover: {hooks: {webhook: 'https:///x'}}\n", []string{
			"config: cutover.hooks.webhook: has no host; write the full URL, e.g. https://router.internal/migrated",
		}},
		{"hook webhook unparsable", minimal + "cutover: {hooks: {webhook: 'https://router:port/x'}}\n", []string{
			`config: cutover.hooks.webhook: is not a valid URL; percent-encode any "@", ":", "/", "?" or "#" in a user name, password or query value, e.g. https://router.internal/migrated`,
		}},
		{"hook webhook http", minimal + "cutover: {hooks: {webhook: 'http://127.0.0.1:8080/route'}}\n", nil},
		{"hook timeout too short", minimal + "cutover: {hooks: {timeout: 500ms}}\n", []string{
			"config: cutover.hooks.timeout: must be between 1s and 1h, got 500ms",
		}},
		{"hook timeout too long", minimal + "cutover: {hooks: {timeout: 61m}}\n", []string{
			"config: cutover.hooks.timeout: must be between 1s and 1h, got 1h1m0s",
		}},
		{"verify chunk rows too few", minimal + "verify: {chunk-rows: 99}\n", []string{
			"config: verify.chunk-rows: must be between 100 and 10000000, got 99",
		}},
		{"verify chunk rows too many", minimal + "verify: {chunk-rows: 10000001}\n", []string{
			"config: verify.chunk-rows: must be between 100 and 10000000, got 10000001",
		}},
		{"public api without token", minimal + "api: {listen: ':7654'}\n", []string{
			"config: api.token: required when api.listen is not loopback, since the API can start a cutover; set api.token or api.token-file, or listen on 127.0.0.1",
		}},
		{"loopback api", minimal + "api: {listen: '[::1]:80'}\n", nil},
		{"bad listen", minimal + "api: {listen: localhost}\n", []string{`config: api.listen: must be host:port, e.g. 127.0.0.1:7654, got "localhost"`}},
		{"token and token-file", minimal + "api: {token: a, token-file: b}\n", []string{"config: api.token-file: set either api.token or api.token-file, not both"}},
		{"log", minimal + "log: {level: verbose, format: xml}\n", []string{
			`config: log.level: must be debug, info, warn or error, got "verbose"`,
			`config: log.format: must be auto, json or console, got "xml"`,
		}},
		{"unknown keys", minimal + "snapshot:\n  worker: 3\nextra: 1\n", []string{
			"config: snapshot.worker: unknown key; see docs/config.md for the keys that are allowed here",
			"config: extra: unknown key; see docs/config.md for the keys that are allowed here",
		}},
		{"unknown key and invalid values together", strings.Replace(minimal, "  dsn: postgres://migrated@db1:5432/app", "  passwrd: x", 1) + "snapshot: {workers: 0}\n", []string{
			"config: source.passwrd: unknown key; see docs/config.md for the keys that are allowed here",
			"config: source.dsn: required",
			"config: snapshot.workers: must be between 1 and 64, got 0",
		}},
		{"section not a mapping", minimal + "apply: fast\n", []string{"config: apply: must be a mapping of keys to values"}},
		{"two documents", minimal + "---\nname: other\n", []string{"config: the file holds more than one YAML document; write one migration per file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse([]byte(c.yaml), "", env(nil), readSecretFile)
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if got, want := strings.Join(problemsOf(t, err), "\n"), strings.Join(c.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			if got, want := err.Error(), strings.Join(c.want, "\n"); got != want {
				t.Errorf("Error() =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestParseSyntaxError(t *testing.T) {
	_, err := parse([]byte("name: [\n"), "", env(nil), readSecretFile)
	if err == nil || !strings.HasPrefix(err.Error(), "config: yaml: line") {
		t.Fatalf("got %v, want a yaml syntax error with a line number", err)
	}
}

func TestExpandEnv(t *testing.T) {
	vars := env(map[string]string{"USER_NAME": "migrated", "EMPTY": "", "P": "x$y"})
	for _, c := range []struct {
		name, in, want string
		problems       []string
	}{
		{"none", "a: b", "a: b", nil},
		{"var", "user: ${USER_NAME}!", "user: migrated!", nil},
		{"empty var", "a: '${EMPTY}'", "a: ''", nil},
		{"dollar dollar", "a: pa$$word", "a: pa$word", nil},
		{"escaped reference", "a: $${USER_NAME}", "a: ${USER_NAME}", nil},
		{"value not expanded again", "a: ${P}", "a: x$y", nil},
		{"lone dollar", "a: $5 $x", "a: $5 $x", nil},
		{"unset", "a: ${PGPASS}\nb: ${PGPASS}\nc: ${OTHER}", "", []string{
			"config: environment variable PGPASS is not set",
			"config: environment variable OTHER is not set",
		}},
		{"unterminated", "a: 1\nb: ${NAME", "", []string{
			"config: line 2: malformed ${...} reference; write ${NAME} with letters, digits and _, or $$ for a literal $",
		}},
		{"bad name", "a: ${secret value}", "", []string{
			"config: line 1: malformed ${...} reference; write ${NAME} with letters, digits and _, or $$ for a literal $",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p problems
			got := string(expandEnv([]byte(c.in), vars, &p))
			if c.problems != nil {
				if got, want := strings.Join(problemsOf(t, p.err()), "\n"), strings.Join(c.problems, "\n"); got != want {
					t.Errorf("problems\n%s\nwant\n%s", got, want)
				}
				return
			}
			if err := p.err(); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestParseUsesEnvironment(t *testing.T) {
	t.Setenv("MIGRATED_TEST_PASS", "from-env")
	cfg, err := Parse([]byte(minimal+"  password: ${MIGRATED_TEST_PASS}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Target.Password, "from-env"; got != want {
		t.Errorf("password = %q, want %q", got, want)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pw", "hunter2 with spaces\n")
	write("token", "tok\r\n")
	write("empty", "\n")
	abs := filepath.Join(dir, "pw")

	for _, c := range []struct {
		name, extra     string
		password, token string
		problem         string
	}{
		{"relative", "  password-file: pw\napi: {token-file: token}\n", "hunter2 with spaces", "tok", ""},
		{"absolute", "  password-file: " + abs + "\n", "hunter2 with spaces", "", ""},
		{"missing", "  password-file: nope\n", "", "", "config: target.password-file: stat " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"empty", "  password-file: empty\n", "", "", "config: target.password-file: " + filepath.Join(dir, "empty") + " is empty; it should hold the secret"},
		{"directory", "  password-file: .\n", "", "", "config: target.password-file: " + dir + " is not a regular file"},
		{"both", "  password: x\n  password-file: pw\n", "", "", "config: target.password-file: set either target.password or target.password-file, not both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parse([]byte(minimal+c.extra), dir, env(nil), readSecretFile)
			if c.problem != "" {
				if err == nil {
					t.Fatal("no error")
				}
				if got, want := err.Error(), c.problem; got != want {
					t.Errorf("got %q, want %q", got, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := cfg.Target.Password, c.password; got != want {
				t.Errorf("password = %q, want %q", got, want)
			}
			if got, want := cfg.API.Token, c.token; got != want {
				t.Errorf("token = %q, want %q", got, want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("filepass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "migrated.yaml")
	if err := os.WriteFile(path, []byte(minimal+"  password-file: pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Target.Password, "filepass"; got != want {
		t.Errorf("password = %q, want %q", got, want)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("Load(missing) = %v, want an open error", err)
	}
}

// TestSecretsNotInErrors plants a password wherever an operator might put one next to a
// mistake, and checks that no error repeats it.
func TestSecretsNotInErrors(t *testing.T) {
	const secret = "Sup3rSecretPw"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := env(map[string]string{"PGPASS": secret})
	for _, c := range []struct{ name, yaml string }{
		{"bad url dsn", "source: {engine: postgres, dsn: 'postgres://u:" + secret + "@h:port/db'}"},
		{"ambiguous url dsn", "source: {engine: postgres, dsn: 'postgres://u:" + secret + "@x@h/db'}"},
		{"bad keyword dsn", "source: {engine: postgres, dsn: \"host=h password='" + secret + "\"}"},
		{"mysql dsn without host", "source: {engine: mysql, dsn: 'mysql://u:" + secret + "@/db'}"},
		{"wrong scheme", "source: {engine: postgres, dsn: 'mysql://u:" + secret + "@h/db'}"},
		{"password and file", "source: {engine: postgres, dsn: 'host=h', password: ${PGPASS}, password-file: pw}"},
		{"token and file", "api: {token: ${PGPASS}, token-file: pw}"},
		{"password with bad sibling", "source: {engine: nope, dsn: 'host=h', password: " + secret + "}\nsnapshot: {workers: 0}"},
		{"password as a mapping", "source: {password: {" + secret + ": 1}}"},
		{"password as a list", "source: {password: [" + secret + "]}"},
		{"password file read", "source: {engine: postgres, dsn: 'host=h', password-file: pw}\nname: BAD"},
		{"webhook userinfo, bad scheme", "cutover: {hooks: {webhook: 'ftp://u:" + secret + "@h/x'}}"},
		{"webhook query, bad port", "cutover: {hooks: {webhook: 'https://h:port/x?token=" + secret + "'}}"},
		{"webhook token, no host", "cutover: {hooks: {webhook: 'https://" + secret + "@/x'}}"},
		{"webhook token, no scheme", "cutover: {hooks: {webhook: 'h/x?token=" + secret + "'}}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse([]byte(c.yaml), dir, vars, readSecretFile)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error contains the secret:\n%s", err)
			}
		})
	}
}

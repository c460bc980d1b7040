package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrated/migrated/internal/testenv"
)

// runCLI runs the binary and returns its combined output and exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// untouched asserts that preflight left no slot and no publication on the source.
func (e *env) untouched() {
	e.t.Helper()
	conn := e.connect(e.src)
	defer conn.Close(context.Background())
	var slots, pubs int
	if err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_replication_slots WHERE database = current_database()),
	  (SELECT count(*) FROM pg_publication)`).Scan(&slots, &pubs); err != nil {
		e.t.Fatal(err)
	}
	if slots != 0 || pubs != 0 {
		e.t.Errorf("preflight changed the source: %d slot(s), %d publication(s)", slots, pubs)
	}
}

func TestPreflightRefusesWalLevelReplica(t *testing.T) {
	if os.Getenv("MIGRATED_TEST_PG_URL") != "" {
		t.Skip("needs its own cluster with wal_level=replica")
	}
	pg, err := testenv.StartPostgres(testenv.PostgresOptions{Settings: map[string]string{"wal_level": "replica", "max_wal_senders": "1"}})
	if err != nil {
		testenv.SkipOrFail(t, err)
	}
	defer pg.Stop()
	ctx := context.Background()
	src, err := pg.CreateDB(ctx, "walsrc")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := pg.CreateDB(ctx, "waldst")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, name: "wal", src: src, dst: dst, dir: t.TempDir(), listen: "127.0.0.1:0"}
	e.writeConfig("")
	e.exec(src, `CREATE TABLE t (id int PRIMARY KEY)`)

	for _, cmd := range []string{"check", "run"} {
		out, code := runCLI(t, cmd, "--config", e.config)
		if got, want := code, exitPreflight; got != want {
			t.Errorf("%s exit code = %d, want %d; output:\n%s", cmd, got, want, out)
		}
		for _, want := range []string{
			"source wal_level is replica; set wal_level = logical in postgresql.conf and restart the source",
			"raise max_wal_senders",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output lacks %q:\n%s", cmd, want, out)
			}
		}
	}
	e.untouched()
}

func TestPreflightNamesEachProblem(t *testing.T) {
	e := newEnv(t, "pre")
	e.exec(e.src, `CREATE TABLE public.keyless (a int, b text);
	  CREATE TABLE public.fine (id int PRIMARY KEY);
	  CREATE TABLE public.secret (id int PRIMARY KEY);
	  DROP ROLE IF EXISTS weak; CREATE ROLE weak LOGIN PASSWORD 'hunter2-not-logged';
	  GRANT SELECT ON public.fine TO weak`)
	e.exec(e.dst, `CREATE TABLE public.fine (id int PRIMARY KEY)`)

	t.Run("keyless table and existing target table", func(t *testing.T) {
		out, code := runCLI(t, "check", "--config", e.config)
		if code != exitPreflight {
			t.Fatalf("exit code %d, want %d:\n%s", code, exitPreflight, out)
		}
		for _, want := range []string{
			"have no primary key or replica identity index", "public.keyless", "REPLICA IDENTITY USING INDEX",
			"target already has 1 of the tables to migrate (public.fine)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		e.untouched()
	})

	t.Run("unprivileged role, password never shown", func(t *testing.T) {
		weak := strings.Replace(e.src, "postgres://postgres@", "postgres://weak:hunter2-not-logged@", 1)
		cfg := filepath.Join(e.dir, "weak.yaml")
		body := fmt.Sprintf("name: weak\nsource:\n  engine: postgres\n  dsn: %s\ntarget:\n  engine: postgres\n  dsn: %s\ntables:\n  exclude-tables: [public.keyless]\n", weak, e.dst)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runCLI(t, "check", "--config", cfg)
		if code != exitPreflight {
			t.Fatalf("exit code %d, want %d:\n%s", code, exitPreflight, out)
		}
		for _, want := range []string{
			`role weak cannot start replication; run ALTER ROLE "weak" REPLICATION`,
			`run GRANT CREATE ON DATABASE "pre_src" TO "weak"`,
			"role weak cannot read 1 table(s): public.secret",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("output shows the password:\n%s", out)
		}
	})

	t.Run("unreachable target, password never shown", func(t *testing.T) {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(e.dir, "nowhere.yaml")
		body := fmt.Sprintf("name: nowhere\nsource:\n  engine: postgres\n  dsn: %s\ntarget:\n  engine: postgres\n  dsn: postgres://postgres:s3cret-pw@127.0.0.1:%d/x?sslmode=disable\n", e.src, port)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runCLI(t, "check", "--config", cfg)
		if code != exitPreflight {
			t.Fatalf("exit code %d, want %d:\n%s", code, exitPreflight, out)
		}
		if !strings.Contains(out, "cannot connect to the target") || !strings.Contains(out, "check target.dsn") {
			t.Errorf("output does not explain the unreachable target:\n%s", out)
		}
		if strings.Contains(out, "s3cret-pw") {
			t.Errorf("output shows the password:\n%s", out)
		}
	})

	t.Run("config error names its field", func(t *testing.T) {
		cfg := filepath.Join(e.dir, "bad.yaml")
		if err := os.WriteFile(cfg, []byte("name: bad\nsource:\n  engine: postgres\ntarget:\n  engine: oracle\n  dsn: x\nsnapshot:\n  workers: 0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runCLI(t, "run", "--config", cfg)
		if code != exitConfig {
			t.Fatalf("exit code %d, want %d:\n%s", code, exitConfig, out)
		}
		for _, want := range []string{"source.dsn", "target.engine", "snapshot.workers"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks field %q:\n%s", want, out)
			}
		}
	})
	e.untouched()
}

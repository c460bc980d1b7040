package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/config"
)

var facts = Facts{
	Migration:               "orders",
	Op:                      "cutover",
	Writable:                "target",
	WritableEngine:          "postgres",
	WritableDSN:             "postgres://migrated:hunter2@db2:5432/app",
	FencedDSN:               "host=db1 user=migrated password=hunter2 dbname=app",
	FencePosition:           "0/16B3748",
	WriteUnavailableSeconds: 0.25,
	At:                      time.Date(2024, 6, 1, 1, 2, 3, 0, time.UTC),
}

// redacted is facts as the hooks must see them.
var redacted = func() Facts {
	f := facts
	f.WritableDSN = "postgres://migrated@db2:5432/app"
	f.FencedDSN = "host=db1 user=migrated password=REDACTED dbname=app"
	return f
}()

func hooksWith(exec []string, webhook string) config.Hooks {
	return config.Hooks{Exec: exec, Webhook: webhook, Timeout: config.Duration(10 * time.Second)}
}

func TestHookNone(t *testing.T) {
	if err := Run(context.Background(), config.Hooks{}, facts); err != nil {
		t.Fatalf("Run with no hooks = %v, want nil", err)
	}
}

func TestHookExecGetsFacts(t *testing.T) {
	dir := t.TempDir()
	script := `env > "$1/env"; printf '%s' "$MIGRATED_FACTS" > "$1/facts"`
	t.Setenv("MIGRATED_TEST_INHERITED", "yes")
	if err := Run(context.Background(), hooksWith([]string{"/bin/sh", "-c", script, "hook", dir}, ""), facts); err != nil {
		t.Fatal(err)
	}
	envFile, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	vars := make(map[string]string)
	for _, line := range strings.Split(string(envFile), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	for k, want := range map[string]string{
		"MIGRATED_MIGRATION":                 "orders",
		"MIGRATED_OP":                        "cutover",
		"MIGRATED_WRITABLE":                  "target",
		"MIGRATED_WRITABLE_ENGINE":           "postgres",
		"MIGRATED_WRITABLE_DSN":              "postgres://migrated@db2:5432/app",
		"MIGRATED_FENCED_DSN":                "host=db1 user=migrated password=REDACTED dbname=app",
		"MIGRATED_FENCE_POSITION":            "0/16B3748",
		"MIGRATED_WRITE_UNAVAILABLE_SECONDS": "0.25",
		"MIGRATED_TEST_INHERITED":            "yes",
	} {
		if got := vars[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if strings.Contains(string(envFile), "hunter2") {
		t.Error("the hook's environment holds a password")
	}

	b, err := os.ReadFile(filepath.Join(dir, "facts"))
	if err != nil {
		t.Fatal(err)
	}
	var got Facts
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("MIGRATED_FACTS is not JSON: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, redacted) {
		t.Errorf("MIGRATED_FACTS =\n%+v\nwant\n%+v", got, redacted)
	}
}

func TestHookExecFails(t *testing.T) {
	for _, c := range []struct {
		name, script string
		want         []string
		not          string
	}{
		{"exit status with output", `echo "proxy said no" >&2; exit 3`, []string{
			"hook exec /bin/sh: exit status 3; output:\nproxy said no; the cutover is done and the target takes writes: point the application at postgres://migrated@db2:5432/app by hand",
		}, ""},
		{"no output", `exit 1`, []string{"hook exec /bin/sh: exit status 1; no output; the cutover is done"}, ""},
		{"long output keeps the end", `i=0; while [ $i -lt 500 ]; do echo "line $i of noise"; i=$((i+1)); done; echo "the real reason"; exit 2`, []string{
			"exit status 2; output ends:\n...", "the real reason; the cutover is done",
		}, "line 1 of noise"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Run(context.Background(), hooksWith([]string{"/bin/sh", "-c", c.script}, ""), facts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\nwant it to contain\n%s", err, w)
				}
			}
			if c.not != "" && strings.Contains(err.Error(), c.not) {
				t.Errorf("error holds %q, which is older than the last 2 KiB:\n%s", c.not, err)
			}
			if n := len(err.Error()); n > maxOutput+400 {
				t.Errorf("error is %d bytes long", n)
			}
			var re *RoutingError
			if !errors.As(err, &re) || len(re.Errs) != 1 {
				t.Errorf("error %T is not a *RoutingError with one failure", err)
			}
		})
	}
}

func TestHookExecNotFound(t *testing.T) {
	err := Run(context.Background(), hooksWith([]string{"/nonexistent/route-writes", "--secret-arg"}, ""), facts)
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.HasPrefix(err.Error(), "hook exec /nonexistent/route-writes: ") || strings.Contains(err.Error(), "--secret-arg") {
		t.Errorf("error = %q, want it to name the command but not its arguments", err)
	}
}

// TestHookExecTimeoutKillsGroup runs a script whose background child would leave a file behind if
// it outlived the timeout.
func TestHookExecTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	h := hooksWith([]string{"/bin/sh", "-c", `(sleep 1; touch "$1/alive") & echo started; sleep 30`, "hook", dir}, "")
	h.Timeout = config.Duration(300 * time.Millisecond)
	start := time.Now()
	err := Run(context.Background(), h, facts)
	if err == nil {
		t.Fatal("no error")
	}
	if elapsed := time.Since(start); elapsed > waitDelay {
		t.Errorf("Run took %s; the script's child held its output open", elapsed)
	}
	if want := "hook exec /bin/sh: killed after 300ms (cutover.hooks.timeout); output:\nstarted; the cutover is done"; !strings.Contains(err.Error(), want) {
		t.Errorf("error\n%s\nwant it to contain\n%s", err, want)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "alive")); err == nil {
		t.Error("the script's background child outlived the timeout")
	}
}

func TestHookWebhookGetsFacts(t *testing.T) {
	type request struct {
		method, contentType, auth string
		body                      []byte
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- request{r.Method, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), b}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://hook:tok@", 1) + "/route?x=1"
	if err := Run(context.Background(), hooksWith(nil, url), facts); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.method != http.MethodPost || r.contentType != "application/json" {
		t.Errorf("request %s with Content-Type %q, want POST application/json", r.method, r.contentType)
	}
	if r.auth == "" {
		t.Error("the URL's userinfo was not sent as basic auth")
	}
	var f Facts
	if err := json.Unmarshal(r.body, &f); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	if !reflect.DeepEqual(f, redacted) {
		t.Errorf("body =\n%+v\nwant\n%+v", f, redacted)
	}
}

func TestHookWebhookFails(t *testing.T) {
	const secret = "Sup3rSecretTok"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client hang up
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			// Echo the request, as some servers do, and pad past the 512 bytes shown.
			http.Error(w, "route failed for "+r.URL.String()+strings.Repeat(" pad", 200)+" TAIL", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for _, c := range []struct {
		name, url string
		timeout   time.Duration
		want      string
	}{
		{"500", "http://u:" + secret + "@" + host + "/route?token=" + secret + "&v=2",
			0, "hook webhook " + srv.URL + "/route: HTTP 500 Internal Server Error: route failed for /route?REDACTED pad"},
		{"unreachable", "http://" + secret + "@" + strings.TrimPrefix(closed.URL, "http://") + "/x?key=" + secret,
			0, "hook webhook " + closed.URL + "/x: dial tcp "},
		{"redirect", "http://" + host + "/moved?token=" + secret,
			0, "hook webhook " + srv.URL + "/moved: HTTP 302 Found; redirects are not followed"},
		{"timeout", "http://" + host + "/slow?token=" + secret,
			200 * time.Millisecond, "hook webhook " + srv.URL + "/slow: no answer within 200ms (cutover.hooks.timeout)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := hooksWith(nil, c.url)
			if c.timeout > 0 {
				h.Timeout = config.Duration(c.timeout)
			}
			err := Run(context.Background(), h, facts)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, secret) {
				t.Errorf("error shows the webhook's secret:\n%s", msg)
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("error\n%s\nwant it to contain\n%s", msg, c.want)
			}
			if strings.Contains(msg, "TAIL") {
				t.Errorf("error shows more than %d bytes of the body:\n%s", maxBody, msg)
			}
			if !strings.HasSuffix(msg, "point the application at postgres://migrated@db2:5432/app by hand") {
				t.Errorf("error does not end with what to do:\n%s", msg)
			}
		})
	}
}

func TestHookBothFail(t *testing.T) {
	var posted atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posted.Store(true)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	f := facts
	f.Op, f.Writable, f.WritableDSN = "rollback", "source", "host=db1 user=migrated dbname=app"
	err := Run(context.Background(), hooksWith([]string{"/bin/sh", "-c", "exit 4"}, srv.URL), f)
	if !posted.Load() {
		t.Error("the webhook did not run after the exec hook failed")
	}
	want := "hook exec /bin/sh: exit status 4; no output; hook webhook " + srv.URL + ": HTTP 503 Service Unavailable; " +
		"the rollback is done and the source takes writes: point the application at host=db1 user=migrated dbname=app by hand"
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}
	var re *RoutingError
	if !errors.As(err, &re) || len(re.Errs) != 2 {
		t.Fatalf("error %T is not a *RoutingError with two failures", err)
	}
}

func TestHookExecThenWebhook(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := os.ReadFile(order)
		_ = os.WriteFile(order, append(b, "webhook\n"...), 0o600)
	}))
	defer srv.Close()
	if err := Run(context.Background(), hooksWith([]string{"/bin/sh", "-c", `echo exec >> "$1"`, "hook", order}, srv.URL), facts); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(order)
	if got, want := string(b), "exec\nwebhook\n"; got != want {
		t.Errorf("hooks ran in order %q, want %q", got, want)
	}
}

package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// yamlPaths lists the YAML path of every leaf key under t, e.g. "snapshot.split-rows".
func yamlPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := yamlKey(f)
		if key == "" || key == "-" {
			continue
		}
		path := joinPath(prefix, key)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlPaths(f.Type, path)...)
			continue
		}
		out = append(out, path)
	}
	return out
}

// TestDocsListEveryKey keeps docs/config.md in step with Config: every key has a row in
// its reference table, and every row is a key.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := make(map[string]bool)
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9.-]+)` \\|").FindAllSubmatch(doc, -1) {
		rows[string(m[1])] = true
	}
	keys := yamlPaths(reflect.TypeOf(Config{}), "")
	// Guard against a walk that finds nothing and so checks nothing.
	for _, k := range []string{"name", "source.password-file", "snapshot.split-rows", "log.format"} {
		if !slices.Contains(keys, k) {
			t.Fatalf("walk over Config did not find %s; it found %v", k, keys)
		}
	}
	for _, k := range keys {
		if !rows[k] {
			t.Errorf("docs/config.md has no row for %s; add \"| `%s` | type | default | meaning |\"", k, k)
		}
		delete(rows, k)
	}
	var stale []string
	for k := range rows {
		stale = append(stale, k)
	}
	sort.Strings(stale)
	for _, k := range stale {
		t.Errorf("docs/config.md documents %s, which is not a config key", k)
	}
}

// TestDocsExampleParses keeps the example in docs/config.md valid.
func TestDocsExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "## Example\n")
	_, rest, ok := strings.Cut(rest, "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/config.md has no yaml block under ## Example")
	}
	read := func(baseDir, name string) (string, error) { return "secret-from-" + name, nil }
	cfg, err := parse([]byte(example), "", env(map[string]string{"TARGET_PASSWORD": "pw"}), read)
	if err != nil {
		t.Fatalf("example does not parse:\n%v", err)
	}
	if got, want := cfg.Source.Password, "secret-from-/run/secrets/source-password"; got != want {
		t.Errorf("source password = %q, want %q", got, want)
	}
}

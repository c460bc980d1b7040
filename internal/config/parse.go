package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// ValidationError lists every problem found in a config file, so an operator can fix them
// all in one pass. Its message has one "config: field: problem" line per problem.
type ValidationError struct {
	Problems []Problem
}

// Problem is one thing wrong with a config file.
type Problem struct {
	// Field is the key's YAML path, such as "snapshot.workers" or
	// "tables.include-tables[2]"; empty for a problem with the file as a whole.
	Field string
	// Message says what is wrong and, where it helps, what to write instead. It never
	// contains a password or token.
	Message string
}

// String formats p as "config: field: message".
func (p Problem) String() string {
	if p.Field == "" {
		return "config: " + p.Message
	}
	return "config: " + p.Field + ": " + p.Message
}

// Error returns one line per problem.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems, keeping only the first for each field so that a value that
// failed to decode does not also show up as, say, out of range.
type problems struct {
	list []Problem
	seen map[string]bool
}

func (p *problems) add(field, msg string) {
	if field != "" && p.seen[field] {
		return
	}
	if p.seen == nil {
		p.seen = make(map[string]bool)
	}
	p.seen[field] = true
	p.list = append(p.list, Problem{Field: field, Message: msg})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list}
}

// Load reads the YAML config file at path, expands ${ENV} references, reads password-file and
// token-file, fills in defaults and validates the result. Relative *-file paths are resolved
// against the config file's directory. Validation failures are a *ValidationError.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, filepath.Dir(path))
}

// Parse is Load for a config already in memory. baseDir resolves relative password-file and
// token-file paths.
func Parse(data []byte, baseDir string) (*Config, error) {
	return parse(data, baseDir, os.LookupEnv, readSecretFile)
}

// secretReader reads a password-file or token-file; tests substitute their own.
type secretReader func(baseDir, name string) (string, error)

func parse(data []byte, baseDir string, lookupEnv func(string) (string, bool), read secretReader) (*Config, error) {
	var p problems
	data = expandEnv(data, lookupEnv, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	cfg := defaults()
	complete, err := decode(data, &cfg, &p)
	if err != nil {
		return nil, err
	}
	if !complete {
		// yaml.v3 skipped a whole mapping; validating the rest would report keys that are
		// in the file as missing.
		return nil, p.err()
	}
	cfg.Source.resolveSecret("source", baseDir, read, &p)
	cfg.Target.resolveSecret("target", baseDir, read, &p)
	cfg.API.resolveSecret(baseDir, read, &p)
	cfg.validate(&p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv replaces ${NAME} with the environment variable NAME and $$ with $. It works on
// the raw text, so a variable may supply any value, and runs before YAML parsing. Every unset
// variable is reported, by name; a malformed reference is reported by line only, since its
// text could be part of a secret.
func expandEnv(data []byte, lookup func(string) (string, bool), p *problems) []byte {
	if !bytes.Contains(data, []byte("$")) {
		return data
	}
	var out bytes.Buffer
	line := 1
	unset := make(map[string]bool)
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '\n' {
			line++
		}
		if c != '$' || i+1 == len(data) || (data[i+1] != '$' && data[i+1] != '{') {
			out.WriteByte(c)
			continue
		}
		if data[i+1] == '$' {
			out.WriteByte('$')
			i++
			continue
		}
		end := bytes.IndexAny(data[i+2:], "}\n")
		if end < 0 || data[i+2+end] != '}' || !envName.Match(data[i+2:i+2+end]) {
			p.add("", fmt.Sprintf("line %d: malformed ${...} reference; write ${NAME} with letters, digits and _, or $$ for a literal $", line))
			out.WriteByte(c)
			continue
		}
		name := string(data[i+2 : i+2+end])
		if v, ok := lookup(name); ok {
			out.WriteString(v)
		} else if !unset[name] {
			unset[name] = true
			p.add("", "environment variable "+name+" is not set")
		}
		i += 2 + end
	}
	return out.Bytes()
}

// decode decodes data over cfg, which holds the defaults, rejecting unknown keys. Syntax
// errors are returned; unknown keys and values of the wrong type are added to p by YAML path.
// complete is false when a duplicate key made yaml.v3 skip a mapping.
func decode(data []byte, cfg *Config, p *problems) (complete bool, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err = dec.Decode(cfg)
	if errors.Is(err, io.EOF) {
		return true, nil // an empty file; validation reports what is missing
	}
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		return false, fmt.Errorf("config: %w", err)
	}
	complete = true
	if te != nil {
		// yaml.v3 names a bad key by line and Go type; walk the document to name it by path.
		n := len(p.list)
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) == nil {
			scratch := defaults()
			walk(&doc, reflect.ValueOf(&scratch).Elem(), "", p, 0)
		}
		named := len(p.list) > n
		for _, msg := range te.Errors {
			if strings.Contains(msg, " already defined at line ") {
				complete = false
			}
			if !named {
				p.add("", msg) // the walk missed it; yaml.v3's own words are better than nothing
			}
		}
	}
	// A second document is most likely a second migration pasted in, and would be ignored.
	var next yaml.Node
	err = dec.Decode(&next)
	empty := err == nil && len(next.Content) == 1 && next.Content[0].ShortTag() == "!!null"
	if !errors.Is(err, io.EOF) && !empty {
		p.add("", "the file holds more than one YAML document; write one migration per file")
	}
	return complete, nil
}

// walk checks node n against the struct or value v at YAML path, reporting unknown keys,
// duplicate keys and values that do not decode. Decoding a leaf again on its own ties each
// error to its key.
func walk(n *yaml.Node, v reflect.Value, path string, p *problems, depth int) {
	if depth > 32 {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walk(c, v, path, p, depth+1)
		}
		return
	case yaml.AliasNode:
		if n.Alias != nil {
			walk(n.Alias, v, path, p, depth+1)
		}
		return
	}
	if v.Kind() != reflect.Struct {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			p.add(path, decodeMessage(err))
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty section keeps its defaults
	}
	if n.Kind != yaml.MappingNode {
		p.add(path, "must be a mapping of keys to values")
		return
	}
	lines := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			continue // a merge key; yaml.v3 has already checked what it merges
		}
		child := joinPath(path, k.Value)
		if first, ok := lines[k.Value]; ok {
			p.add(child, fmt.Sprintf("is set twice, on lines %d and %d; keep one", first, k.Line))
			continue
		}
		lines[k.Value] = k.Line
		idx, ok := fieldIndex(v.Type(), k.Value)
		if !ok {
			p.add(child, "unknown key; see docs/config.md for the keys that are allowed here")
			continue
		}
		walk(val, v.Field(idx), child, p, depth+1)
	}
}

// decodeMessage strips yaml.v3's "line N:" prefixes: the Problem names the key instead.
func decodeMessage(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if strings.HasPrefix(m, "line ") {
			if _, rest, ok := strings.Cut(m, ": "); ok {
				m = rest
			}
		}
		msgs[i] = m
	}
	return strings.Join(msgs, "; ")
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldIndex finds the field of struct type t whose yaml tag is key.
func fieldIndex(t reflect.Type, key string) (int, bool) {
	for i := 0; i < t.NumField(); i++ {
		if yamlKey(t.Field(i)) == key {
			return i, true
		}
	}
	return 0, false
}

func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// maxSecretFile bounds a password-file or token-file: it should hold one line, and the
// bound keeps a mistaken path from reading a log file into memory.
const maxSecretFile = 64 << 10

// readSecretFile returns the content of a password-file or token-file without its trailing
// newline. Errors name the file but never quote its content.
func readSecretFile(baseDir, name string) (string, error) {
	if !filepath.IsAbs(name) {
		name = filepath.Join(baseDir, name)
	}
	// Reading a FIFO or device such as /dev/stdin would block or never end.
	fi, err := os.Stat(name)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than 64 KiB; it should hold only the secret", name)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty; it should hold the secret", name)
	}
	return s, nil
}

// resolveSecret reads PasswordFile into Password.
func (e *Endpoint) resolveSecret(prefix, baseDir string, read secretReader, p *problems) {
	if e.PasswordFile == "" {
		return
	}
	if e.Password != "" {
		p.add(prefix+".password-file", "set either "+prefix+".password or "+prefix+".password-file, not both")
		return
	}
	s, err := read(baseDir, e.PasswordFile)
	if err != nil {
		p.add(prefix+".password-file", err.Error())
		return
	}
	e.Password = s
}

// resolveSecret reads TokenFile into Token.
func (a *API) resolveSecret(baseDir string, read secretReader, p *problems) {
	if a.TokenFile == "" {
		return
	}
	if a.Token != "" {
		p.add("api.token-file", "set either api.token or api.token-file, not both")
		return
	}
	s, err := read(baseDir, a.TokenFile)
	if err != nil {
		p.add("api.token-file", err.Error())
		return
	}
	a.Token = s
}

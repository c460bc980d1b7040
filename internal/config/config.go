// Package config loads, defaults and validates the migrated YAML configuration file.
//
// One file describes one migration. Keys are kebab-case, ${ENV} references are expanded
// before parsing, and secrets can be kept out of the file with password-file and token-file.
// Every key is documented for operators in docs/config.md; a test keeps the two in step.
package config

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is one migration: where to copy from, where to copy to, and how.
type Config struct {
	// Name identifies the migration. It is required and must match ^[a-z][a-z0-9_]{0,40}$
	// because it is embedded in replication slot and publication names on the source.
	Name string `yaml:"name"`
	// Source is the database being migrated away from.
	Source Endpoint `yaml:"source"`
	// Target is the database being migrated to.
	Target Endpoint `yaml:"target"`
	// Tables selects what is migrated. The default is every table in every non-system schema.
	Tables Tables `yaml:"tables"`
	// Snapshot tunes the initial copy of existing rows.
	Snapshot Snapshot `yaml:"snapshot"`
	// Apply tunes how streamed changes are written to the target.
	Apply Apply `yaml:"apply"`
	// Stream tunes the change stream read from the source.
	Stream Stream `yaml:"stream"`
	// Cutover bounds when and how the switch to the target may happen.
	Cutover Cutover `yaml:"cutover"`
	// Verify tunes the online comparison of source and target.
	Verify Verify `yaml:"verify"`
	// API configures the operator HTTP API.
	API API `yaml:"api"`
	// Log configures the daemon's own logging.
	Log Log `yaml:"log"`
}

// Endpoint is one database: the source or the target of the migration.
type Endpoint struct {
	// Engine is "postgres" or "mysql" (use "mysql" for MariaDB too). Required.
	Engine string `yaml:"engine"`
	// DSN says how to connect. Required. For postgres it is a URL (postgres:// or
	// postgresql://) or a keyword/value string ("host=db1 user=migrated dbname=app"); for
	// mysql it is a URL, mysql://user@host:port/db. Keep the password out of it and use
	// Password or PasswordFile instead: a DSN is shown (redacted) in status and logs.
	DSN string `yaml:"dsn"`
	// Password overrides any password in DSN. Usually written as ${ENV}. Optional.
	Password string `yaml:"password"`
	// PasswordFile names a file holding the password, for mounted secrets. A relative path is
	// resolved against the config file's directory. Load reads it into Password, dropping
	// trailing newlines. Optional; mutually exclusive with Password.
	PasswordFile string `yaml:"password-file"`
}

// Snapshot tunes the initial copy of existing rows.
type Snapshot struct {
	// Workers is how many tables or chunks are copied in parallel. Default 4, range 1..64.
	// Each worker holds one connection to the source and one to the target.
	Workers int `yaml:"workers"`
	// SplitRows splits tables estimated above this many rows into chunks of about this many
	// rows, so one large table can use several workers and a failed chunk is cheap to redo.
	// Default 2,000,000; at least 1000.
	SplitRows int64 `yaml:"split-rows"`
}

// Apply tunes how streamed changes are written to the target.
type Apply struct {
	// BatchChanges is the most changes grouped into one target transaction; bigger batches
	// apply faster but hold locks on the target longer. Default 5000, range 1..1,000,000.
	BatchChanges int `yaml:"batch-changes"`
	// BatchDelay is the longest a grouped target transaction stays open waiting for more
	// changes, which bounds the lag added by batching. Default 200ms.
	BatchDelay Duration `yaml:"batch-delay"`
	// Workers is how many lane sessions a MySQL target's batch is written on at the same time,
	// split by row key (tables whose only unique key is the row key), besides the session that
	// writes every other change and the checkpoint; 1 writes everything on that one session.
	// Default 4, range 1..64. A PostgreSQL target writes on one session.
	Workers int `yaml:"workers"`
}

// Stream tunes the change stream read from the source.
type Stream struct {
	// HeartbeatInterval is how often a heartbeat is written on the source so that lag can
	// be measured even when the application is idle. Default 1s, range 100ms..1h.
	HeartbeatInterval Duration `yaml:"heartbeat-interval"`
	// StatusInterval is how often the applied position is confirmed to the source, which
	// lets the source release WAL or binlog. Default 1s.
	StatusInterval Duration `yaml:"status-interval"`
	// ReconnectMaxBackoff caps the exponential backoff between reconnects after the stream
	// breaks. Default 30s.
	ReconnectMaxBackoff Duration `yaml:"reconnect-max-backoff"`
}

// API configures the operator HTTP API.
type API struct {
	// Listen is the host:port the API listens on. Default "127.0.0.1:7654". Anything other
	// than a loopback address requires a token, because the API can trigger a cutover.
	Listen string `yaml:"listen"`
	// Token is the bearer token clients must send. Optional on loopback; mutually exclusive
	// with TokenFile.
	Token string `yaml:"token"`
	// TokenFile names a file holding the token, read into Token like PasswordFile.
	TokenFile string `yaml:"token-file"`
}

// Log configures the daemon's own logging.
type Log struct {
	// Level is the lowest level logged: debug, info, warn or error. Default "info".
	Level string `yaml:"level"`
	// Format is json, console, or auto (console on a terminal, json otherwise). Default "auto".
	Format string `yaml:"format"`
}

// Defaults. They are applied before the file is decoded, so a key that is present but zero
// (workers: 0) is reported as invalid rather than silently replaced.
const (
	DefaultWorkers             = 4
	DefaultSplitRows           = 2_000_000
	DefaultBatchChanges        = 5000
	DefaultBatchDelay          = 200 * time.Millisecond
	DefaultApplyWorkers        = 4
	DefaultHeartbeatInterval   = time.Second
	DefaultStatusInterval      = time.Second
	DefaultReconnectMaxBackoff = 30 * time.Second
	DefaultMaxLag              = 5 * time.Second
	DefaultCutoverTimeout      = 30 * time.Second
	DefaultVerifyMaxAge        = 24 * time.Hour
	DefaultSequenceGap         = 1000
	DefaultFinalCheckMaxRows   = 100_000
	DefaultHookTimeout         = 30 * time.Second
	DefaultVerifyChunkRows     = 10000
	DefaultListen              = "127.0.0.1:7654"
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "auto"
)

// defaults returns a Config with every default filled in and nothing else.
func defaults() Config {
	return Config{
		Snapshot: Snapshot{Workers: DefaultWorkers, SplitRows: DefaultSplitRows},
		Apply:    Apply{BatchChanges: DefaultBatchChanges, BatchDelay: Duration(DefaultBatchDelay), Workers: DefaultApplyWorkers},
		Stream: Stream{
			HeartbeatInterval:   Duration(DefaultHeartbeatInterval),
			StatusInterval:      Duration(DefaultStatusInterval),
			ReconnectMaxBackoff: Duration(DefaultReconnectMaxBackoff),
		},
		Cutover: Cutover{MaxLag: Duration(DefaultMaxLag), Timeout: Duration(DefaultCutoverTimeout),
			VerifyMaxAge: Duration(DefaultVerifyMaxAge), SequenceGap: DefaultSequenceGap, FinalCheckMaxRows: DefaultFinalCheckMaxRows,
			Hooks: Hooks{Timeout: Duration(DefaultHookTimeout)}},
		Verify: Verify{ChunkRows: DefaultVerifyChunkRows},
		API:    API{Listen: DefaultListen},
		Log:    Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// Duration is a time.Duration written in YAML as a Go duration string such as "200ms",
// "1s" or "1m30s". A bare number is rejected because its unit would be a guess.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a duration string. Errors are *yaml.TypeError so that decoding goes
// on and every bad value in the file is reported at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, durationHint)}}
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration %q: %s", n.Line, n.Value, durationHint)}}
	}
	*d = Duration(v)
	return nil
}

const durationHint = `write a number with a unit, such as "200ms", "5s" or "1m30s"`

// MarshalYAML writes d as a duration string, so a marshalled Config parses back unchanged.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes d as a duration string, for JSON status output.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %s", b, durationHint)
	}
	*d = Duration(v)
	return nil
}

package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"
)

// migrationName keeps Name usable inside replication slot and publication names, which are
// limited to 63 bytes of lowercase letters, digits and underscores.
var migrationName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

// validate adds a Problem for every invalid value. Secrets have been read by then.
func (c *Config) validate(p *problems) {
	switch {
	case c.Name == "":
		p.add("name", "required; name the migration, e.g. orders_to_pg16")
	case !migrationName.MatchString(c.Name):
		p.add("name", fmt.Sprintf("must be a lowercase letter followed by up to 40 lowercase letters, digits or _, got %q", c.Name))
	}
	c.Source.validate("source", p)
	c.Target.validate("target", p)
	if c.Source.DSN != "" && c.Source.Engine == c.Target.Engine && c.Source.DSN == c.Target.DSN {
		p.add("target.dsn", "is the same as source.dsn; the target must be a different database")
	}
	c.Tables.validate(p)

	intRange(p, "snapshot.workers", int64(c.Snapshot.Workers), 1, 64)
	if c.Snapshot.SplitRows < 1000 {
		p.add("snapshot.split-rows", fmt.Sprintf("must be at least 1000, got %d", c.Snapshot.SplitRows))
	}
	intRange(p, "apply.batch-changes", int64(c.Apply.BatchChanges), 1, 1_000_000)
	positive(p, "apply.batch-delay", c.Apply.BatchDelay)
	intRange(p, "apply.workers", int64(c.Apply.Workers), 1, 64)

	if d := c.Stream.HeartbeatInterval.Duration(); d < 100*time.Millisecond || d > time.Hour {
		p.add("stream.heartbeat-interval", fmt.Sprintf("must be between 100ms and 1h, got %s", d))
	}
	positive(p, "stream.status-interval", c.Stream.StatusInterval)
	positive(p, "stream.reconnect-max-backoff", c.Stream.ReconnectMaxBackoff)

	positive(p, "cutover.max-lag", c.Cutover.MaxLag)
	positive(p, "cutover.timeout", c.Cutover.Timeout)
	if c.Cutover.Window != "" {
		if _, err := parseWindow(c.Cutover.Window); err != nil {
			p.add("cutover.window", err.Error())
		}
	}
	if d := c.Cutover.VerifyMaxAge.Duration(); d < 0 {
		p.add("cutover.verify-max-age", fmt.Sprintf("must be 0 (a verify of any age) or more, got %s", d))
	}
	intRange(p, "cutover.sequence-gap", c.Cutover.SequenceGap, 0, 1_000_000_000_000)
	intRange(p, "cutover.final-check-max-rows", c.Cutover.FinalCheckMaxRows, 0, 1_000_000_000_000)
	c.Cutover.Hooks.validate(p)

	intRange(p, "verify.chunk-rows", int64(c.Verify.ChunkRows), 100, 10_000_000)

	c.API.validate(p)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", fmt.Sprintf("must be debug, info, warn or error, got %q", c.Log.Level))
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		p.add("log.format", fmt.Sprintf("must be auto, json or console, got %q", c.Log.Format))
	}
}

// validate checks one endpoint. Messages about the DSN never quote it.
func (e Endpoint) validate(prefix string, p *problems) {
	switch e.Engine {
	case "":
		p.add(prefix+".engine", `required; set "postgres" or "mysql"`)
	case EnginePostgres, EngineMySQL:
	default:
		p.add(prefix+".engine", fmt.Sprintf(`must be "postgres" or "mysql" (also for MariaDB), got %q`, e.Engine))
	}
	if e.DSN == "" {
		p.add(prefix+".dsn", "required")
	} else if err := checkDSN(e.Engine, e.DSN); err != nil {
		p.add(prefix+".dsn", err.Error())
	}
}

func (a API) validate(p *problems) {
	host, port, err := net.SplitHostPort(a.Listen)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		p.add("api.listen", fmt.Sprintf("must be host:port, e.g. %s, got %q", DefaultListen, a.Listen))
		return
	}
	if a.Token == "" && a.TokenFile == "" && !isLoopback(host) {
		p.add("api.token", "required when api.listen is not loopback, since the API can start a cutover; set api.token or api.token-file, or listen on 127.0.0.1")
	}
}

// isLoopback reports whether host is a loopback address. An empty host listens on every
// interface, and other names are not resolved: both count as not loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func intRange(p *problems, field string, v, lo, hi int64) {
	if v < lo || v > hi {
		p.add(field, fmt.Sprintf("must be between %d and %d, got %d", lo, hi, v))
	}
}

func positive(p *problems, field string, d Duration) {
	if d <= 0 {
		p.add(field, fmt.Sprintf("must be greater than 0, got %s", d))
	}
}

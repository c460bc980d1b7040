package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	// The window's time zone must load on hosts and containers without zoneinfo files.
	_ "time/tzdata"
)

// Cutover bounds when and how the switch from source to target may happen.
type Cutover struct {
	// MaxLag is the largest replication lag at which a cutover may begin; the writes still
	// in flight must drain while the source is blocked, so this bounds the write outage.
	// Default 5s.
	MaxLag Duration `yaml:"max-lag"`
	// Timeout is how long the cutover may keep the source blocked before it gives up and
	// lets writes resume on the source. Default 30s.
	Timeout Duration `yaml:"timeout"`
	// Window restricts cutover to a weekly time window, written "DAYS HH:MM-HH:MM ZONE",
	// e.g. "Sat 01:00-03:00 UTC", "Mon-Fri 22:00-02:00 Europe/Berlin" or "* 00:00-06:00 UTC".
	// DAYS is "*" or a comma-separated list of days (Mon, Tue, ...) and ranges (Mon-Fri).
	// A window whose end is not after its start runs past midnight into the next day; DAYS
	// name the day the window opens. Empty, the default, allows a cutover at any time.
	Window string `yaml:"window"`
	// VerifyMaxAge is how old the last clean verify may be when a cutover begins. Default 24h;
	// 0 accepts a verify of any age.
	VerifyMaxAge Duration `yaml:"verify-max-age"`
	// SequenceGap is added to each source sequence value when it is set on the new side, so
	// that ids handed out in the last instant before the fence cannot collide. Default 1000.
	SequenceGap int64 `yaml:"sequence-gap"`
	// FinalCheckMaxRows bounds the exact row counts taken while writes are fenced: tables
	// estimated above this many rows are not counted, as counting them would lengthen the write
	// pause with the table's size. They rely on the drain to the fence position and on the last
	// verify. Default 100000; 0 counts no table.
	FinalCheckMaxRows int64 `yaml:"final-check-max-rows"`
	// Hooks route the application to the new side once it is writable.
	Hooks Hooks `yaml:"hooks"`
}

// Hooks are run after a cutover or rollback commits and the new side is writable. Their job is
// to send the application's writes there: a DNS or proxy change, a config push. Both may be set;
// exec runs first. The migration's facts are passed as MIGRATED_* environment variables to exec
// and as a JSON body to the webhook. Passwords are never passed.
type Hooks struct {
	// Exec is a command and its arguments, run without a shell. Optional.
	Exec []string `yaml:"exec"`
	// Webhook is an http or https URL that receives a POST with the facts as JSON. Optional.
	Webhook string `yaml:"webhook"`
	// Timeout bounds each hook. Default 30s.
	Timeout Duration `yaml:"timeout"`
}

// RedactedWebhook returns Webhook without its userinfo, query and fragment, where webhooks
// usually carry their token, so that it can be shown in errors and logs. The scheme, host and
// path are kept to tell the operator which hook failed. A URL that does not parse is shown as
// its scheme only, since there is no telling where a secret in it would end.
func (h Hooks) RedactedWebhook() string {
	if h.Webhook == "" {
		return ""
	}
	u, err := url.Parse(h.Webhook)
	if err != nil || u.Opaque != "" {
		if i := schemeEnd(h.Webhook); i > 0 {
			return h.Webhook[:i] + "REDACTED"
		}
		return "REDACTED"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// String formats h with the webhook redacted. fmt uses it for %v and %+v of a Config too, so a
// printed config (a test failure, a debug log) does not show the webhook's token.
func (h Hooks) String() string {
	return fmt.Sprintf("{Exec:%q Webhook:%s Timeout:%s}", h.Exec, h.RedactedWebhook(), h.Timeout)
}

// GoString is String for %#v.
func (h Hooks) GoString() string {
	return fmt.Sprintf("config.Hooks{Exec:%#v, Webhook:%q, Timeout:%s}", h.Exec, h.RedactedWebhook(), h.Timeout)
}

// MarshalJSON writes h with the webhook redacted, for a config logged as JSON (zap.Any). The
// config file is YAML, which this does not affect.
func (h Hooks) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Exec    []string `json:"exec,omitempty"`
		Webhook string   `json:"webhook,omitempty"`
		Timeout Duration `json:"timeout"`
	}{h.Exec, h.RedactedWebhook(), h.Timeout})
}

// validate checks the hooks. Messages never quote the webhook: it may hold a token.
func (h Hooks) validate(p *problems) {
	if len(h.Exec) > 0 && strings.TrimSpace(h.Exec[0]) == "" {
		p.add("cutover.hooks.exec[0]", "must name the command to run, e.g. [/usr/local/bin/route-writes, --to-target]; it runs without a shell")
	}
	if h.Webhook != "" {
		const example = "e.g. https://router.internal/migrated"
		u, err := url.Parse(h.Webhook)
		switch {
		case err != nil:
			p.add("cutover.hooks.webhook", `is not a valid URL; percent-encode any "@", ":", "/", "?" or "#" in a user name, password or query value, `+example)
		case u.Scheme != "http" && u.Scheme != "https":
			p.add("cutover.hooks.webhook", "must be an http:// or https:// URL, "+example)
		case u.Hostname() == "":
			p.add("cutover.hooks.webhook", "has no host; write the full URL, "+example)
		}
	}
	if d := h.Timeout.Duration(); d < time.Second || d > time.Hour {
		p.add("cutover.hooks.timeout", fmt.Sprintf("must be between 1s and 1h, got %s", d))
	}
}

// Verify tunes the online comparison of source and target.
type Verify struct {
	// ChunkRows is how many rows, by key order, are compared as one chunk. Default 10000,
	// range 100..10,000,000.
	ChunkRows int `yaml:"chunk-rows"`
}

// InWindow reports whether a cutover may start at t. An empty Window always allows it; an
// invalid one returns an error (Load has already rejected those).
func (c Cutover) InWindow(t time.Time) (bool, error) {
	if c.Window == "" {
		return true, nil
	}
	w, err := parseWindow(c.Window)
	if err != nil {
		return false, err
	}
	return w.contains(t), nil
}

// window is a parsed Cutover.Window. start and end are minutes after local midnight;
// end may be 24*60.
type window struct {
	days       [7]bool // indexed by time.Weekday
	start, end int
	loc        *time.Location
}

func (w window) contains(t time.Time) bool {
	t = t.In(w.loc)
	day, min := t.Weekday(), t.Hour()*60+t.Minute()
	if w.start < w.end {
		return w.days[day] && min >= w.start && min < w.end
	}
	// The window runs past midnight: it is open late on a listed day, or early on the
	// day after one.
	yesterday := (day + 6) % 7
	return (w.days[day] && min >= w.start) || (w.days[yesterday] && min < w.end)
}

var errWindowFormat = errors.New(`must be "DAYS HH:MM-HH:MM ZONE", e.g. "Sat 01:00-03:00 UTC" or "Mon-Fri 22:00-02:00 Europe/Berlin"`)

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func parseWindow(s string) (window, error) {
	var w window
	f := strings.Fields(s)
	if len(f) != 3 {
		return w, errWindowFormat
	}
	if err := parseDays(f[0], &w.days); err != nil {
		return w, err
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return w, errWindowFormat
	}
	var err error
	if w.start, err = parseClock(from, false); err != nil {
		return w, err
	}
	if w.end, err = parseClock(to, true); err != nil {
		return w, err
	}
	if w.start == w.end {
		return w, fmt.Errorf("window %s starts and ends at the same time; use 00:00-24:00 for a whole day", f[1])
	}
	// "Local" would make the window depend on the host the daemon happens to run on.
	if f[2] == "Local" {
		return w, fmt.Errorf("time zone Local is ambiguous; name the zone, e.g. UTC or Europe/Berlin")
	}
	if w.loc, err = time.LoadLocation(f[2]); err != nil {
		return w, fmt.Errorf("unknown time zone %q; use an IANA name such as UTC or Europe/Berlin", f[2])
	}
	return w, nil
}

func parseDays(s string, days *[7]bool) error {
	if s == "*" {
		for i := range days {
			days[i] = true
		}
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok := weekdays[strings.ToLower(from)]
		if !ok {
			return fmt.Errorf("unknown day %q; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range such as Mon-Fri, or *", from)
		}
		b := a
		if isRange {
			if b, ok = weekdays[strings.ToLower(to)]; !ok {
				return fmt.Errorf("unknown day %q; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range such as Mon-Fri, or *", to)
			}
		}
		// A range may wrap around the week: Fri-Mon is Fri, Sat, Sun, Mon.
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return nil
}

// parseClock parses HH:MM into minutes after midnight. 24:00 is allowed as an end time.
func parseClock(s string, end bool) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || !twoDigits(hh) || !twoDigits(mm) {
		return 0, fmt.Errorf("time %q must be HH:MM, e.g. 01:30", s)
	}
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, fmt.Errorf("time %q must be HH:MM between 00:00 and 24:00", s)
	}
	return h*60 + m, nil
}

func twoDigits(s string) bool {
	return len(s) == 2 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9'
}

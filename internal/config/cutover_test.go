package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestCutoverInWindow(t *testing.T) {
	// 2024-06-01 is a Saturday.
	at := func(day int, hhmm string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", "2024-06-"+twoDigit(day)+" "+hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		name, window string
		t            time.Time
		want         bool
	}{
		{"empty window always", "", at(5, "12:00"), true},
		{"inside", "Sat 01:00-03:00 UTC", at(1, "01:00"), true},
		{"end is exclusive", "Sat 01:00-03:00 UTC", at(1, "03:00"), false},
		{"before", "Sat 01:00-03:00 UTC", at(1, "00:59"), false},
		{"other day", "Sat 01:00-03:00 UTC", at(2, "02:00"), false},
		{"day list", "Mon,sat 01:00-03:00 UTC", at(3, "02:00"), true},
		{"day range", "Mon-Fri 09:00-17:00 UTC", at(5, "09:30"), true},
		{"day range excludes weekend", "Mon-Fri 09:00-17:00 UTC", at(2, "09:30"), false},
		{"wrapping range", "Fri-Mon 09:00-17:00 UTC", at(2, "09:30"), true},
		{"any day", "* 00:00-24:00 UTC", at(4, "23:59"), true},
		{"past midnight, late part", "Sat 23:00-01:00 UTC", at(1, "23:30"), true},
		{"past midnight, early part next day", "Sat 23:00-01:00 UTC", at(2, "00:30"), true},
		{"past midnight, early part same day", "Sat 23:00-01:00 UTC", at(1, "00:30"), false},
		{"time zone", "Sat 01:00-03:00 Europe/Berlin", at(1, "00:30"), true}, // 02:30 in Berlin (CEST)
		{"time zone outside", "Sat 01:00-03:00 Europe/Berlin", at(1, "01:30"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Cutover{Window: c.window}.InWindow(c.t)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("InWindow(%s) = %v, want %v", c.t.Format(time.RFC3339), got, c.want)
			}
		})
	}
}

func TestCutoverWindowErrors(t *testing.T) {
	for _, c := range []struct{ window, want string }{
		{"Sat 01:00-03:00", `must be "DAYS HH:MM-HH:MM ZONE"`},
		{"Sat 01:00 UTC", `must be "DAYS HH:MM-HH:MM ZONE"`},
		{"Caturday 01:00-03:00 UTC", `unknown day "Caturday"`},
		{"Mon-Xyz 01:00-03:00 UTC", `unknown day "Xyz"`},
		{"Sat 1:00-03:00 UTC", `time "1:00" must be HH:MM`},
		{"Sat 01:60-03:00 UTC", `time "01:60" must be HH:MM between 00:00 and 24:00`},
		{"Sat 24:00-03:00 UTC", `time "24:00" must be HH:MM between 00:00 and 24:00`},
		{"Sat +1:00-03:00 UTC", `time "+1:00" must be HH:MM`},
		{"Sat 03:00-03:00 UTC", "starts and ends at the same time"},
		{"Sat 01:00-03:00 Mars/Olympus", `unknown time zone "Mars/Olympus"`},
		{"Sat 01:00-03:00 Local", "time zone Local is ambiguous"},
	} {
		t.Run(c.window, func(t *testing.T) {
			_, err := Cutover{Window: c.window}.InWindow(time.Now())
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func twoDigit(n int) string { return string(rune('0'+n/10)) + string(rune('0'+n%10)) }

func TestHooksRedactedWebhook(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"https://router.internal/migrated", "https://router.internal/migrated"},
		{"https://router.internal:8443/a/b", "https://router.internal:8443/a/b"},
		{"https://user:hunter2@router.internal/route", "https://router.internal/route"},
		{"https://hunter2@router.internal/route", "https://router.internal/route"},
		{"https://router.internal/route?token=hunter2&x=1", "https://router.internal/route"},
		{"https://router.internal/route#hunter2", "https://router.internal/route"},
		{"https://u:hun@ter2@router.internal/route", "https://router.internal/route"},
		{"https://router.internal/a%2Fb", "https://router.internal/a%2Fb"},
		{"https://router:hunter2/x", "https://REDACTED"}, // does not parse
		{"token:hunter2@router", "REDACTED"},             // opaque
		{"router.internal/route?token=hunter2", "router.internal/route"},
	} {
		t.Run(c.in, func(t *testing.T) {
			if got, want := (Hooks{Webhook: c.in}).RedactedWebhook(), c.want; got != want {
				t.Errorf("RedactedWebhook(%q) = %q, want %q", c.in, got, want)
			}
		})
	}
}

// TestHooksPrintedRedacted checks that the ways a config gets printed do not show the webhook's
// token, while YAML, which must round-trip, keeps it.
func TestHooksPrintedRedacted(t *testing.T) {
	const secret = "hunter2"
	cfg, err := parse([]byte(minimal+"cutover:\n  hooks:\n    webhook: https://u:"+secret+"@router.internal/route?token="+secret+"\n"), "", env(nil), readSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", *cfg), fmt.Sprintf("%#v", *cfg),
		fmt.Sprint(cfg.Cutover), cfg.Cutover.Hooks.String(), string(js),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("printed config shows the webhook secret:\n%s", out)
		}
		if !strings.Contains(out, "router.internal/route") {
			t.Errorf("printed config does not name the webhook:\n%s", out)
		}
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), cfg.Cutover.Hooks.Webhook) {
		t.Errorf("yaml lost the webhook:\n%s", y)
	}
}

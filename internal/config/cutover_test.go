package config

import (
	"strings"
	"testing"
	"time"
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

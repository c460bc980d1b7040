package ui

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ANSI styles. They are applied after widths are computed, so they never affect layout.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
)

// humanBytes formats n in IEC units with one decimal: "512 B", "12.3 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, suffix := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		if math.Abs(v) < unit || suffix == "PiB" {
			return fmt.Sprintf("%.1f %s", v, suffix)
		}
	}
	panic("unreachable")
}

// humanCount formats n with thousands separators: 1234567 becomes "1,234,567".
func humanCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// humanDuration formats d at the precision an operator needs: "250ms", "4.2s", "3m05s",
// "2h03m", "3d04h".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// seconds converts a float number of seconds, as the status document carries them, to a
// Duration.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

// percent returns done/total as a whole percentage, rounded down so that 100 means finished,
// and capped at 99 unless finished because estimates run low. ok is false when total is unknown.
func percent(done, total int64, finished bool) (pct int, ok bool) {
	if finished {
		return 100, true
	}
	if total <= 0 {
		return 0, false
	}
	return min(int(done*100/total), 99), true
}

// bar draws a width-cell progress bar for pct, e.g. "[#####.....]".
func bar(pct, width int, color bool) string {
	inner := max(width-2, 1)
	filled := inner * pct / 100
	full, empty := strings.Repeat("#", filled), strings.Repeat(".", inner-filled)
	if color {
		if full != "" {
			full = ansiGreen + full + ansiReset
		}
		if empty != "" {
			empty = ansiDim + empty + ansiReset
		}
	}
	return "[" + full + empty + "]"
}

// truncate shortens s to at most n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// padRight pads s with spaces to n runes.
func padRight(s string, n int) string {
	return s + strings.Repeat(" ", max(n-utf8.RuneCountInString(s), 0))
}

// padLeft pads s with leading spaces to n runes.
func padLeft(s string, n int) string {
	return strings.Repeat(" ", max(n-utf8.RuneCountInString(s), 0)) + s
}

// wrap breaks text into lines of at most width runes at spaces. A word longer than width gets a
// line of its own.
func wrap(text string, width int) []string {
	var lines []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			switch {
			case line == "":
				line = word
			case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= width:
				line += " " + word
			default:
				lines = append(lines, line)
				line = word
			}
		}
		lines = append(lines, line)
	}
	return lines
}

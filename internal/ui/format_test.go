package ui

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{12_897_345, "12.3 MiB"},
		{5 << 30, "5.0 GiB"},
		{3 << 50, "3.0 PiB"},
		{4 << 60, "4096.0 PiB"},
	}
	for _, tt := range tests {
		if got, want := humanBytes(tt.n), tt.want; got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, want)
		}
	}
}

func TestHumanCount(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0"},
		{999, "999"},
		{1000, "1,000"},
		{1_234_567, "1,234,567"},
		{-1_234, "-1,234"},
	}
	for _, tt := range tests {
		if got, want := humanCount(tt.n), tt.want; got != want {
			t.Errorf("humanCount(%d) = %q, want %q", tt.n, got, want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0ms"},
		{250 * time.Millisecond, "250ms"},
		{1234 * time.Millisecond, "1.2s"},
		{42 * time.Second, "42s"},
		{3*time.Minute + 5*time.Second, "3m05s"},
		{2*time.Hour + 3*time.Minute, "2h03m"},
		{76 * time.Hour, "3d04h"},
	}
	for _, tt := range tests {
		if got, want := humanDuration(tt.d), tt.want; got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, want)
		}
	}
}

func TestPercent(t *testing.T) {
	tests := []struct {
		done, total int64
		finished    bool
		want        int
		wantOK      bool
	}{
		{0, 0, false, 0, false},
		{5, 0, true, 100, true},
		{62, 100, false, 62, true},
		{150, 100, false, 99, true}, // estimate ran low
		{100, 100, false, 99, true}, // not done until the table says so
	}
	for _, tt := range tests {
		got, ok := percent(tt.done, tt.total, tt.finished)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("percent(%d, %d, %v) = %d, %v; want %d, %v", tt.done, tt.total, tt.finished, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestBar(t *testing.T) {
	tests := []struct {
		pct, width int
		want       string
	}{
		{0, 12, "[..........]"},
		{62, 12, "[######....]"},
		{100, 12, "[##########]"},
	}
	for _, tt := range tests {
		if got, want := bar(tt.pct, tt.width, false), tt.want; got != want {
			t.Errorf("bar(%d, %d) = %q, want %q", tt.pct, tt.width, got, want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("IsTerminal(regular file) = true")
	}
}

package postgres

import (
	"sort"
	"testing"

	"github.com/migrated/migrated/internal/cdc"
)

func TestParseLSN(t *testing.T) {
	for _, tt := range []struct {
		text string
		want LSN
	}{
		{"0/0", 0},
		{"0/FF", 0xFF},
		{"1/0", 1 << 32},
		{"16/B374D848", 0x16_B374D848},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1},
		{"0/1A2B3C", 0x1A2B3C},
	} {
		t.Run(tt.text, func(t *testing.T) {
			got, err := ParseLSN(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseLSN = %#x, want %#x", uint64(got), uint64(tt.want))
			}
			if got, want := got.String(), tt.text; got != want {
				t.Errorf("String = %q, want %q", got, want)
			}
		})
	}
}

func TestParseLSNLowercase(t *testing.T) {
	got, err := ParseLSN("16/b374d848")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := got.String(), "16/B374D848"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestParseLSNInvalid(t *testing.T) {
	for _, tt := range []struct {
		text string
		_    string
	}{
		{"", ""},
		{"16", ""},
		{"/16", ""},
		{"16/", ""},
		{"-1/0", ""},
		{"G/0", ""},
		{"0x16/0", ""},
		{"16/B374D848 garbage", ""},
		{"0/100000000", ""},
		{"100000000/0", ""},
	} {
		t.Run(tt.text, func(t *testing.T) {
			if got, err := ParseLSN(tt.text); err == nil {
				t.Errorf("ParseLSN(%q) = %s, want an error", tt.text, got)
			}
		})
	}
}

func TestLSNOrdering(t *testing.T) {
	// Positions order numerically by (high, low), never by their text.
	texts := []string{"16/B374D848", "1/0", "0/FF", "0/1000000", "A/0", "2/FFFFFFFF", "0/0", "16/B374D847"}
	want := []string{"0/0", "0/FF", "0/1000000", "1/0", "2/FFFFFFFF", "A/0", "16/B374D847", "16/B374D848"}
	var lsns []LSN
	for _, s := range texts {
		l, err := ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		lsns = append(lsns, l)
	}
	sort.Slice(lsns, func(i, j int) bool { return lsns[i] < lsns[j] })
	for i, l := range lsns {
		if got, want := l.String(), want[i]; got != want {
			t.Errorf("position %d = %s, want %s", i, got, want)
		}
	}
	a, _ := ParseLSN("0/FF")
	b, _ := ParseLSN("1/0")
	if !(a < b) {
		t.Errorf("0/FF >= 1/0")
	}
}

func TestLSNIsPosition(t *testing.T) {
	var p cdc.Position = LSN(0x16_B374D848)
	if got, want := p.String(), "16/B374D848"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

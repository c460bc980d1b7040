package cdc

import (
	"fmt"
	"testing"
)

func TestOpString(t *testing.T) {
	for _, tt := range []struct {
		op   Op
		want string
	}{
		{OpInsert, "insert"},
		{OpUpdate, "update"},
		{OpDelete, "delete"},
		{OpTruncate, "truncate"},
		{0, "op(0)"},
		{42, "op(42)"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			if got, want := tt.op.String(), tt.want; got != want {
				t.Errorf("String = %q, want %q", got, want)
			}
		})
	}
}

func TestTableIDString(t *testing.T) {
	if got, want := (TableID{Schema: "Sales", Name: "line items"}).String(), "Sales.line items"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestKeyColumns(t *testing.T) {
	for _, tt := range []struct {
		name string
		keys []bool
		want string
	}{
		{"none", []bool{false, false}, "[]"},
		{"first", []bool{true, false, false}, "[0]"},
		{"composite, not leading", []bool{false, true, false, true}, "[1 3]"},
		{"all", []bool{true, true}, "[0 1]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &Relation{}
			for i, k := range tt.keys {
				r.Columns = append(r.Columns, Column{Name: fmt.Sprint("c", i), Key: k})
			}
			if got, want := fmt.Sprint(r.KeyColumns()), tt.want; got != want {
				t.Errorf("KeyColumns = %s, want %s", got, want)
			}
		})
	}
}

// Package postgres is everything in migrated that speaks PostgreSQL: the catalog, preflight
// checks, schema copy, the exported-snapshot copy, the pgoutput change stream and the target
// writer. It implements the interfaces that the stage packages declare.
package postgres

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// LSN is a PostgreSQL WAL position. It implements cdc.Position.
type LSN uint64

func (l LSN) String() string { return pglogrepl.LSN(l).String() }

// ParseLSN parses the text form "16/B374D848": two hexadecimal halves of at most 32 bits each.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse lsn %q: want two hexadecimal halves like 16/B374D848", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil || strings.HasPrefix(hi, "+") || strings.HasPrefix(lo, "+") {
		return 0, fmt.Errorf("parse lsn %q: want two hexadecimal halves like 16/B374D848", s)
	}
	return LSN(h<<32 | l), nil
}

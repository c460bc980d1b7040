// Package postgres is everything in migrated that speaks PostgreSQL: the catalog, preflight
// checks, schema copy, the exported-snapshot copy, the pgoutput change stream and the target
// writer. It implements the interfaces that the stage packages declare.
package postgres

import (
	"fmt"

	"github.com/jackc/pglogrepl"
)

// LSN is a PostgreSQL WAL position. It implements cdc.Position.
type LSN uint64

func (l LSN) String() string { return pglogrepl.LSN(l).String() }

// ParseLSN parses the text form "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("parse lsn %q: %w", s, err)
	}
	return LSN(l), nil
}

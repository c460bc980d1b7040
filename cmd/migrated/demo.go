package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/migrated/migrated/internal/demo"
	"github.com/migrated/migrated/internal/ui"
	"github.com/spf13/cobra"
)

func demoCmd(g *globalFlags) *cobra.Command {
	var sizeMB, streamSeconds, dualWriteSeconds int
	var engine string
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Migrate a generated database between two throwaway PostgreSQL clusters or MariaDB servers under live writes, cut over, roll back, then verify it",
		Long: `demo starts two throwaway PostgreSQL clusters from the local server binaries, generates a shop
database in the source (customers, products, orders, order items, monthly partitioned events and
TOASTed documents), and starts a writer on it. With --engine mysql it does the same between two
throwaway MariaDB servers, with a shop of InnoDB tables (DECIMAL, DATETIME(6), JSON, ENUM, SET,
BLOB, AUTO_INCREMENT keys), and the writer connects as an application account that the cutover's
fence (read_only) stops. It runs the migration daemon in-process and shows its status live. With
the writer writing throughout, it streams, runs migrated's verify, cuts over (the writer follows
the routing hook to the target), writes to the target while the reverse stream carries the writes
back, and rolls back. Then it stops the writer, waits for the target to catch up, and verifies
independently: every table row for row and every acknowledged write, on both sides. It exits
non-zero if the verify was not clean, a switch failed, a write was lost or a table differs.
Everything is removed on exit, also on Ctrl-C.`,
		Example: "  migrated demo\n  migrated demo --size-mb 20 --stream-seconds 5 --dual-write-seconds 3\n  migrated demo --engine mysql",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if engine != demo.EnginePostgres && engine != demo.EngineMySQL {
				return fmt.Errorf("%w: --engine must be %s or %s, got %q", errUsage, demo.EnginePostgres, demo.EngineMySQL, engine)
			}
			if sizeMB < 1 {
				return fmt.Errorf("%w: --size-mb must be at least 1, got %d", errUsage, sizeMB)
			}
			if streamSeconds < 0 {
				return fmt.Errorf("%w: --stream-seconds must be 0 or more, got %d", errUsage, streamSeconds)
			}
			if dualWriteSeconds < 0 {
				return fmt.Errorf("%w: --dual-write-seconds must be 0 or more, got %d", errUsage, dualWriteSeconds)
			}
			// demo.Options reads 0 as the default, and a negative duration as none.
			stream := time.Duration(streamSeconds) * time.Second
			if stream == 0 {
				stream = -1
			}
			dualWrite := time.Duration(dualWriteSeconds) * time.Second
			if dualWrite == 0 {
				dualWrite = -1
			}
			rep, err := demo.Run(cmd.Context(), demo.Options{
				Engine: engine, SizeMB: sizeMB, Stream: stream, DualWrite: dualWrite, Keep: keep, LogLevel: g.logLevel,
				Out: cmd.OutOrStdout(), TTY: ui.IsTerminal(os.Stdout), Width: terminalWidth(), Version: version,
			})
			if err != nil {
				if cmd.Context().Err() != nil {
					return errors.New("demo interrupted; the servers were stopped and their files removed")
				}
				return err
			}
			return rep.Err()
		},
	}
	cmd.Flags().StringVar(&engine, "engine", demo.EnginePostgres, "engine of both sides: postgres (two PostgreSQL clusters) or mysql (two MariaDB servers)")
	cmd.Flags().IntVar(&sizeMB, "size-mb", 300, "approximate size of the generated dataset, in MB")
	cmd.Flags().IntVar(&streamSeconds, "stream-seconds", 10, "how long the writer keeps writing once the daemon streams")
	cmd.Flags().IntVar(&dualWriteSeconds, "dual-write-seconds", 5, "how long the writer writes to the target after the cutover, before the rollback")
	cmd.Flags().BoolVar(&keep, "keep", false, "after the report, keep the servers and the daemon running and print how to connect, until Ctrl-C")
	return cmd
}

// terminalWidth reads $COLUMNS, which most shells keep current, defaulting to 100.
func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= 40 {
		return n
	}
	return 100
}

package main

import (
	"fmt"

	"github.com/migrated/migrated/internal/daemon"
	"github.com/migrated/migrated/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func checkCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Run the preflight checks and report each problem with its fix; changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			d, err := daemon.New(cfg, zap.NewNop(), metrics.New(prometheus.NewRegistry()))
			if err != nil {
				return err
			}
			probs, err := d.Check(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(probs) == 0 {
				fmt.Fprintf(out, "ok: %s is ready to migrate\n", cfg.Name)
				return nil
			}
			for _, p := range probs {
				fmt.Fprintf(out, "FAIL %s\n", p)
			}
			return &daemon.PreflightError{Problems: probs}
		},
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/ui"
	"github.com/spf13/cobra"
)

func statusCmd(g *globalFlags) *cobra.Command {
	var output string
	var watch time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the phase, per-table progress, positions and lag of the running migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := apiClient(g)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			tty := ui.IsTerminal(os.Stdout)
			for {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				st, err := client.Status(ctx)
				cancel()
				if err != nil {
					return err
				}
				switch output {
				case "json":
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					if err := enc.Encode(st); err != nil {
						return err
					}
				case "text", "":
					if watch > 0 && tty {
						fmt.Fprint(out, "\033[H\033[2J")
					}
					ui.RenderStatus(out, st, ui.RenderOptions{Width: 100, Color: tty})
				default:
					return fmt.Errorf("%w: -o must be text or json, got %q", errUsage, output)
				}
				if watch <= 0 {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(watch):
				}
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().DurationVarP(&watch, "watch", "w", 0, "refresh every interval (e.g. 1s) until interrupted")
	return cmd
}

// apiClient builds a client of the daemon's API from the config, falling back to the default
// address when there is no config file.
func apiClient(g *globalFlags) (*server.Client, error) {
	listen, token := server.DefaultListen, ""
	if cfg, err := loadConfig(g); err == nil {
		listen, token = cfg.API.Listen, cfg.API.Token
	} else if _, statErr := os.Stat(g.config); statErr == nil {
		return nil, err
	}
	if g.listen != "" {
		listen = g.listen
	}
	return &server.Client{BaseURL: "http://" + listen, Token: token}, nil
}

// Command migrated moves a live database to a new server with no loss and a short write pause.
// It is thin: it parses flags and calls internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/migrated/migrated/internal/config"
	"github.com/migrated/migrated/internal/daemon"
	"github.com/spf13/cobra"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, documented in README.md.
const (
	exitOK        = 0
	exitError     = 1
	exitConfig    = 2
	exitPreflight = 3
)

type globalFlags struct {
	config   string
	logLevel string
	listen   string
}

func main() {
	os.Exit(profiled(run))
}

// profiled writes a CPU profile to $MIGRATED_CPUPROFILE and an execution trace to
// $MIGRATED_TRACE while fn runs: developer's tools for `go tool pprof` and `go tool trace`, off
// unless the variables are set.
func profiled(fn func() int) int {
	defer devTool("MIGRATED_CPUPROFILE", "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile)()
	defer devTool("MIGRATED_TRACE", "trace", trace.Start, trace.Stop)()
	return fn()
}

// devTool starts writing a profile or trace to the file that $env names, if set, and returns
// the function that ends it.
func devTool(env, what string, start func(io.Writer) error, stop func()) (end func()) {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = start(f); err == nil {
			return func() { stop(); f.Close() }
		}
		f.Close()
	}
	fmt.Fprintf(os.Stderr, "migrated: %s: %v\n", what, err)
	return func() {}
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var g globalFlags
	root := &cobra.Command{
		Use:           "migrated",
		Short:         "Zero-downtime online database migration daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.config, "config", "c", "migration.yaml", "path of the migration config file")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (overrides log.level)")
	root.PersistentFlags().StringVar(&g.listen, "listen", "", "control API address (overrides api.listen)")
	completeConfig(root)
	root.AddCommand(runCmd(&g), checkCmd(&g), statusCmd(&g), versionCmd(), demoCmd(&g))
	root.AddCommand(actionCmds(&g)...)

	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "migrated:", err)
	var ve *config.ValidationError
	var pe *daemon.PreflightError
	switch {
	case errors.As(err, &ve), errors.Is(err, errUsage):
		return exitConfig
	case errors.As(err, &pe):
		return exitPreflight
	}
	return exitError
}

var errUsage = errors.New("usage error")

func loadConfig(g *globalFlags) (*config.Config, error) {
	cfg, err := config.Load(g.config)
	if err != nil {
		return nil, err
	}
	if g.logLevel != "" {
		cfg.Log.Level = g.logLevel
	}
	if g.listen != "" {
		cfg.API.Listen = g.listen
	}
	return cfg, nil
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "migrated", version)
			return nil
		},
	}
}

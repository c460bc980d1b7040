package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/migrated/migrated/internal/config"
	"github.com/migrated/migrated/internal/daemon"
	"github.com/migrated/migrated/internal/metrics"
	"github.com/migrated/migrated/internal/server"
	"github.com/migrated/migrated/internal/ui"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"
)

func runCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the migration daemon: check, copy the schema and data, then stream changes",
		Long: `run checks the source and target, creates the target schema, copies every table from a
consistent snapshot, builds indexes and constraints, then streams every later change into the
target. It resumes from the state kept on the target, so after any stop, run it again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg.Log)
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck
			return runDaemon(cmd.Context(), cfg, log)
		},
	}
}

func runDaemon(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	d, err := daemon.New(cfg, log.With(zap.String("migration", cfg.Name)), m)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Options{
		Listen: cfg.API.Listen, Token: cfg.API.Token, Gatherer: reg,
		Status: d.Status, Ready: d.Ready, Actions: d.Actions(), Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("control api listening", zap.String("addr", srv.Addr()))
	g, ctx := errgroup.WithContext(ctx)
	runCtx, stopServer := context.WithCancel(ctx)
	g.Go(func() error { return srv.Run(runCtx) })
	g.Go(func() error {
		defer stopServer()
		err := d.Run(ctx)
		var pe *daemon.PreflightError
		switch {
		case err == nil:
			log.Info("migration stopped")
		case errors.As(err, &pe):
		default:
			// Stay up with the failed phase on /v1/status and the dashboard until the operator
			// has read it, fixed the cause and restarted us; exiting would only restart-loop.
			log.Error("migration failed; fix the cause, then restart migrated to resume", zap.Error(err))
			<-ctx.Done()
		}
		return err
	})
	err = g.Wait()
	var pe *daemon.PreflightError
	if errors.As(err, &pe) {
		return err
	}
	if err != nil {
		return fmt.Errorf("migration %s: %w", cfg.Name, err)
	}
	return nil
}

func newLogger(c config.Log) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if ui.IsTerminal(os.Stderr) {
			format = "console"
		}
	}
	var zc zap.Config
	if format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	} else {
		zc = zap.NewProductionConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	return zc.Build()
}

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hjbroker/hjbroker/broker/app"
)

func newServeCmd() *cobra.Command {
	var cfg app.Config
	var logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the FHIR R4 API (embedded store by default; HJB_STORE_URL=postgres://... for PostgreSQL)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.FromEnv(); err != nil {
				return err
			}
			if v := os.Getenv("HJB_LOG_LEVEL"); v != "" && !cmd.Flags().Changed("log-level") {
				logLevel = v
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck
			cfg.Logger = log
			node, err := app.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer node.Close()
			return node.Serve(cmd.Context(), func(addr string) {
				log.Info("hjbroker serving", zap.String("addr", addr), zap.String("fhir", "http://"+addr+"/fhir"),
					zap.String("store", node.Store.Backend()), zap.String("version", app.Version))
				fmt.Fprintf(cmd.ErrOrStderr(), "hjbroker %s serving FHIR R4 at http://%s/fhir (%s store)\n", app.Version, addr, node.Store.Backend())
			})
		},
	}
	cmd.Flags().StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address HOST:PORT")
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", "./data", "directory of the embedded store")
	cmd.Flags().StringVar(&cfg.ConfigFile, "config", "", "agency configuration (YAML; HJB_CONFIG); default: the built-in demo configuration")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error (HJB_LOG_LEVEL)")
	return cmd
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	zc.EncoderConfig.TimeKey = "time"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return zc.Build()
}

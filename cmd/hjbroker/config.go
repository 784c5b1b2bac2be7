package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/routing/routetest"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check configuration files and run route tests",
	}
	cmd.AddCommand(newConfigLintCmd(), newConfigTestCmd())
	return cmd
}

func newConfigLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE",
		Short: "Check a configuration file: schema, references and routes",
		Long: `Check a configuration file against the schema, for consistency (ids, agencies and
endpoints named), and compile its routes (FHIRPath criteria, resource types, transforms).
Prints OK, or every problem as FILE:LINE: PATH: MESSAGE and exits with status 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if _, ok, err := loadAndCompile(out, args[0], nil); err != nil {
				return err
			} else if !ok {
				return exitError{code: 1}
			}
			fmt.Fprintf(out, "%s: OK\n", args[0])
			return nil
		},
	}
}

func newConfigTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE...",
		Short: "Run route tests: given events and the deliveries expected of them",
		Long: `Run route test files. Each names a configuration file (relative to the test file, or
builtin:demo) and lists cases: an event (kind, resource inline or as a JSON file name,
sourceAgency, messageEvent, taskStatus) and the exact set of deliveries expected
({route, destination, purpose}; expect: [] for none). Prints PASS or FAIL per case with the
difference, and exits with status 1 when any case fails. See docs/routes/README.md.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			var fp *fhirpath.Engine
			allOK := true
			for _, path := range args {
				suite, err := routetest.Load(path)
				if err != nil {
					fmt.Fprintln(out, err)
					allOK = false
					continue
				}
				if fp == nil {
					fp = fhirpath.NewEngine(r4model.Load())
				}
				r, ok, err := loadAndCompile(out, suite.Config, fp)
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintf(out, "%s: the configuration has problems; no case was run\n", path)
					allOK = false
					continue
				}
				if !routetest.Report(out, suite, suite.Run(r)) {
					allOK = false
				}
			}
			if !allOK {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

// loadAndCompile reads a configuration (or the built-in demo) and compiles its routes,
// printing every problem found. ok is false when there were problems; err is for failures
// that are not problems of the file (it cannot be read).
func loadAndCompile(out io.Writer, path string, fp *fhirpath.Engine) (r *routing.Router, ok bool, err error) {
	var cfg *config.Config
	if path == routetest.BuiltinDemo {
		cfg, err = config.Demo()
	} else {
		cfg, err = config.Load(path)
	}
	if err == nil {
		if fp == nil {
			fp = fhirpath.NewEngine(r4model.Load())
		}
		r, err = routing.New(cfg, fp)
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintf(out, "%s:%d: %s: %s\n", path, p.Line, p.Path, p.Message)
		}
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return r, true, nil
}

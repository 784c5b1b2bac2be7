package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/conformance/capability"
	confreport "github.com/hjbroker/hjbroker/conformance/report"
	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/suites"
	"github.com/hjbroker/hjbroker/conformance/testscript"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

func newConformanceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Run FHIR TestScript conformance suites against a FHIR server",
		Long: `Run the conformance suites shipped with hjbroker (FHIR R4 TestScripts, see
conformance/README.md) against any FHIR R4 server, and check a server's CapabilityStatement
for what a suite needs.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(newConformanceListCmd(), newConformanceRunCmd(), newConformanceCheckCapabilityCmd(), newConformanceCheckCmd())
	return cmd
}

func newConformanceListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the shipped suites with their descriptions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all, err := suite.LoadAll(suites.FS())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, s := range all {
				fmt.Fprintf(out, "%s (%d scripts)\n  %s\n", s.Name, len(s.Scripts), s.Description)
			}
			return nil
		},
	}
}

// targetFlags are the flags that say how to reach and authenticate to a target.
type targetFlags struct {
	target, token, client, dataDir, configFile string
	headers, vars                              []string
	suites, dirs                               []string
	timeout                                    time.Duration
}

func (f *targetFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.target, "target", "", "FHIR base URL of the server under test (required), e.g. http://127.0.0.1:8080/fhir")
	cmd.Flags().StringArrayVar(&f.suites, "suite", nil, "shipped suite to use (repeatable; default: every shipped suite)")
	cmd.Flags().StringArrayVar(&f.dirs, "dir", nil, "a suite folder on disk to use instead of or besides shipped suites (repeatable)")
	cmd.Flags().StringVar(&f.token, "token", "", "Bearer token sent with every request (without --data-dir, default: $HJB_CONFORMANCE_TOKEN, which keeps it out of the process list)")
	cmd.Flags().StringVar(&f.client, "client", "", "mint a token for this client of a local broker (with --data-dir; default: the suite's client)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data directory of a local broker whose store mints tokens (HJB_STORE_URL selects PostgreSQL)")
	cmd.Flags().StringVar(&f.configFile, "config", "", "configuration file of that broker (default: the built-in demo)")
	cmd.Flags().StringArrayVar(&f.headers, "header", nil, `extra request header "Name: value" (repeatable)`)
	cmd.Flags().DurationVar(&f.timeout, "timeout", 60*time.Second, "timeout of each request")
}

// variables returns --var values and, with --data-dir, a token for each of the suite's
// further clients (suite.TokenVariable) not given by --var.
func (f *targetFlags) variables(ctx context.Context, s *suite.Suite, tokens map[string]string) (map[string]string, error) {
	vars := map[string]string{}
	for _, kv := range f.vars {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if f.dataDir == "" {
		return vars, nil
	}
	minted, err := s.TokenVariables(func(client string) (string, error) {
		if _, given := vars[suite.TokenVariable(client)]; given {
			return "", nil
		}
		if tok := tokens[client]; tok != "" {
			return tok, nil
		}
		tok, err := mintToken(ctx, f.dataDir, f.configFile, client)
		tokens[client] = tok
		return tok, err
	})
	if err != nil {
		return nil, err
	}
	for k, v := range minted {
		if _, given := vars[k]; !given {
			vars[k] = v
		}
	}
	return vars, nil
}

// load returns the selected suites: the named shipped ones (all when none are named and no
// --dir is given) and the --dir folders.
func (f *targetFlags) load() ([]*suite.Suite, error) {
	var out []*suite.Suite
	if len(f.suites) > 0 || len(f.dirs) == 0 {
		all, err := suite.LoadAll(suites.FS())
		if err != nil {
			return nil, err
		}
		if out, err = suite.Find(all, f.suites); err != nil {
			return nil, err
		}
	}
	for _, d := range f.dirs {
		s, err := suite.Load(os.DirFS(d), ".")
		if err != nil {
			return nil, fmt.Errorf("--dir %s: %w", d, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (f *targetFlags) check() error {
	if f.target == "" {
		return fmt.Errorf("--target is required")
	}
	if f.token == "" && f.dataDir == "" {
		f.token = os.Getenv("HJB_CONFORMANCE_TOKEN")
	}
	if f.token != "" && (f.client != "" || f.dataDir != "") {
		return fmt.Errorf("give --token, or --client/--data-dir to mint one, not both")
	}
	if f.client != "" && f.dataDir == "" {
		return fmt.Errorf("--client needs --data-dir: the local broker's store mints the token")
	}
	for _, h := range f.headers {
		if k, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("--header %q: want \"Name: value\"", h)
		}
	}
	for _, v := range f.vars {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("--var %q: want NAME=VALUE", v)
		}
	}
	return nil
}

// header builds the headers for one suite: --header, then the token (given, or minted for
// --client or the suite's client).
func (f *targetFlags) header(ctx context.Context, s *suite.Suite, tokens map[string]string) (http.Header, error) {
	h := http.Header{}
	for _, hv := range f.headers {
		k, v, _ := strings.Cut(hv, ":")
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	tok := f.token
	if tok == "" && f.dataDir != "" {
		client := f.client
		if client == "" && s != nil {
			client = s.Client
		}
		if client == "" {
			client = "operator"
		}
		if tok = tokens[client]; tok == "" {
			var err error
			if tok, err = mintToken(ctx, f.dataDir, f.configFile, client); err != nil {
				return nil, fmt.Errorf("minting a token for %s: %w", client, err)
			}
			tokens[client] = tok
		}
	}
	if tok != "" && h.Get("Authorization") == "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return h, nil
}

// mintToken issues a token for a client of a local broker from its store, as
// "hjbroker token" does.
func mintToken(ctx context.Context, dataDir, configFile, clientID string) (string, error) {
	// The target is running, so its store exists: a directory without one is the wrong one.
	tok, _, _, err := mintLocal(ctx, dataDir, configFile, clientID, true)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

func newConformanceCheckCmd() *cobra.Command {
	var names, dirs []string
	cmd := &cobra.Command{
		Use:   "check [--suite NAME]... [--dir DIR]...",
		Short: "Check suites' TestScripts without running them",
		Long: `Check the TestScripts of the selected suites (default: every shipped suite) as a run would
before sending anything: the R4 structure, the TestScript rules and every reference. Each
problem names its element. The exit status is 1 when any script is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stderr := cmd.ErrOrStderr()
			f := targetFlags{suites: names, dirs: dirs}
			selected, err := f.load()
			if err != nil {
				return usageError(stderr, err)
			}
			structure, err := resource.NewChecker(64)
			if err != nil {
				return usageError(stderr, err)
			}
			opts := testscript.CheckOptions{FHIRPath: fhirpath.NewEngine(r4model.Load()), Structure: structure}
			out := cmd.OutOrStdout()
			invalid := 0
			for _, s := range selected {
				for _, sc := range s.Load() {
					err := sc.Err
					if err == nil {
						err = testscript.Check(sc.Script, opts)
					}
					if err != nil {
						invalid++
						fmt.Fprintf(out, "INVALID %s/%s\n", s.Name, sc.File)
						var te *testscript.Error
						if errors.As(err, &te) {
							for _, p := range te.Problems {
								fmt.Fprintf(out, "    %s\n", p)
							}
						} else {
							fmt.Fprintf(out, "    %v\n", err)
						}
						continue
					}
					fmt.Fprintf(out, "ok      %s/%s\n", s.Name, sc.File)
				}
			}
			if invalid > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&names, "suite", nil, "shipped suite to check (repeatable; default: every shipped suite)")
	cmd.Flags().StringArrayVar(&dirs, "dir", nil, "a suite folder on disk to check (repeatable)")
	return cmd
}

func newConformanceRunCmd() *cobra.Command {
	var f targetFlags
	var outDir string
	cmd := &cobra.Command{
		Use:   "run --target URL [--suite NAME]... [--token T | --client ID --data-dir DIR] [--header 'K: V']... [--out DIR]",
		Short: "Run conformance suites against a FHIR server",
		Long: `Run conformance suites (every shipped suite unless --suite or --dir says otherwise) against
the FHIR server at --target. Each TestScript is checked first; an invalid one is reported with
the element at fault and runs nothing.

Authentication: --token sends a Bearer token; for a local hjbroker, --data-dir (and --config)
mint a token from its store for --client, or for the client each suite's manifest names.
--header adds any other header (e.g. "X-Purpose-Of-Use: DIRECT"). A suite whose scripts act as
further clients gets their tokens as variables token-<client>, minted with --data-dir or given
with --var token-<client>=TOKEN.

Progress goes to standard error, one line per test. With --out, the folder receives
junit.xml, summary.json and report.html. The exit status is 0 only when every test of every
suite passed, 1 when any failed or a script was invalid, 2 when the run could not start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stderr := cmd.ErrOrStderr()
			if err := f.check(); err != nil {
				return usageError(stderr, err)
			}
			selected, err := f.load()
			if err != nil {
				return usageError(stderr, err)
			}
			fp := fhirpath.NewEngine(r4model.Load())
			v, err := app.NewValidator(fp, nil)
			if err != nil {
				return usageError(stderr, err)
			}
			structure, err := resource.NewChecker(64)
			if err != nil {
				return usageError(stderr, err)
			}
			run := &confreport.Run{Target: f.target, Started: time.Now()}
			tokens := map[string]string{}
			for _, s := range selected {
				hdr, err := f.header(cmd.Context(), s, tokens)
				if err != nil {
					return usageError(stderr, err)
				}
				vars, err := f.variables(cmd.Context(), s, tokens)
				if err != nil {
					return usageError(stderr, err)
				}
				fmt.Fprintf(stderr, "suite %s\n", s.Name)
				res, err := s.Run(cmd.Context(), testscript.Config{
					Base: f.target, Header: hdr, FHIRPath: fp, Validator: v, Structure: structure, Variables: vars,
					Client: &http.Client{Timeout: f.timeout},
					OnTest: func(sc *testscript.Script, t *testscript.TestResult) { printTest(stderr, s.Name, sc.File, t) },
				})
				if err != nil {
					return usageError(stderr, err)
				}
				for _, sc := range res.Scripts {
					if len(sc.Invalid) > 0 {
						fmt.Fprintf(stderr, "  INVALID %s/%s: nothing was run\n", s.Name, sc.File)
						for _, p := range sc.Invalid {
							fmt.Fprintf(stderr, "      %s\n", p)
						}
					}
				}
				run.Suites = append(run.Suites, res)
			}
			run.Duration = time.Since(run.Started)
			t := run.Totals()
			fmt.Fprintf(stderr, "%d tests: %d passed, %d failed, %d errors; %d invalid scripts (%s)\n",
				t.Tests, t.Passed, t.Failed, t.Errors, t.InvalidScripts, run.Duration.Round(time.Millisecond))
			if outDir != "" {
				if err := confreport.WriteDir(outDir, run); err != nil {
					return usageError(stderr, err)
				}
				fmt.Fprintf(stderr, "reports in %s: %s, %s, %s\n", outDir, confreport.JUnitFile, confreport.JSONFile, confreport.HTMLFile)
			}
			if !run.Passed() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&outDir, "out", "", "folder for junit.xml, summary.json and report.html")
	cmd.Flags().StringArrayVar(&f.vars, "var", nil, "value NAME=VALUE for a variable the scripts declare (repeatable), e.g. token-probation=...")
	return cmd
}

func usageError(w io.Writer, err error) error {
	fmt.Fprintln(w, "hjbroker conformance:", err)
	return exitError{code: 2}
}

func printTest(w io.Writer, suiteName, file string, t *testscript.TestResult) {
	status := "PASS"
	switch t.Status {
	case testscript.Fail:
		status = "FAIL"
	case testscript.Errored:
		status = "ERROR"
	}
	fmt.Fprintf(w, "  %-5s %s/%s %s (%d ms)\n", status, suiteName, file, t.Name, t.Duration.Milliseconds())
	if t.Status != testscript.Pass {
		fmt.Fprintf(w, "        %s\n", t.Message)
	}
}

func newConformanceCheckCapabilityCmd() *cobra.Command {
	var f targetFlags
	var format string
	cmd := &cobra.Command{
		Use:   "check-capability --target URL [--suite NAME]... [--format text|json]",
		Short: "List what the suites need that the target's CapabilityStatement does not declare",
		Long: `Fetch the target's CapabilityStatement (GET [base]/metadata) and list what the selected
suites (default: every shipped suite) use that it does not declare: resource types,
interactions, search parameters, _include/_revinclude values, operations and conditional
interactions. The exit status is 0 when nothing is missing, 1 when something is, 2 when the
check could not be made.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stderr := cmd.ErrOrStderr()
			if format != "text" && format != "json" {
				return usageError(stderr, fmt.Errorf("--format %q: want text or json", format))
			}
			if err := f.check(); err != nil {
				return usageError(stderr, err)
			}
			selected, err := f.load()
			if err != nil {
				return usageError(stderr, err)
			}
			hdr, err := f.header(cmd.Context(), nil, map[string]string{})
			if err != nil {
				return usageError(stderr, err)
			}
			model := r4model.Load()
			cs, err := fetchCapabilities(cmd.Context(), &http.Client{Timeout: f.timeout}, f.target, hdr)
			if err != nil {
				return usageError(stderr, err)
			}
			type suiteMissing struct {
				Suite   string                   `json:"suite"`
				Missing []capability.Requirement `json:"missing"`
			}
			var results []suiteMissing
			total := 0
			for _, s := range selected {
				var scripts []*testscript.Script
				for _, sc := range s.Load() {
					if sc.Err != nil {
						return usageError(stderr, sc.Err)
					}
					scripts = append(scripts, sc.Script)
				}
				miss := capability.Missing(cs, capability.Requirements(scripts, model.IsResource))
				capability.Sort(miss)
				if miss == nil {
					miss = []capability.Requirement{}
				}
				total += len(miss)
				results = append(results, suiteMissing{Suite: s.Name, Missing: miss})
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(results); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					if len(r.Missing) == 0 {
						fmt.Fprintf(out, "%s: the CapabilityStatement declares everything the suite uses\n", r.Suite)
						continue
					}
					fmt.Fprintf(out, "%s: %d missing\n", r.Suite, len(r.Missing))
					for _, m := range r.Missing {
						fmt.Fprintf(out, "  %s (used by %s)\n", m, strings.Join(m.UsedBy, "; "))
					}
				}
			}
			if total > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

// fetchCapabilities reads [base]/metadata.
func fetchCapabilities(ctx context.Context, c *http.Client, base string, hdr http.Header) (map[string]any, error) {
	u := strings.TrimRight(base, "/") + "/metadata"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header = hdr.Clone()
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the response: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s answered %d", u, resp.StatusCode)
	}
	var cs map[string]any
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("GET %s: not JSON: %w", u, err)
	}
	if rt, _ := cs["resourceType"].(string); rt != "CapabilityStatement" {
		return nil, fmt.Errorf("GET %s answered a %q, not a CapabilityStatement", u, rt)
	}
	return cs, nil
}

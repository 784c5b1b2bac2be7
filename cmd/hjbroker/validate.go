package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

func newValidateCmd() *cobra.Command {
	var profiles []string
	var format string
	var baseOnly bool
	cmd := &cobra.Command{
		Use:   "validate [--profile URL] [--format text|json] PATH...",
		Short: "Validate FHIR R4 JSON files (and directories, recursively) against base R4 and UK Core",
		Long: `Validate FHIR R4 JSON resources, offline, as the server's $validate does: R4 structure,
the R4 invariants and required bindings, and the profiles in meta.profile, or the UK Core
profile for the type when none is declared (--profile overrides both). Bundles are validated with every entry.

Directories are searched recursively for *.json files. With --format json, each file gives one
line {"file": PATH, "valid": BOOL, "outcome": OperationOutcome}. The exit status is 1 when any
file has an error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			files, err := collectFiles(args)
			if err != nil {
				return err
			}
			v, err := app.NewValidator(fhirpath.NewEngine(r4model.Load()), nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			bar := newProgress(cmd.ErrOrStderr(), len(files))
			var sum summaryCounts
			for _, f := range files {
				r := validateFile(v, f, validate.Options{Profiles: profiles, BaseOnly: baseOnly})
				bar.clear()
				if err := report(out, format, f, r); err != nil {
					return err
				}
				sum.add(r)
				bar.step()
			}
			bar.clear()
			sum.print(out, cmd.ErrOrStderr(), format)
			if sum.invalid > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&profiles, "profile", nil, "profile canonical URL to validate against (repeatable; default: meta.profile, else the UK Core profile for the type)")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json (one line per file)")
	cmd.Flags().BoolVar(&baseOnly, "base-only", false, "validate against base R4 only (structure and invariants)")
	return cmd
}

// collectFiles expands directories into the *.json files below them, in lexical order.
func collectFiles(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".json") {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// validateFile validates one file; a file that cannot be read or parsed is one error issue.
func validateFile(v *validate.Validator, path string, opts validate.Options) validate.Result {
	b, err := os.ReadFile(path)
	if err != nil {
		return validate.Result{Issues: []outcome.Issue{{Severity: "fatal", Code: "exception", Diagnostics: err.Error()}}}
	}
	res, err := resource.Decode(b, resource.Limits{})
	if err != nil {
		return validate.Result{Issues: []outcome.Issue{{Severity: "error", Code: "invalid", Diagnostics: err.Error()}}}
	}
	opts.Raw = b
	return v.Validate(res, opts)
}

func report(w io.Writer, format, file string, r validate.Result) error {
	if format == "json" {
		b, err := json.Marshal(map[string]any{"file": file, "valid": r.Valid(), "outcome": r.Outcome()})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	e, wn, _ := r.Counts()
	state := "valid"
	if !r.Valid() {
		state = "INVALID"
	}
	fmt.Fprintf(w, "%s: %s (%d errors, %d warnings)\n", file, state, e, wn)
	for _, is := range r.Issues {
		fmt.Fprintf(w, "  %-11s %-14s %s\n", is.Severity, is.Code, is.Diagnostics)
	}
	return nil
}

type summaryCounts struct {
	files, invalid, errors, warnings, info int
}

func (s *summaryCounts) add(r validate.Result) {
	s.files++
	if !r.Valid() {
		s.invalid++
	}
	e, w, i := r.Counts()
	s.errors += e
	s.warnings += w
	s.info += i
}

// print writes the summary to stdout in text mode, to stderr in json mode (stdout then holds
// only the per-file lines).
func (s *summaryCounts) print(stdout, stderr io.Writer, format string) {
	w := stdout
	if format == "json" {
		w = stderr
	}
	fmt.Fprintf(w, "%d files: %d valid, %d invalid; %d errors, %d warnings, %d information\n",
		s.files, s.files-s.invalid, s.invalid, s.errors, s.warnings, s.info)
}

// progress draws a bar on stderr when stderr is a terminal, and nothing otherwise.
type progress struct {
	w          io.Writer
	total, n   int
	active     bool
	lastDrawnN int
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total, lastDrawnN: -1}
	if f, ok := w.(*os.File); ok && total > 1 {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.active = true
		}
	}
	return p
}

func (p *progress) step() {
	p.n++
	if !p.active {
		return
	}
	const width = 30
	filled := width * p.n / p.total
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.n, p.total)
	p.lastDrawnN = p.n
}

func (p *progress) clear() {
	if p.active && p.lastDrawnN >= 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 50))
		p.lastDrawnN = -1
	}
}

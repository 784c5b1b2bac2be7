// Package suite loads conformance suites — a folder of TestScripts, their fixtures and a
// suite.json manifest — and runs them with the testscript runner.
package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/conformance/testscript"
)

// ManifestFile is the name of a suite's manifest inside its folder.
const ManifestFile = "suite.json"

// Manifest describes a suite.
type Manifest struct {
	// Name is the suite's name; it must be the folder's name.
	Name string `json:"name"`
	// Description says what the suite proves, in a sentence or two.
	Description string `json:"description"`
	// Client is the hjbroker client whose token the suite is written for (a local broker's
	// token is minted for it when the runner is given a data directory but no client).
	Client string `json:"client,omitempty"`
	// Clients are further clients the scripts act as (with a requestHeader
	// "Authorization: Bearer ${token-<client>}"); the runner gives each one's token as the
	// variable token-<client>, which the scripts declare with a hint.
	Clients []string `json:"clients,omitempty"`
	// Headers are sent with every request of the suite (e.g. X-Purpose-Of-Use); headers given
	// to the runner replace them.
	Headers map[string]string `json:"headers,omitempty"`
	// Scripts lists the TestScript files in the order they run. Empty: every *.json file at
	// the top of the folder other than the manifest, in lexical order.
	Scripts []string `json:"scripts,omitempty"`
}

// Suite is a loaded suite.
type Suite struct {
	Manifest
	// FS is the suite's folder; scripts and fixtures are read from it.
	FS fs.FS
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Load reads the suite in folder dir of fsys.
func Load(fsys fs.FS, dir string) (*Suite, error) {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("suite %s: %w", dir, err)
	}
	raw, err := fs.ReadFile(sub, ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("suite %s: reading the manifest: %w", dir, err)
	}
	s := &Suite{FS: sub}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s.Manifest); err != nil {
		return nil, fmt.Errorf("suite %s: %s: %w", dir, ManifestFile, err)
	}
	base := path.Base(dir)
	switch {
	case s.Name == "":
		return nil, fmt.Errorf("suite %s: %s: name is required", dir, ManifestFile)
	case s.Name != base && dir != ".":
		return nil, fmt.Errorf("suite %s: %s: name %q must be the folder's name %q", dir, ManifestFile, s.Name, base)
	case !validName.MatchString(s.Name):
		return nil, fmt.Errorf("suite %s: %s: name %q: use lower-case letters, digits and hyphens", dir, ManifestFile, s.Name)
	case s.Description == "":
		return nil, fmt.Errorf("suite %s: %s: description is required", dir, ManifestFile)
	}
	if len(s.Scripts) == 0 {
		entries, err := fs.ReadDir(sub, ".")
		if err != nil {
			return nil, fmt.Errorf("suite %s: %w", dir, err)
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") && e.Name() != ManifestFile {
				s.Scripts = append(s.Scripts, e.Name())
			}
		}
		sort.Strings(s.Scripts)
	}
	if len(s.Scripts) == 0 {
		return nil, fmt.Errorf("suite %s: no TestScripts", dir)
	}
	for _, f := range s.Scripts {
		if _, err := fs.Stat(sub, f); err != nil {
			return nil, fmt.Errorf("suite %s: %s lists %s: %w", dir, ManifestFile, f, err)
		}
	}
	return s, nil
}

// LoadAll loads every suite of fsys: each top-level folder holding a suite.json, by name.
func LoadAll(fsys fs.FS) ([]*Suite, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("listing suites: %w", err)
	}
	var out []*Suite
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := fs.Stat(fsys, path.Join(e.Name(), ManifestFile)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		s, err := Load(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Find returns the named suites of all, in the order asked; every name must exist.
func Find(all []*Suite, names []string) ([]*Suite, error) {
	if len(names) == 0 {
		return all, nil
	}
	by := map[string]*Suite{}
	var known []string
	for _, s := range all {
		by[s.Name] = s
		known = append(known, s.Name)
	}
	var out []*Suite
	for _, n := range names {
		s, ok := by[n]
		if !ok {
			return nil, fmt.Errorf("no suite %q (suites: %s)", n, strings.Join(known, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// Script is a suite's TestScript, or why it could not be read.
type Script struct {
	File   string
	Script *testscript.Script
	Err    error
}

// Load parses the suite's TestScripts. A file that cannot be read or is not a TestScript
// is returned with its error rather than stopping the others.
func (s *Suite) Load() []Script {
	out := make([]Script, 0, len(s.Scripts))
	for _, f := range s.Scripts {
		ts, err := testscript.Load(s.FS, f)
		out = append(out, Script{File: f, Script: ts, Err: err})
	}
	return out
}

// TokenVariable is the variable that carries a further client's token.
func TokenVariable(client string) string { return "token-" + client }

// TokenVariables mints a token for each of the suite's further clients, as the variables
// its scripts expect; mint is called once per client.
func (s *Suite) TokenVariables(mint func(client string) (string, error)) (map[string]string, error) {
	vars := map[string]string{}
	for _, c := range s.Clients {
		tok, err := mint(c)
		if err != nil {
			return nil, fmt.Errorf("suite %s: token for %s: %w", s.Name, c, err)
		}
		vars[TokenVariable(c)] = tok
	}
	return vars, nil
}

// Result is the outcome of running a suite.
type Result struct {
	Suite       string                     `json:"suite"`
	Description string                     `json:"description"`
	Started     time.Time                  `json:"started"`
	Duration    time.Duration              `json:"durationNs"`
	Scripts     []*testscript.ScriptResult `json:"scripts"`
}

// Passed reports whether every script of the suite was valid and passed.
func (r *Result) Passed() bool {
	for _, s := range r.Scripts {
		if !s.Passed() {
			return false
		}
	}
	return true
}

// Run runs every script of the suite, in order, with a runner built from cfg; the
// manifest's headers are added to cfg.Header unless cfg sets them.
func (s *Suite) Run(ctx context.Context, cfg testscript.Config) (*Result, error) {
	hdr := http.Header{}
	for k, v := range s.Headers {
		hdr.Set(k, v)
	}
	for k, v := range cfg.Header {
		hdr[http.CanonicalHeaderKey(k)] = v
	}
	cfg.Header = hdr
	r, err := testscript.New(cfg)
	if err != nil {
		return nil, err
	}
	res := &Result{Suite: s.Name, Description: s.Description, Started: time.Now()}
	for _, sc := range s.Load() {
		if sc.Err != nil {
			sr := &testscript.ScriptResult{Name: sc.File, File: sc.File}
			var te *testscript.Error
			if errors.As(sc.Err, &te) {
				sr.Invalid = te.Problems
			} else {
				sr.Invalid = []testscript.Problem{{Path: "TestScript", Message: sc.Err.Error()}}
			}
			res.Scripts = append(res.Scripts, sr)
			continue
		}
		res.Scripts = append(res.Scripts, r.Run(ctx, sc.Script))
		if ctx.Err() != nil {
			break
		}
	}
	res.Duration = time.Since(res.Started)
	return res, nil
}

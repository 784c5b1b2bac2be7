// Package validate checks FHIR R4 resources against base R4 (structure and the specification's
// invariants) and against profiles in the project's compact profile format (UK Core), offline,
// with every issue naming the element it concerns as a FHIRPath expression.
//
// A Validator is built once: every FHIRPath expression of the invariants and profiles is
// compiled by New. It holds no mutable state and is safe for concurrent use.
package validate

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/questionnaire"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// QuestionnaireCheck checks a QuestionnaireResponse against its Questionnaire. Issue
// expressions are relative to the QuestionnaireResponse ("QuestionnaireResponse.item[0]").
type QuestionnaireCheck func(qr, q map[string]any) []outcome.Issue

// Config holds what a Validator is built from.
type Config struct {
	// FHIRPath is the engine the invariants run on; its model types the walk.
	FHIRPath *fhirpath.Engine
	// Checker is the structural R4 check shared with the HTTP API; nil builds one.
	Checker *resource.Checker
	// Invariants are the base R4 invariants (profiles/invariants).
	Invariants []Invariant
	// Bindings are the base R4 required bindings on Coding and CodeableConcept elements
	// (profiles/bindings); their value sets go in ValueSets.
	Bindings []BaseBinding
	// Profiles and ValueSets are the profile data (profiles/ukcore).
	Profiles  []Profile
	ValueSets []ValueSet
	// Verification describes the NHS number verification status spellings; nil disables the
	// retired-spelling handling.
	Verification *Verification
	// Defaults maps a resource type to the profile used when a resource declares none. Nil
	// picks, for each type, the profile named UKCore-<Type>.
	Defaults map[string]string
	// Questionnaire checks QuestionnaireResponses against their Questionnaire; nil uses
	// profiles/questionnaire with the bundled value sets.
	Questionnaire QuestionnaireCheck
}

// Validator validates resources. It is immutable and safe for concurrent use.
type Validator struct {
	fp       *fhirpath.Engine
	model    *r4model.Model
	checker  *resource.Checker
	base     baseInvariants
	bindings baseBindings
	profiles map[string]*compiledProfile
	defaults map[string]string
	vsets    map[string]*valueSet
	extURLs  map[string]bool // every extension URL some profile defines
	verif    *Verification
	qcheck   QuestionnaireCheck
	rootOpt  map[string]fhirpath.Option
}

// Options tune one validation.
type Options struct {
	// Profiles are canonical URLs (optionally |version) to validate against besides base R4.
	// Empty: the resource's meta.profile, or, when it declares none, the default (UK Core)
	// profile for its type when there is one.
	Profiles []string
	// BaseOnly validates against base R4 only, ignoring meta.profile and the defaults.
	BaseOnly bool
	// SkipStructure skips the structural R4 check, for callers that have just run it.
	SkipStructure bool
	// Raw is the resource's JSON as received, when the caller has it; it spares re-encoding
	// for the structural check.
	Raw []byte
	// Resolve finds resources outside the one validated (e.g. in the store) for resolve()
	// and reference target checks; optional.
	Resolve func(reference string) (map[string]any, bool)
	// Questionnaire finds a Questionnaire by canonical URL, for QuestionnaireResponses.
	Questionnaire func(canonical string) (map[string]any, bool)
}

// Result is the outcome of one validation.
type Result struct {
	Issues []outcome.Issue
	// BindingErrors counts the errors against base R4 required bindings (Config.Bindings).
	// Like a code outside its element's value set, they make the resource invalid R4
	// whatever profile it claims, so a write is rejected on them in every validation mode.
	BindingErrors int
}

// Valid reports whether no issue is an error or fatal.
func (r Result) Valid() bool {
	for _, is := range r.Issues {
		if is.Severity == "error" || is.Severity == "fatal" {
			return false
		}
	}
	return true
}

// Counts returns the number of errors (and fatals), warnings and information issues.
func (r Result) Counts() (errors, warnings, info int) {
	for _, is := range r.Issues {
		switch is.Severity {
		case "error", "fatal":
			errors++
		case "warning":
			warnings++
		default:
			info++
		}
	}
	return
}

// Outcome renders the result as an OperationOutcome.
func (r Result) Outcome() map[string]any { return outcome.Resource(r.Issues) }

// New compiles the invariants and profiles.
func New(cfg Config) (*Validator, error) {
	if cfg.FHIRPath == nil {
		return nil, fmt.Errorf("validate: a FHIRPath engine is required")
	}
	v := &Validator{
		fp:       cfg.FHIRPath,
		model:    cfg.FHIRPath.Model(),
		checker:  cfg.Checker,
		profiles: map[string]*compiledProfile{},
		vsets:    map[string]*valueSet{},
		extURLs:  map[string]bool{},
		verif:    cfg.Verification,
		qcheck:   cfg.Questionnaire,
		rootOpt:  map[string]fhirpath.Option{},
	}
	if v.checker == nil {
		c, err := resource.NewChecker(0)
		if err != nil {
			return nil, err
		}
		v.checker = c
	}
	for _, n := range v.model.TypeNames() {
		v.rootOpt[n] = fhirpath.WithRootType(n)
	}
	var err error
	if v.base, err = v.compileBase(cfg.Invariants); err != nil {
		return nil, err
	}
	for _, vs := range cfg.ValueSets {
		if vs.URL == "" {
			return nil, fmt.Errorf("validate: a value set has no url")
		}
		v.vsets[vs.URL] = newValueSet(vs)
	}
	if v.bindings, err = v.compileBindings(cfg.Bindings); err != nil {
		return nil, err
	}
	byURL := map[string]Profile{}
	for _, p := range cfg.Profiles {
		if p.URL == "" || p.Type == "" {
			return nil, fmt.Errorf("validate: profile %q lacks url or type", p.Name)
		}
		if !v.model.IsResource(p.Type) {
			return nil, fmt.Errorf("validate: profile %s constrains %q, which is not an R4 resource type", p.URL, p.Type)
		}
		if _, dup := byURL[p.URL]; dup {
			return nil, fmt.Errorf("validate: profile %s is defined twice", p.URL)
		}
		byURL[p.URL] = p
	}
	for url := range byURL {
		cp, err := v.compileProfile(url, byURL)
		if err != nil {
			return nil, err
		}
		v.profiles[url] = cp
	}
	v.defaults = cfg.Defaults
	if v.defaults == nil {
		v.defaults = map[string]string{}
		for url, p := range byURL {
			if strings.HasSuffix(url, "/UKCore-"+p.Type) {
				v.defaults[p.Type] = url
			}
		}
	}
	for typ, url := range v.defaults {
		if _, ok := v.profiles[url]; !ok {
			return nil, fmt.Errorf("validate: default profile %s for %s is not defined", url, typ)
		}
	}
	if v.qcheck == nil {
		qopts := questionnaire.Options{ValueSet: v.valueSetCodes}
		v.qcheck = func(qr, q map[string]any) []outcome.Issue { return questionnaire.Check(qr, q, qopts) }
	}
	if v.verif != nil {
		if err := v.verif.check(); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// DefaultProfile returns the profile a resource of typ without meta.profile is checked
// against, or "" when there is none.
func (v *Validator) DefaultProfile(typ string) string { return v.defaults[typ] }

// Known reports whether a profile URL (optionally |version) is known: a loaded profile or the
// core StructureDefinition of a resource type.
func (v *Validator) Known(url string) bool {
	_, ok, _ := v.lookupProfile(url)
	return ok
}

// ProfileURLs lists the loaded profiles.
func (v *Validator) ProfileURLs() []string {
	out := make([]string, 0, len(v.profiles))
	for u := range v.profiles {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

const coreSD = "http://hl7.org/fhir/StructureDefinition/"

// lookupProfile resolves a canonical: the profile (nil for a core resource type's own
// StructureDefinition), whether it is known, and a reason when it is not.
func (v *Validator) lookupProfile(canonical string) (*compiledProfile, bool, string) {
	url, version, _ := strings.Cut(canonical, "|")
	if p, ok := v.profiles[url]; ok {
		if version != "" && p.version != "" && version != p.version {
			return nil, false, fmt.Sprintf("profile %s is known at version %s, not %s", url, p.version, version)
		}
		return p, true, ""
	}
	if t, ok := strings.CutPrefix(url, coreSD); ok && v.model.IsResource(t) {
		return nil, true, ""
	}
	return nil, false, fmt.Sprintf("profile %s is not known to this server; it cannot be checked", canonical)
}

// Validate checks res against base R4 and the profiles chosen by opts.
func (v *Validator) Validate(res map[string]any, opts Options) Result {
	var issues []outcome.Issue
	typ, _ := res["resourceType"].(string)
	if typ == "" {
		return Result{Issues: []outcome.Issue{{Severity: "error", Code: "required", Diagnostics: "the resource has no resourceType", Expression: []string{"resourceType"}}}}
	}
	if !v.model.IsResource(typ) {
		return Result{Issues: []outcome.Issue{{Severity: "error", Code: "not-supported", Diagnostics: fmt.Sprintf("%q is not an R4 resource type", typ), Expression: []string{"resourceType"}}}}
	}
	if !opts.SkipStructure {
		raw := opts.Raw
		if raw == nil {
			raw = resource.Encode(res)
		}
		if oe := v.checker.Check(raw); oe != nil {
			for _, is := range oe.Issues {
				for i, x := range is.Expression {
					is.Expression[i] = tidyCheckerPath(x)
				}
				issues = append(issues, is)
			}
			if oe.Status == http.StatusBadRequest && len(issues) == 1 && issues[0].Code == "invalid" {
				return Result{Issues: issues}
			}
		}
	}
	w := &walker{v: v, opts: &opts, issues: issues}
	w.resource(res, typ, nil, opts.Profiles, opts.BaseOnly, nil)
	return Result{Issues: w.issues, BindingErrors: w.bindingErrors}
}

// tidyCheckerPath turns the structural checker's Bundle entry paths
// ("Bundle.entry[0].resource.Patient.birthDate") into FHIRPath
// ("Bundle.entry[0].resource.birthDate").
func tidyCheckerPath(x string) string {
	const marker = ".resource."
	out := x
	for i := 0; ; {
		j := strings.Index(out[i:], marker)
		if j < 0 {
			return out
		}
		k := i + j + len(marker)
		rest := out[k:]
		end := strings.IndexAny(rest, ".[")
		name := rest
		if end >= 0 {
			name = rest[:end]
		}
		if name != "" && name[0] >= 'A' && name[0] <= 'Z' {
			// "resource.Patient" → "resource"; drop the type segment and its dot.
			if end >= 0 && rest[end] == '.' {
				out = out[:k] + rest[end+1:]
			} else if end >= 0 {
				out = out[:k-1] + rest[end:]
			} else {
				out = out[:k-1]
			}
		}
		i = k - 1
	}
}

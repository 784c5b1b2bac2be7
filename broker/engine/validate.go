package engine

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// Validator checks resources against base R4 invariants and profiles (profiles/validate).
type Validator interface {
	Validate(res map[string]any, opts validate.Options) validate.Result
	// Normalize rewrites retired spellings (NHS number verification status) in place.
	Normalize(res map[string]any) bool
	Known(url string) bool
}

// Validation modes for writes.
const (
	// ValidationOff stores whatever passes the structural R4 check; base R4 required
	// bindings on Coding and CodeableConcept elements are not checked either.
	ValidationOff = "off"
	// ValidationReject answers 422 with the issues when validation finds an error.
	ValidationReject = "reject"
	// ValidationTag stores the resource with a meta.tag marking it invalid; the issues are
	// recomputed by $validate on the stored instance. A base R4 required binding violation
	// is rejected with 422 instead, in this mode and in quarantine.
	ValidationTag = "tag"
	// ValidationQuarantine stores an invalid resource as a Basic resource (not searchable as
	// its own type) and answers 202 with the issues.
	ValidationQuarantine = "quarantine"
)

// ValidationCodeSystem is the code system of the meta.tag (code "invalid") and of the
// quarantine Basic.code (code "quarantined").
const ValidationCodeSystem = "https://hjbroker.dev/fhir/CodeSystem/validation"

// Extensions of a quarantine Basic resource.
const (
	ExtQuarantinedResource = "https://hjbroker.dev/fhir/StructureDefinition/quarantined-resource"
	ExtValidationOutcome   = "https://hjbroker.dev/fhir/StructureDefinition/validation-outcome"
)

// Validation configures validation on write.
type Validation struct {
	// Mode is off, reject (the default when a Validator is set), tag or quarantine.
	Mode string
	// AllowedProfiles, when not empty, lists the only profiles a resource may declare in
	// meta.profile; another one is rejected with 422 in every mode.
	AllowedProfiles []string
}

// ParseValidationMode checks a mode name.
func ParseValidationMode(s string) (string, error) {
	switch s {
	case "":
		return ValidationReject, nil
	case ValidationOff, ValidationReject, ValidationTag, ValidationQuarantine:
		return s, nil
	}
	return "", fmt.Errorf("validation mode %q: want off, reject, tag or quarantine", s)
}

// quarantineError carries an invalid resource out of the write path to be quarantined.
type quarantineError struct {
	typ    string
	res    map[string]any
	issues []outcome.Issue
}

func (q *quarantineError) Error() string {
	return fmt.Sprintf("%s failed validation (%d issues)", q.typ, len(q.issues))
}

// validateWrite applies the write validation mode to a structurally valid resource. at
// prefixes expressions inside Bundles; a transaction is all or nothing, so there quarantine
// rejects instead.
func (e *Engine) validateWrite(res map[string]any, raw []byte, typ, at string) error {
	v := e.cfg.Validator
	if v == nil {
		return nil
	}
	if err := e.checkAllowedProfiles(res, at); err != nil {
		return err
	}
	if e.cfg.Validation.Mode == ValidationOff {
		return nil
	}
	if e.cfg.Validation.Mode == ValidationTag {
		untag(res)
	}
	// The structural check has just passed; normalisation may have changed the body.
	r := v.Validate(res, validate.Options{SkipStructure: true, Questionnaire: e.questionnaireByURL})
	if r.Valid() {
		return nil
	}
	issues := onlyProblems(r.Issues)
	if at != "" {
		prefixIssues(issues, typ, at)
	}
	if r.BindingErrors > 0 {
		// A coded element outside its base R4 required binding is invalid R4 whatever the
		// profile, like a code element outside its value set (which the structural check
		// rejects): it is rejected in every validating mode, never tagged or quarantined.
		return &outcome.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
	}
	switch e.cfg.Validation.Mode {
	case ValidationTag:
		errs, _, _ := r.Counts()
		tag(res, errs)
		return nil
	case ValidationQuarantine:
		if at == "" {
			return &quarantineError{typ: typ, res: res, issues: issues}
		}
	}
	return &outcome.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
}

// onlyProblems drops information issues (absent must-support elements) from write errors
// and puts the errors first, so the issue that decided the answer leads the outcome.
func onlyProblems(in []outcome.Issue) []outcome.Issue {
	out := in[:0:0]
	for _, is := range in {
		if is.Severity != "information" {
			out = append(out, is)
		}
	}
	slices.SortStableFunc(out, func(a, b outcome.Issue) int { return severityRank(a.Severity) - severityRank(b.Severity) })
	return out
}

func severityRank(s string) int {
	switch s {
	case "fatal":
		return 0
	case "error":
		return 1
	}
	return 2
}

func prefixIssues(issues []outcome.Issue, typ, at string) {
	for i := range issues {
		for j, x := range issues[i].Expression {
			switch {
			case x == typ:
				x = at
			case strings.HasPrefix(x, typ+"."):
				x = at + x[len(typ):]
			}
			issues[i].Diagnostics = strings.Replace(issues[i].Diagnostics, issues[i].Expression[j], x, 1)
			issues[i].Expression[j] = x
		}
	}
}

func (e *Engine) checkAllowedProfiles(res map[string]any, at string) error {
	meta, _ := res["meta"].(map[string]any)
	list, _ := meta["profile"].([]any)
	allowed := e.cfg.Validation.AllowedProfiles
	for i, x := range list {
		u, _ := x.(string)
		if len(allowed) == 0 || contains(allowed, u) || contains(allowed, strings.SplitN(u, "|", 2)[0]) {
			continue
		}
		root := at
		if root == "" {
			root = resource.Type(res)
		}
		where := fmt.Sprintf("%s.meta.profile[%d]", root, i)
		return outcome.At(http.StatusUnprocessableEntity, "business-rule", where,
			"profile %s is not accepted by this server; allowed: %s", u, strings.Join(allowed, ", "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// untag removes the invalid tag, so a corrected version does not keep it.
func untag(res map[string]any) {
	meta, _ := res["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	if len(tags) == 0 {
		return
	}
	kept := tags[:0:0]
	for _, t := range tags {
		if m, ok := t.(map[string]any); ok && m["system"] == ValidationCodeSystem {
			continue
		}
		kept = append(kept, t)
	}
	if len(kept) == 0 {
		delete(meta, "tag")
		if len(meta) == 0 {
			delete(res, "meta")
		}
		return
	}
	meta["tag"] = kept
}

func tag(res map[string]any, errs int) {
	meta := resource.Meta(res)
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, map[string]any{
		"system":  ValidationCodeSystem,
		"code":    "invalid",
		"display": fmt.Sprintf("failed validation with %d errors; $validate on this resource lists them", errs),
	})
}

// quarantine stores the resource as a Basic resource carrying it and its OperationOutcome,
// and answers 202 with the issues.
func (e *Engine) quarantine(ctx context.Context, req *Request, q *quarantineError) *Response {
	oo := outcome.Resource(q.issues)
	basic := map[string]any{
		"resourceType": "Basic",
		"code": map[string]any{"coding": []any{map[string]any{
			"system": ValidationCodeSystem, "code": "quarantined", "display": "invalid " + q.typ + " held in quarantine",
		}}},
		"extension": []any{
			map[string]any{"url": ExtQuarantinedResource, "valueAttachment": map[string]any{
				"contentType": "application/fhir+json", "data": base64.StdEncoding.EncodeToString(resource.Encode(q.res)),
			}},
			map[string]any{"url": ExtValidationOutcome, "valueAttachment": map[string]any{
				"contentType": "application/fhir+json", "data": base64.StdEncoding.EncodeToString(resource.Encode(oo)),
			}},
		},
	}
	id := e.cfg.NewID()
	var out *store.Resource
	err := e.writeTx(ctx, func(tx store.Tx) error {
		var err error
		out, err = e.write(ctx, tx, "Basic", id, resource.Clone(basic).(map[string]any), http.MethodPost, nil)
		return err
	})
	if err != nil {
		return errorResponse(err)
	}
	issues := append(q.issues[:len(q.issues):len(q.issues)], outcome.Issue{Severity: "information", Code: "informational",
		Diagnostics: fmt.Sprintf("the %s failed validation and is held in quarantine as Basic/%s; it is not stored as a %s", q.typ, out.ID, q.typ)})
	r := &Response{Status: http.StatusAccepted, Resource: outcome.Resource(issues)}
	r.setHeader("Content-Location", req.Base+"/Basic/"+out.ID)
	return r
}

// validateOp runs $validate: POST /{Type}/$validate with a resource or a Parameters
// (resource, profile), ?profile=, and POST|GET /{Type}/{id}/$validate on a stored instance.
// It answers 200 with an OperationOutcome; 400 only when the input cannot be parsed.
func (e *Engine) validateOp(ctx context.Context, req *Request, typ, id string) (*Response, error) {
	fail := &Response{Interaction: "operation"}
	if e.cfg.Validator == nil {
		return fail, outcome.New(http.StatusNotImplemented, "not-supported", "this server has no validator configured")
	}
	if req.Method != http.MethodPost && req.Method != http.MethodGet {
		return fail, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$validate takes GET or POST")
	}
	profiles := req.Query["profile"]
	var res map[string]any
	var raw []byte
	if len(req.Body) > 0 {
		body, err := resource.Decode(req.Body, resource.Limits{MaxDepth: e.cfg.Limits.MaxDepth})
		if err != nil {
			return fail, err
		}
		raw = req.Body
		res = body
		if resource.Type(body) == "Parameters" && typ != "Parameters" {
			res, raw = nil, nil
			params, _ := body["parameter"].([]any)
			for _, p := range params {
				pm, _ := p.(map[string]any)
				switch pm["name"] {
				case "resource":
					res, _ = pm["resource"].(map[string]any)
				case "profile":
					for _, k := range []string{"valueUri", "valueCanonical", "valueString"} {
						if s, ok := pm[k].(string); ok && s != "" {
							profiles = append(profiles, s)
						}
					}
				}
			}
			if res == nil {
				return fail, outcome.At(http.StatusBadRequest, "required", "Parameters.parameter", "the Parameters has no parameter named resource to validate")
			}
		}
	} else {
		if id == "" {
			return fail, outcome.New(http.StatusBadRequest, "required", "$validate needs a resource in the body (or an instance URL: %s/{id}/$validate)", typ)
		}
		cur, err := e.cfg.Store.Current(ctx, typ, id)
		if errors.Is(err, store.ErrNotFound) {
			return fail, errNotFound(typ, id)
		}
		if err != nil {
			return nil, err
		}
		if cur.Deleted {
			return fail, outcome.New(http.StatusGone, "deleted", "%s/%s was deleted", typ, id)
		}
		raw = cur.Body
		if res, err = resource.Decode(cur.Body, resource.Limits{}); err != nil {
			return nil, err
		}
	}
	var issues []outcome.Issue
	if rt := resource.Type(res); typ != "" && rt != typ {
		issues = append(issues, outcome.Issue{Severity: "error", Code: "invalid", Expression: []string{"resourceType"},
			Diagnostics: fmt.Sprintf("resourceType %q does not match the URL, which names %q", rt, typ)})
	}
	r := e.cfg.Validator.Validate(res, validate.Options{Profiles: profiles, Raw: raw, Questionnaire: e.questionnaireByURL})
	issues = append(issues, r.Issues...)
	return &Response{Status: http.StatusOK, Resource: outcome.Resource(issues), Interaction: "operation"}, nil
}

// questionnaireByURL finds a stored Questionnaire by canonical URL ("url" or "url|version"),
// so a QuestionnaireResponse is checked against the Questionnaire it answers.
func (e *Engine) questionnaireByURL(canonical string) (map[string]any, bool) {
	u, version, _ := strings.Cut(canonical, "|")
	q := url.Values{"url": {u}}
	if version != "" {
		q.Set("version", version)
	}
	sq, err := search.Parse("Questionnaire", q, e.cfg.Params, search.Options{Strict: true})
	if err != nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	page, err := e.cfg.Store.Search(ctx, sq, store.SearchOptions{Limit: 1})
	if err != nil || len(page.Entries) == 0 {
		return nil, false
	}
	m, err := resource.Decode(page.Entries[0].Body, resource.Limits{})
	return m, err == nil
}

package testscript

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"

	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
)

// Problem is one way a TestScript breaks the R4 rules, named by the element at fault.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// Error is an invalid TestScript: every problem found.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	b.WriteString("invalid TestScript:")
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// CheckOptions are the tools Check uses; each is optional.
type CheckOptions struct {
	// FHIRPath compiles expressions (and resource types are checked against its model).
	FHIRPath *fhirpath.Engine
	// Structure checks the script against the R4 structure (unknown elements, wrong types,
	// codes outside required bindings).
	Structure *resource.Checker
}

// OperationSystem is the code system of TestScript operation types.
const OperationSystem = "http://terminology.hl7.org/CodeSystem/testscript-operation-codes"

// operationCodes are the testscript-operation-codes, each with the default HTTP method.
var operationCodes = map[string]string{
	"read": "get", "vread": "get", "update": "put", "updateCreate": "put", "patch": "patch",
	"delete": "delete", "deleteCondSingle": "delete", "deleteCondMultiple": "delete",
	"history": "get", "create": "post", "search": "get", "batch": "post", "transaction": "post",
	"capabilities": "get",
	// FHIR operations, invoked as $code.
	"apply": "post", "closure": "post", "find-matches": "post", "conforms": "get",
	"data-requirements": "get", "document": "post", "evaluate": "post", "evaluate-measure": "get",
	"everything": "get", "expand": "get", "find": "get", "graphql": "post", "implements": "get",
	"lastn": "get", "lookup": "get", "match": "post", "meta": "get", "meta-add": "post",
	"meta-delete": "post", "populate": "post", "populatehtml": "post", "populatelink": "post",
	"process-message": "post", "questionnaire": "get", "stats": "get", "subset": "get",
	"subsumes": "get", "transform": "post", "translate": "get", "validate-code": "get",
	"validate": "post", "snapshot": "post",
}

var (
	operators = set("equals", "notEquals", "in", "notIn", "greaterThan", "lessThan", "empty",
		"notEmpty", "contains", "notContains", "eval")
	responseCodes = map[string]int{"okay": 200, "created": 201, "noContent": 204, "notModified": 304,
		"bad": 400, "forbidden": 403, "notFound": 404, "methodNotAllowed": 405, "conflict": 409,
		"gone": 410, "preconditionFailed": 412, "unprocessable": 422}
	methods  = set("delete", "get", "options", "patch", "post", "put", "head")
	statuses = set("draft", "active", "retired", "unknown")
	varRef   = regexp.MustCompile(`\$\{([^}]*)\}`)
)

func set(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, s := range items {
		m[s] = true
	}
	return m
}

// needsType are the operation types that act on a resource type.
var needsType = map[string]bool{"read": true, "vread": true, "update": true, "updateCreate": true, "patch": true,
	"delete": true, "deleteCondSingle": true, "deleteCondMultiple": true, "create": true}

// subjects are the assert elements that say what an assert checks; R4 (tst-5, tst-6) allows
// at most one, and an assert without one checks nothing.
var subjects = []string{"contentType", "expression", "headerField", "minimumId", "navigationLinks",
	"path", "requestMethod", "requestURL", "resource", "response", "responseCode", "validateProfileId"}

func (a *Assert) subjects() []string {
	var out []string
	has := map[string]bool{
		"contentType": a.ContentType != "", "expression": a.Expression != "", "headerField": a.HeaderField != "",
		"minimumId": a.MinimumID != "", "navigationLinks": a.NavigationLinks != nil, "path": a.Path != "",
		"requestMethod": a.RequestMethod != "", "requestURL": a.RequestURL != "", "resource": a.Resource != "",
		"response": a.Response != "", "responseCode": a.ResponseCode != "", "validateProfileId": a.ValidateProfileID != "",
	}
	for _, s := range subjects {
		if has[s] {
			out = append(out, s)
		}
	}
	return out
}

type checker struct {
	s        *Script
	o        CheckOptions
	problems []Problem
	fixtures map[string]bool
	ids      map[string]bool // fixtures, responseIds and requestIds
	profiles map[string]bool
	vars     map[string]bool
	origins  map[int]bool
	dests    map[int]bool
}

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Check applies the R4 TestScript rules to s and checks every reference inside it resolves:
// fixtures, profiles, variables, sourceId/targetId/responseId, origins and destinations. It
// returns an *Error listing every problem, or nil.
func Check(s *Script, o CheckOptions) error {
	c := &checker{s: s, o: o, fixtures: map[string]bool{}, ids: map[string]bool{}, profiles: map[string]bool{},
		vars: map[string]bool{}, origins: map[int]bool{}, dests: map[int]bool{}}
	c.script()
	// The R4 structure check catches what the rules above do not look at (unknown elements,
	// wrong types); where both speak of one element, the rule's message is the clearer.
	if o.Structure != nil && s.Raw != nil {
		if oe := o.Structure.Check(s.Raw); oe != nil {
			seen := map[string]bool{}
			for _, p := range c.problems {
				seen[p.Path] = true
			}
			for _, is := range oe.Issues {
				p := "TestScript"
				if len(is.Expression) > 0 {
					p = is.Expression[0]
				}
				if !seen[p] {
					c.add(p, "%s", strings.TrimPrefix(is.Diagnostics, p+": "))
				}
			}
		}
	}
	if len(c.problems) == 0 {
		return nil
	}
	return &Error{File: s.File, Problems: c.problems}
}

func (c *checker) script() {
	t := &c.s.TestScript
	if t.URL == "" {
		c.add("TestScript.url", "is required")
	}
	if t.Name == "" {
		c.add("TestScript.name", "is required")
	}
	switch {
	case t.Status == "":
		c.add("TestScript.status", "is required")
	case !statuses[t.Status]:
		c.add("TestScript.status", "%q is not a publication status (draft, active, retired, unknown)", t.Status)
	}
	c.participants("TestScript.origin", t.Origin, c.origins)
	c.participants("TestScript.destination", t.Destination, c.dests)
	if m := t.Metadata; m != nil {
		if len(m.Capability) == 0 {
			c.add("TestScript.metadata.capability", "is required when metadata is present")
		}
		for i, cp := range m.Capability {
			p := fmt.Sprintf("TestScript.metadata.capability[%d]", i)
			if cp.Capabilities == "" {
				c.add(p+".capabilities", "is required")
			}
			if cp.Required == nil && cp.Validated == nil {
				c.add(p, "needs required or validated or both (tst-4)")
			}
		}
	}
	contained := map[string]bool{}
	for _, raw := range t.Contained {
		var r struct {
			ID string `json:"id"`
		}
		if err := jsonUnmarshal(raw, &r); err == nil && r.ID != "" {
			contained[r.ID] = true
		}
	}
	for i, f := range t.Fixture {
		p := fmt.Sprintf("TestScript.fixture[%d]", i)
		switch {
		case f.ID == "":
			c.add(p+".id", "is required: fixtures are referred to by id")
		case c.fixtures[f.ID]:
			c.add(p+".id", "%q is used by another fixture", f.ID)
		}
		c.fixtures[f.ID], c.ids[f.ID] = true, true
		if f.Autocreate == nil {
			c.add(p+".autocreate", "is required")
		}
		if f.Autodelete == nil {
			c.add(p+".autodelete", "is required")
		}
		if f.Resource == nil || f.Resource.Reference == "" {
			if (f.Autocreate != nil && *f.Autocreate) || (f.Autodelete != nil && *f.Autodelete) {
				c.add(p+".resource", "is required for a fixture that is autocreated or autodeleted")
			}
			continue
		}
		ref := f.Resource.Reference
		if id, ok := strings.CutPrefix(ref, "#"); ok {
			if !contained[id] {
				c.add(p+".resource.reference", "%q: no contained resource has id %q", ref, id)
			}
			continue
		}
		if strings.Contains(ref, "://") {
			c.add(p+".resource.reference", "%q: fixtures are contained resources (#id) or files beside the script, not remote URLs", ref)
			continue
		}
		if c.s.FS == nil {
			c.add(p+".resource.reference", "%q: a file fixture needs the script to be loaded from a folder", ref)
			continue
		}
		if _, err := readFixture(c.s, ref); err != nil {
			c.add(p+".resource.reference", "%v", err)
		}
	}
	for i, pr := range t.Profile {
		p := fmt.Sprintf("TestScript.profile[%d]", i)
		switch {
		case pr.ID == "":
			c.add(p+".id", "is required: profiles are referred to by id (validateProfileId)")
		case c.profiles[pr.ID]:
			c.add(p+".id", "%q is used by another profile", pr.ID)
		}
		if pr.Reference == "" {
			c.add(p+".reference", "is required: the profile's canonical URL")
		}
		c.profiles[pr.ID] = true
	}
	// responseIds and requestIds may be referred to anywhere (variables are evaluated when used).
	c.collectIDs()
	for i, v := range t.Variable {
		p := fmt.Sprintf("TestScript.variable[%d]", i)
		switch {
		case v.Name == "":
			c.add(p+".name", "is required")
		case c.vars[v.Name]:
			c.add(p+".name", "%q is used by another variable", v.Name)
		}
		c.vars[v.Name] = true
	}
	for i, v := range t.Variable {
		p := fmt.Sprintf("TestScript.variable[%d]", i)
		n := 0
		for _, s := range []string{v.Expression, v.HeaderField, v.Path} {
			if s != "" {
				n++
			}
		}
		if n > 1 {
			c.add(p, "may hold only one of expression, headerField and path (tst-3)")
		}
		if n == 0 && v.DefaultValue == "" && v.Hint == "" {
			c.add(p, "has no value: give expression, headerField or path, a defaultValue, or a hint for a value the runner is given")
		}
		if v.SourceID != "" && !c.ids[v.SourceID] {
			c.add(p+".sourceId", "%q is neither a fixture nor a responseId of this script", v.SourceID)
		}
		c.expression(p+".expression", v.Expression)
		c.simplePath(p+".path", v.Path)
		c.varRefs(p+".expression", v.Expression)
	}
	if t.Setup != nil {
		if len(t.Setup.Action) == 0 {
			c.add("TestScript.setup.action", "is required: a setup has at least one action")
		}
		for i, a := range t.Setup.Action {
			c.action(fmt.Sprintf("TestScript.setup.action[%d]", i), a)
		}
	}
	for i, ts := range t.Test {
		p := fmt.Sprintf("TestScript.test[%d]", i)
		if len(ts.Action) == 0 {
			c.add(p+".action", "is required: a test has at least one action")
		}
		for j, a := range ts.Action {
			c.action(fmt.Sprintf("%s.action[%d]", p, j), a)
		}
	}
	if t.Teardown != nil {
		if len(t.Teardown.Action) == 0 {
			c.add("TestScript.teardown.action", "is required: a teardown has at least one action")
		}
		for i, a := range t.Teardown.Action {
			p := fmt.Sprintf("TestScript.teardown.action[%d]", i)
			if a.Operation == nil {
				c.add(p+".operation", "is required: teardown actions are operations")
				continue
			}
			c.operation(p+".operation", a.Operation)
		}
	}
	if t.Setup == nil && len(t.Test) == 0 {
		c.add("TestScript.test", "the script has neither setup nor tests: it would check nothing")
	}
}

func (c *checker) participants(p string, list []Participant, seen map[int]bool) {
	for i, pt := range list {
		q := fmt.Sprintf("%s[%d]", p, i)
		if pt.Index == nil {
			c.add(q+".index", "is required")
		} else if seen[*pt.Index] {
			c.add(q+".index", "%d is used twice", *pt.Index)
		} else {
			seen[*pt.Index] = true
		}
		if pt.Profile == nil || pt.Profile.Code == "" {
			c.add(q+".profile", "is required")
		}
	}
}

func (c *checker) collectIDs() {
	add := func(op *Operation) {
		if op == nil {
			return
		}
		if op.ResponseID != "" {
			c.ids[op.ResponseID] = true
		}
		if op.RequestID != "" {
			c.ids[op.RequestID] = true
		}
	}
	t := &c.s.TestScript
	if t.Setup != nil {
		for _, a := range t.Setup.Action {
			add(a.Operation)
		}
	}
	for _, ts := range t.Test {
		for _, a := range ts.Action {
			add(a.Operation)
		}
	}
	if t.Teardown != nil {
		for _, a := range t.Teardown.Action {
			add(a.Operation)
		}
	}
}

func (c *checker) action(p string, a Action) {
	switch {
	case a.Operation != nil && a.Assert != nil:
		c.add(p, "holds both an operation and an assert; an action is one or the other (tst-1, tst-2)")
	case a.Operation != nil:
		c.operation(p+".operation", a.Operation)
	case a.Assert != nil:
		c.assert(p+".assert", a.Assert)
	default:
		c.add(p, "holds neither an operation nor an assert")
	}
}

func (c *checker) ref(p, id, what string) {
	if id != "" && !c.ids[id] {
		c.add(p, "%q is neither a fixture nor a responseId of this script (%s)", id, what)
	}
}

func (c *checker) varRefs(p, s string) {
	for _, m := range varRef.FindAllStringSubmatch(s, -1) {
		if !c.vars[m[1]] {
			c.add(p, "refers to ${%s}, which is not a variable of this script", m[1])
		}
	}
}

func (c *checker) operation(p string, op *Operation) {
	code := ""
	if op.Type != nil {
		code = op.Type.Code
		switch {
		case op.Type.System != "" && op.Type.System != OperationSystem:
			c.add(p+".type.system", "%q: operation types come from %s", op.Type.System, OperationSystem)
		case code == "":
			c.add(p+".type.code", "is required")
		default:
			if _, ok := operationCodes[code]; !ok {
				c.add(p+".type.code", "%q is not a TestScript operation type", code)
			}
		}
	} else if op.URL == "" {
		c.add(p+".type", "is required unless the operation gives its url")
	}
	if op.Method != "" && !methods[op.Method] {
		c.add(p+".method", "%q is not an HTTP operation (delete, get, options, patch, post, put, head)", op.Method)
	}
	if op.Type == nil && op.Method == "" {
		c.add(p+".method", "is required when the operation has no type")
	}
	if op.EncodeRequestURL == nil {
		c.add(p+".encodeRequestUrl", "is required")
	}
	if op.Resource != "" && c.o.FHIRPath != nil && !c.o.FHIRPath.Model().IsResource(op.Resource) {
		c.add(p+".resource", "%q is not an R4 resource type", op.Resource)
	}
	for _, f := range []struct{ name, v string }{{"contentType", op.ContentType}, {"accept", op.Accept}} {
		if f.v != "" && f.v != "json" && f.v != "xml" && !strings.Contains(f.v, "/") {
			c.add(p+"."+f.name, "%q is neither json, xml nor a MIME type", f.v)
		}
	}
	if op.Destination != nil && !c.dests[*op.Destination] {
		c.add(p+".destination", "%d is not the index of a TestScript.destination", *op.Destination)
	}
	if op.Origin != nil && !c.origins[*op.Origin] {
		c.add(p+".origin", "%d is not the index of a TestScript.origin", *op.Origin)
	}
	c.ref(p+".sourceId", op.SourceID, "sourceId")
	c.ref(p+".targetId", op.TargetID, "targetId")
	if op.ResponseID != "" && c.fixtures[op.ResponseID] {
		c.add(p+".responseId", "%q is the id of a fixture; a response may not replace a fixture", op.ResponseID)
	}
	c.varRefs(p+".url", op.URL)
	c.varRefs(p+".params", op.Params)
	for i, h := range op.RequestHeader {
		q := fmt.Sprintf("%s.requestHeader[%d]", p, i)
		if h.Field == "" {
			c.add(q+".field", "is required")
		}
		c.varRefs(q+".value", h.Value)
	}
	if op.Params != "" && op.URL != "" {
		c.add(p+".params", "is given with url; give one or the other")
	}
	// tst-8, tst-9, tst-10.
	switch code {
	case "capabilities", "search", "transaction", "history", "batch":
	default:
		n := 0
		for _, s := range []string{op.TargetID, op.URL, op.Params} {
			if s != "" {
				n++
			}
		}
		if op.SourceID == "" && n != 1 {
			c.add(p, "needs a sourceId, or exactly one of targetId, url and params (tst-8)")
		}
	}
	needsBody := map[string]bool{"create": true, "update": true, "updateCreate": true, "patch": true,
		"batch": true, "transaction": true}
	if needsBody[code] && op.SourceID == "" {
		c.add(p+".sourceId", "is required: a %s sends the sourceId fixture as its body", code)
	}
	if needsType[code] && op.URL == "" && op.Resource == "" && op.TargetID == "" && (op.SourceID == "" || code == "patch") {
		c.add(p+".resource", "is required: a %s without url, targetId or sourceId needs the resource type", code)
	}
}

func (c *checker) assert(p string, a *Assert) {
	subj := a.subjects()
	switch len(subj) {
	case 0:
		c.add(p, "has no subject: give one of %s", strings.Join(subjects, ", "))
	case 1:
	default:
		c.add(p, "has more than one subject (%s); an assert checks one thing (tst-5, tst-6)", strings.Join(subj, ", "))
	}
	if a.WarningOnly == nil {
		c.add(p+".warningOnly", "is required")
	}
	if a.Direction != "" && a.Direction != "request" && a.Direction != "response" {
		c.add(p+".direction", "%q is neither request nor response", a.Direction)
	}
	if a.Operator != "" && !operators[a.Operator] {
		c.add(p+".operator", "%q is not an assert operator (equals, notEquals, in, notIn, greaterThan, lessThan, empty, notEmpty, contains, notContains, eval)", a.Operator)
	}
	if a.Response != "" {
		if _, ok := responseCodes[a.Response]; !ok {
			c.add(p+".response", "%q is not an assert response code", a.Response)
		}
	}
	if a.RequestMethod != "" && !methods[a.RequestMethod] {
		c.add(p+".requestMethod", "%q is not an HTTP operation", a.RequestMethod)
	}
	if a.Resource != "" && c.o.FHIRPath != nil && !c.o.FHIRPath.Model().IsResource(a.Resource) {
		c.add(p+".resource", "%q is not an R4 resource type", a.Resource)
	}
	c.ref(p+".sourceId", a.SourceID, "sourceId")
	c.ref(p+".compareToSourceId", a.CompareToSourceID, "compareToSourceId")
	if a.MinimumID != "" && !c.fixtures[a.MinimumID] {
		c.add(p+".minimumId", "%q is not a fixture of this script", a.MinimumID)
	}
	if a.ValidateProfileID != "" && !c.profiles[a.ValidateProfileID] {
		c.add(p+".validateProfileId", "%q is not the id of a TestScript.profile", a.ValidateProfileID)
	}
	switch {
	case a.CompareToSourceID != "" && a.CompareToSourceExpression == "" && a.CompareToSourcePath == "":
		c.add(p+".compareToSourceExpression", "is required with compareToSourceId (or give compareToSourcePath)")
	case a.CompareToSourceExpression != "" && a.CompareToSourcePath != "":
		c.add(p+".compareToSourcePath", "is given with compareToSourceExpression; give one or the other")
	case a.CompareToSourceID == "" && (a.CompareToSourceExpression != "" || a.CompareToSourcePath != ""):
		c.add(p+".compareToSourceId", "is required with compareToSourceExpression or compareToSourcePath")
	}
	if a.CompareToSourceID != "" && a.Expression == "" && a.Path == "" {
		c.add(p+".compareToSourceId", "compares expression or path results; the assert has neither")
	}
	c.expression(p+".expression", a.Expression)
	c.expression(p+".compareToSourceExpression", a.CompareToSourceExpression)
	c.simplePath(p+".path", a.Path)
	c.simplePath(p+".compareToSourcePath", a.CompareToSourcePath)
	c.varRefs(p+".expression", a.Expression)
	c.varRefs(p+".value", a.Value)
	c.varRefs(p+".requestURL", a.RequestURL)
	c.varRefs(p+".headerField", a.HeaderField)
	if len(subj) != 1 {
		return
	}
	op := a.Operator
	valueOps := set("equals", "notEquals", "in", "notIn", "greaterThan", "lessThan", "contains", "notContains")
	switch subj[0] {
	case "response", "resource", "contentType", "responseCode", "requestMethod", "requestURL":
		// The subject element holds the expected value.
		if op == "empty" || op == "notEmpty" || op == "eval" {
			c.add(p+".operator", "%q does not apply to %s, which names the expected value", op, subj[0])
		}
		if a.Value != "" {
			c.add(p+".value", "is not used with %s, which names the expected value", subj[0])
		}
	case "headerField":
		if op == "eval" {
			c.add(p+".operator", "eval applies to expressions, not to headerField")
		}
		if (op == "" || valueOps[op]) && a.Value == "" {
			c.add(p+".value", "is required: the value the header is compared with")
		}
	case "expression", "path":
		if valueOps[op] && a.Value == "" && a.CompareToSourceID == "" {
			c.add(p+".value", "is required with operator %s (or compareToSourceId)", op)
		}
		if op == "eval" && subj[0] == "path" {
			c.add(p+".operator", "eval applies to expressions, not to path")
		}
	case "minimumId", "navigationLinks", "validateProfileId":
		if op != "" && op != "equals" && op != "notEquals" {
			c.add(p+".operator", "%q does not apply to %s (use equals or notEquals)", op, subj[0])
		}
		if a.Value != "" {
			c.add(p+".value", "is not used with %s", subj[0])
		}
	}
	if (op == "empty" || op == "notEmpty" || op == "eval") && a.Value != "" {
		c.add(p+".value", "is not used with operator %s", op)
	}
}

func (c *checker) expression(p, expr string) {
	if expr == "" || c.o.FHIRPath == nil {
		return
	}
	// Variables are substituted before evaluation; a placeholder keeps the syntax checkable.
	if _, err := c.o.FHIRPath.Compile(varRef.ReplaceAllString(expr, "x")); err != nil {
		c.add(p, "is not a valid FHIRPath expression: %v", err)
	}
}

func (c *checker) simplePath(p, sp string) {
	if sp == "" {
		return
	}
	fp, err := pathToFHIRPath(sp)
	if err != nil {
		c.add(p, "%v", err)
		return
	}
	c.expression(p, fp)
}

// readFixture reads a file fixture relative to the script's folder.
func readFixture(s *Script, ref string) ([]byte, error) {
	name := path.Clean(path.Join(path.Dir(s.File), ref))
	if strings.HasPrefix(name, "../") || name == ".." {
		return nil, fmt.Errorf("%q is outside the script's folder", ref)
	}
	b, err := fs.ReadFile(s.FS, name)
	if err != nil {
		return nil, fmt.Errorf("fixture file %q: %w", ref, err)
	}
	var v any
	if err := jsonUnmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("fixture file %q is not JSON: %v", ref, err)
	}
	return b, nil
}

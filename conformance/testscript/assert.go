package testscript

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// verdict is the outcome of one check before warningOnly is applied.
type verdict struct {
	ok       bool
	err      bool // the check could not be made
	msg      string
	expected string
	actual   string
}

func failf(expected, actual, format string, args ...any) verdict {
	return verdict{msg: fmt.Sprintf(format, args...), expected: expected, actual: actual}
}

func errorf(format string, args ...any) verdict {
	return verdict{err: true, msg: fmt.Sprintf(format, args...)}
}

func assertLabel(a *Assert) string {
	if a.Label != "" {
		return a.Label
	}
	if a.Description != "" {
		return a.Description
	}
	if s := a.subjects(); len(s) > 0 {
		return "assert " + s[0]
	}
	return "assert"
}

func (st *run) assert(p string, a *Assert) ActionResult {
	start := time.Now()
	ar := ActionResult{Path: p, Kind: "assert", Label: assertLabel(a)}
	v := st.check(context.Background(), a, &ar)
	ar.Duration = time.Since(start)
	ar.Message, ar.Expected, ar.Actual = v.msg, v.expected, v.actual
	switch {
	case v.ok:
		ar.Status = Pass
	case a.WarningOnly != nil && *a.WarningOnly:
		ar.Status = Warning
	case v.err:
		ar.Status = Errored
	default:
		ar.Status = Fail
	}
	return ar
}

func (st *run) check(ctx context.Context, a *Assert, ar *ActionResult) verdict {
	sub, err := st.subjectOf(ctx, a.SourceID, a.Direction == "request")
	if err != nil {
		return errorf("%v", err)
	}
	ar.Exchange = sub.ex
	op := a.Operator
	value, err := st.substitute(ctx, a.Value, false)
	if err != nil {
		return errorf("%v", err)
	}
	needExchange := func(what string) (*Exchange, *verdict) {
		if sub.ex == nil {
			v := errorf("%s needs a response, but the source is a fixture", what)
			return nil, &v
		}
		return sub.ex, nil
	}
	switch {
	case a.Response != "":
		ex, bad := needExchange("response")
		if bad != nil {
			return *bad
		}
		want := responseCodes[a.Response]
		return compare(orDefault(op, "equals"), []string{strconv.Itoa(ex.Status)}, strconv.Itoa(want),
			fmt.Sprintf("%s (%d)", a.Response, want), "HTTP status")
	case a.ResponseCode != "":
		ex, bad := needExchange("responseCode")
		if bad != nil {
			return *bad
		}
		want, err := st.substitute(ctx, a.ResponseCode, false)
		if err != nil {
			return errorf("%v", err)
		}
		return compare(orDefault(op, "equals"), []string{strconv.Itoa(ex.Status)}, want, want, "HTTP status")
	case a.ContentType != "":
		got := ""
		if sub.header != nil {
			got = sub.header.Get("Content-Type")
		}
		mt, _, err := mime.ParseMediaType(got)
		if err != nil {
			mt = got
		}
		want := mediaType(a.ContentType)
		v := compare(orDefault(op, "equals"), nonEmpty(strings.ToLower(mt)), strings.ToLower(want), want, "Content-Type")
		if !v.ok && v.actual == "" {
			v.actual = "(no Content-Type)"
		}
		return v
	case a.Resource != "":
		got := resource.Type(asMap(sub.body))
		v := compare(orDefault(op, "equals"), nonEmpty(got), a.Resource, a.Resource, "resource type")
		if !v.ok && got == "" {
			v.actual = "(no resource)"
		}
		return v
	case a.HeaderField != "":
		if sub.header == nil {
			return errorf("headerField needs a request or response, but the source is a fixture")
		}
		field, err := st.substitute(ctx, a.HeaderField, false)
		if err != nil {
			return errorf("%v", err)
		}
		got := sub.header.Values(field)
		return compare(orDefault(op, "equals"), got, value, value, "header "+field)
	case a.RequestMethod != "":
		ex, bad := needExchange("requestMethod")
		if bad != nil {
			return *bad
		}
		return compare(orDefault(op, "equals"), []string{strings.ToLower(ex.Method)}, a.RequestMethod, a.RequestMethod, "request method")
	case a.RequestURL != "":
		ex, bad := needExchange("requestURL")
		if bad != nil {
			return *bad
		}
		want, err := st.substitute(ctx, a.RequestURL, false)
		if err != nil {
			return errorf("%v", err)
		}
		return compare(orDefault(op, "equals"), []string{st.relative(ex.URL)}, st.relative(want), want, "request URL")
	case a.Expression != "" || a.Path != "":
		return st.checkExpression(ctx, a, sub, value)
	case a.MinimumID != "":
		fx, err := st.subjectOf(ctx, a.MinimumID, false)
		if err != nil || fx.body == nil {
			return errorf("fixture %q has no content", a.MinimumID)
		}
		if sub.body == nil {
			return failf("content of fixture "+a.MinimumID, "(no body)", "the body holds no resource")
		}
		miss := missing(fx.body, sub.body, resourceRoot(fx.body))
		ok := miss == ""
		if op == "notEquals" {
			if ok {
				return failf("content differing from fixture "+a.MinimumID, "all of it present", "the body holds all of fixture %s", a.MinimumID)
			}
			return verdict{ok: true}
		}
		if !ok {
			return failf(miss+" as in fixture "+a.MinimumID, "absent or different", "the body lacks content of fixture %s: %s", a.MinimumID, miss)
		}
		return verdict{ok: true}
	case a.NavigationLinks != nil:
		return st.checkLinks(ctx, *a.NavigationLinks != (op == "notEquals"), sub)
	case a.ValidateProfileID != "":
		return st.checkProfile(a, sub)
	}
	return errorf("the assert has no subject")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// relative strips the base from a URL so requestURL may be given either way.
func (st *run) relative(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, st.r.cfg.Base), "/")
}

// compare applies an operator to actual values and an expected value: equals, in and the
// orderings need at least one value and hold for every value; notEquals and notIn hold when
// no value matches; contains holds when some value contains the expected text.
func compare(op string, actual []string, expected, shown, what string) verdict {
	act := strings.Join(actual, ", ")
	if len(actual) == 0 {
		act = "(none)"
	}
	fail := func(exp string) verdict {
		return failf(exp, act, "%s is %s, expected %s", what, act, exp)
	}
	all := func(f func(string) bool) bool {
		if len(actual) == 0 {
			return false
		}
		for _, a := range actual {
			if !f(a) {
				return false
			}
		}
		return true
	}
	anyOf := func(f func(string) bool) bool {
		for _, a := range actual {
			if f(a) {
				return true
			}
		}
		return false
	}
	list := strings.Split(expected, ",")
	for i := range list {
		list[i] = strings.TrimSpace(list[i])
	}
	inList := func(a string) bool {
		for _, l := range list {
			if a == l {
				return true
			}
		}
		return false
	}
	eq := func(a string) bool { return a == expected }
	var ok bool
	var exp string
	switch op {
	case "equals":
		ok, exp = all(eq), shown
	case "notEquals":
		ok, exp = !anyOf(eq), "not "+shown
	case "in":
		ok, exp = all(inList), "one of "+shown
	case "notIn":
		ok, exp = !anyOf(inList), "none of "+shown
	case "greaterThan":
		ok, exp = all(func(a string) bool { return order(a, expected) > 0 }), "greater than "+shown
	case "lessThan":
		ok, exp = all(func(a string) bool { return order(a, expected) < 0 }), "less than "+shown
	case "contains":
		ok, exp = anyOf(func(a string) bool { return strings.Contains(a, expected) }), "containing "+shown
	case "notContains":
		ok, exp = !anyOf(func(a string) bool { return strings.Contains(a, expected) }), "not containing "+shown
	case "empty":
		ok, exp = len(actual) == 0, "empty"
	case "notEmpty":
		ok, exp = len(actual) > 0, "not empty"
	default:
		return errorf("operator %s does not apply to %s", op, what)
	}
	if ok {
		return verdict{ok: true, expected: exp, actual: act}
	}
	return fail(exp)
}

// order compares numerically when both sides are numbers, else as text (which orders FHIR
// dates and instants of the same precision correctly).
func order(a, b string) int {
	fa, ea := strconv.ParseFloat(a, 64)
	fb, eb := strconv.ParseFloat(b, 64)
	if ea == nil && eb == nil {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

func (st *run) checkExpression(ctx context.Context, a *Assert, sub *subject, value string) verdict {
	expr, shown := a.Expression, a.Expression
	if a.Path != "" {
		var err error
		if expr, err = pathToFHIRPath(a.Path); err != nil {
			return errorf("%v", err)
		}
		shown = a.Path
	}
	expr, err := st.substitute(ctx, expr, false)
	if err != nil {
		return errorf("%v", err)
	}
	got, err := st.evaluate(expr, sub.body)
	if err != nil {
		return errorf("evaluating %s: %v", shown, err)
	}
	actual := make([]string, len(got))
	for i, v := range got {
		actual[i] = v.String()
	}
	op := a.Operator
	if a.CompareToSourceID != "" {
		cmp, err := st.subjectOf(ctx, a.CompareToSourceID, false)
		if err != nil {
			return errorf("compareToSourceId: %v", err)
		}
		cexpr := a.CompareToSourceExpression
		if a.CompareToSourcePath != "" {
			if cexpr, err = pathToFHIRPath(a.CompareToSourcePath); err != nil {
				return errorf("%v", err)
			}
		}
		if cexpr, err = st.substitute(ctx, cexpr, false); err != nil {
			return errorf("%v", err)
		}
		want, err := st.evaluate(cexpr, cmp.body)
		if err != nil {
			return errorf("evaluating %s on %s: %v", cexpr, a.CompareToSourceID, err)
		}
		wantS := make([]string, len(want))
		for i, v := range want {
			wantS[i] = v.String()
		}
		return compareCollections(orDefault(op, "equals"), actual, wantS, shown, cexpr+" of "+a.CompareToSourceID)
	}
	if op == "eval" || (op == "" && a.Value == "") {
		if len(got) == 1 {
			if b, ok := got[0].AsBool(); ok {
				if b {
					return verdict{ok: true}
				}
				return failf("true", "false", "%s is false", shown)
			}
		}
		return failf("true", "["+strings.Join(actual, ", ")+"]", "%s does not evaluate to true", shown)
	}
	return compare(orDefault(op, "equals"), actual, value, value, shown)
}

// compareCollections compares an expression's values with those of compareToSource.
func compareCollections(op string, actual, expected []string, what, source string) verdict {
	act, exp := "["+strings.Join(actual, ", ")+"]", "["+strings.Join(expected, ", ")+"]"
	equal := len(actual) == len(expected)
	for i := 0; equal && i < len(actual); i++ {
		equal = actual[i] == expected[i]
	}
	contains := func(list []string, s string) bool {
		for _, l := range list {
			if l == s {
				return true
			}
		}
		return false
	}
	var ok bool
	switch op {
	case "equals":
		ok = equal && len(actual) > 0
	case "notEquals":
		ok = !equal
	case "in":
		ok = len(actual) > 0
		for _, a := range actual {
			ok = ok && contains(expected, a)
		}
	case "notIn":
		ok = true
		for _, a := range actual {
			ok = ok && !contains(expected, a)
		}
	case "contains":
		ok = true
		for _, e := range expected {
			ok = ok && contains(actual, e)
		}
	case "notContains":
		ok = true
		for _, e := range expected {
			ok = ok && !contains(actual, e)
		}
	case "greaterThan", "lessThan":
		if len(actual) != 1 || len(expected) != 1 {
			return failf(op+" "+exp, act, "%s needs one value on each side", op)
		}
		o := order(actual[0], expected[0])
		ok = (op == "greaterThan" && o > 0) || (op == "lessThan" && o < 0)
	case "empty", "notEmpty":
		ok = (len(actual) == 0) == (op == "empty")
	default:
		return errorf("operator %s does not apply to a comparison", op)
	}
	if ok {
		return verdict{ok: true}
	}
	return failf(op+" "+exp+" ("+source+")", act, "%s is %s, expected %s %s (%s)", what, act, op, exp, source)
}

func resourceRoot(v any) string {
	if t := resource.Type(asMap(v)); t != "" {
		return t
	}
	return "$"
}

// missing returns the first element of want that has is no equal in got, or "". Objects
// match when every element of want matches; arrays when every item of want matches some
// item of got. id and meta of a resource are the server's and are not compared.
func missing(want, got any, p string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return p
		}
		top := !strings.Contains(p, ".") && p != "$" && w["resourceType"] != nil
		for k, wv := range w {
			if top && (k == "id" || k == "meta" || k == "text") {
				continue
			}
			gv, ok := g[k]
			if !ok {
				return p + "." + k
			}
			if m := missing(wv, gv, p+"."+k); m != "" {
				return m
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			return p
		}
		for i, wv := range w {
			found := false
			for _, gv := range g {
				if missing(wv, gv, p) == "" {
					found = true
					break
				}
			}
			if !found {
				return fmt.Sprintf("%s[%d]", p, i)
			}
		}
		return ""
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return p
		}
		return ""
	}
}

// checkLinks checks a Bundle's navigation links. With want true: a self link, and when the
// Bundle says there are more matches than it holds, a next link, every link an absolute
// URL the server answers with a Bundle. With want false: the Bundle is one page (no next or
// previous link).
func (st *run) checkLinks(ctx context.Context, want bool, sub *subject) verdict {
	b := asMap(sub.body)
	if resource.Type(b) != "Bundle" {
		return failf("a Bundle", orDefault(resource.Type(b), "(no resource)"), "navigationLinks needs a Bundle")
	}
	links := map[string]string{}
	for _, l := range asSlice(b["link"]) {
		m := asMap(l)
		rel, _ := m["relation"].(string)
		u, _ := m["url"].(string)
		links[rel] = u
	}
	if !want {
		for _, rel := range []string{"next", "previous", "prev"} {
			if links[rel] != "" {
				return failf("a single page", rel+" link "+links[rel], "the Bundle has a %s link", rel)
			}
		}
		return verdict{ok: true}
	}
	if links["self"] == "" {
		return failf("a self link", "(none)", "the Bundle has no self link")
	}
	matches := 0
	for _, e := range asSlice(b["entry"]) {
		mode, _ := asMap(asMap(e)["search"])["mode"].(string)
		if mode == "" || mode == "match" {
			matches++
		}
	}
	if total, ok := b["total"]; ok {
		n, _ := strconv.Atoi(fmt.Sprint(total))
		if n > matches && links["next"] == "" {
			return failf("a next link", "(none)", "the Bundle holds %d of %d matches but has no next link", matches, n)
		}
	}
	for _, rel := range []string{"self", "first", "previous", "prev", "next", "last"} {
		u := links[rel]
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || !pu.IsAbs() {
			return failf("an absolute URL", u, "the %s link is not an absolute URL", rel)
		}
		if rel == "self" {
			continue // the search itself: fetching it again proves nothing new
		}
		ex := st.send(ctx, http.MethodGet, u, nil, nil, "", "application/fhir+json")
		if ex.Err != "" || ex.Status != http.StatusOK || resource.Type(asMap(ex.responseJSON)) != "Bundle" {
			return failf("200 with a Bundle", fmt.Sprintf("%d %s", ex.Status, ex.Err), "following the %s link %s", rel, u)
		}
	}
	return verdict{ok: true}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func (st *run) checkProfile(a *Assert, sub *subject) verdict {
	if st.r.cfg.Validator == nil {
		return errorf("validateProfileId needs a validator, and the runner has none")
	}
	url := st.profiles[a.ValidateProfileID]
	m := asMap(sub.body)
	if m == nil {
		return failf("a resource conforming to "+url, "(no resource)", "there is no resource to validate")
	}
	res := st.r.cfg.Validator.Validate(m, validate.Options{Profiles: []string{url}, Raw: sub.raw})
	var errs []string
	for _, is := range res.Issues {
		if is.Severity == "error" || is.Severity == "fatal" {
			e := is.Diagnostics
			if len(is.Expression) > 0 {
				e = is.Expression[0] + ": " + e
			}
			errs = append(errs, e)
		}
	}
	valid := len(errs) == 0
	if a.Operator == "notEquals" {
		if valid {
			return failf("not conforming to "+url, "conforms", "the resource conforms to %s", url)
		}
		return verdict{ok: true}
	}
	if !valid {
		if len(errs) > 5 {
			errs = append(errs[:5], fmt.Sprintf("and %d more", len(errs)-5))
		}
		return failf("conforms to "+url, strings.Join(errs, "; "), "the resource does not conform to %s", url)
	}
	return verdict{ok: true}
}

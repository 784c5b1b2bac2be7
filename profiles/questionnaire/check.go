// Package questionnaire checks an R4 QuestionnaireResponse against the Questionnaire it
// answers: canonical and status, item nesting and order, answer types, answerOption and
// answerValueSet, required items, repeats, maxLength and enableWhen. Both resources are JSON
// decoded into map[string]any (json.Number or float64 numbers).
package questionnaire

import (
	"fmt"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// Coding is one member of a value set.
type Coding struct {
	System  string
	Code    string
	Display string
}

// Options configures Check.
type Options struct {
	// ValueSet resolves answerValueSet URLs to allowed system|code pairs (offline); nil = only
	// contained value sets (#id) are checked, others are skipped with an information issue.
	ValueSet func(url string) (codes []Coding, ok bool)
}

// Check returns the issues found in qr as an answer to q. Expressions are FHIRPath-style paths
// into qr, e.g. QuestionnaireResponse.item[2].item[0].answer[0].valueCoding.
func Check(qr, q map[string]any, opts Options) []outcome.Issue {
	c := &checker{opts: opts, q: q, vsCache: map[string]resolved{}}
	if rt, _ := qr["resourceType"].(string); rt != "QuestionnaireResponse" {
		c.add("error", "invalid", "QuestionnaireResponse", "resource is a %q, not a QuestionnaireResponse", rt)
		return c.issues
	}
	if rt, _ := q["resourceType"].(string); rt != "Questionnaire" {
		c.add("error", "invalid", "", "the resource to check against is a %q, not a Questionnaire", rt)
		return c.issues
	}
	c.idx = indexQuestionnaire(q)
	c.issues = append(c.issues, c.idx.issues...)
	c.checkCanonical(qr)
	c.checkStatus(qr)
	top := c.build(qr["item"], "QuestionnaireResponse", nil, c.idx.top)
	c.checkContainer(top, true)
	return c.issues
}

type checker struct {
	opts    Options
	q       map[string]any
	idx     *qIndex
	issues  []outcome.Issue
	enforce bool // required items are enforced (completed or amended response)
	flat    []*rNode
	vsCache map[string]resolved
}

// container is a list of response items: the top level, a group's item.item, or an answer's
// item; defs are the Questionnaire items allowed there.
type container struct {
	path  string
	owner *rNode
	defs  []*qItem
	nodes []*rNode
	end   int // document position after the container's last descendant
}

// rNode is one QuestionnaireResponse.item.
type rNode struct {
	raw     map[string]any
	path    string
	linkID  string
	def     *qItem // nil when the linkId is unknown
	placed  bool   // def was found among the Questionnaire items allowed at this position
	parent  *rNode
	doc     int // document (pre-order) position
	group   *container
	answers []*rAnswer
	state   int8 // memoised enablement, see enabled
}

type rAnswer struct {
	raw    map[string]any
	path   string
	kind   string // value[x] suffix
	val    any
	nkinds int // number of value[x] elements present
	items  *container
}

func (c *checker) add(sev, code, expr, format string, args ...any) {
	is := outcome.Issue{Severity: sev, Code: code, Diagnostics: fmt.Sprintf(format, args...)}
	if expr != "" {
		is.Expression = []string{expr}
	}
	c.issues = append(c.issues, is)
}

func (c *checker) checkCanonical(qr map[string]any) {
	ref, _ := qr["questionnaire"].(string)
	url, _ := c.q["url"].(string)
	version, _ := c.q["version"].(string)
	if ref == "" {
		c.add("warning", "required", "QuestionnaireResponse.questionnaire", "questionnaire is absent, so the response cannot be tied to Questionnaire %s", url)
		return
	}
	base, refVersion, hasVersion := strings.Cut(ref, "|")
	switch {
	case url == "":
		c.add("warning", "business-rule", "QuestionnaireResponse.questionnaire", "the Questionnaire has no url, so questionnaire %q cannot be confirmed", ref)
	case base != url:
		c.add("error", "business-rule", "QuestionnaireResponse.questionnaire", "questionnaire %q does not match the Questionnaire's url %q", ref, url)
	case hasVersion && version == "":
		c.add("warning", "business-rule", "QuestionnaireResponse.questionnaire", "questionnaire names version %q but the Questionnaire has no version", refVersion)
	case hasVersion && refVersion != version:
		c.add("error", "business-rule", "QuestionnaireResponse.questionnaire", "questionnaire names version %q but the Questionnaire is version %q", refVersion, version)
	}
}

func (c *checker) checkStatus(qr map[string]any) {
	status, _ := qr["status"].(string)
	switch status {
	case "completed", "amended":
		c.enforce = true
	case "in-progress", "stopped", "entered-in-error":
	case "":
		c.add("error", "required", "QuestionnaireResponse.status", "status is required (in-progress | completed | amended | entered-in-error | stopped)")
	default:
		c.add("error", "value", "QuestionnaireResponse.status", "status %q is not one of in-progress, completed, amended, entered-in-error, stopped", status)
	}
}

// build decodes a list of response items, resolving each linkId among defs (or, failing that,
// anywhere in the Questionnaire) and recording document order for enableWhen resolution.
func (c *checker) build(v any, path string, owner *rNode, defs []*qItem) *container {
	list, _ := v.([]any)
	ct := &container{path: path, owner: owner, defs: defs, nodes: make([]*rNode, 0, len(list))}
	for i, el := range list {
		n := &rNode{path: fmt.Sprintf("%s.item[%d]", path, i), parent: owner, doc: -1}
		ct.nodes = append(ct.nodes, n)
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		n.raw = m
		n.linkID, _ = m["linkId"].(string)
		n.def, n.placed = resolve(defs, n.linkID)
		if n.def == nil {
			n.def = c.idx.byLink[n.linkID]
		}
		n.doc = len(c.flat)
		c.flat = append(c.flat, n)
		var childDefs []*qItem
		if n.def != nil {
			childDefs = n.def.children
		}
		n.group = c.build(m["item"], n.path, n, childDefs)
		answers, _ := m["answer"].([]any)
		for k, ael := range answers {
			a := &rAnswer{path: fmt.Sprintf("%s.answer[%d]", n.path, k)}
			n.answers = append(n.answers, a)
			am, ok := ael.(map[string]any)
			if !ok {
				a.items = &container{path: a.path, owner: n, end: len(c.flat)}
				continue
			}
			a.raw = am
			for key, val := range am {
				if strings.HasPrefix(key, "value") && len(key) > 5 && isUpper(key[5]) {
					a.nkinds++
					if a.kind == "" || key[5:] < a.kind {
						a.kind, a.val = key[5:], val // smallest name wins, for stable output
					}
				}
			}
			a.items = c.build(am["item"], a.path, n, childDefs)
		}
	}
	ct.end = len(c.flat)
	return ct
}

func resolve(defs []*qItem, linkID string) (*qItem, bool) {
	for _, d := range defs {
		if d.linkID == linkID {
			return d, true
		}
	}
	return nil, false
}

// checkContainer checks the items of one list in order and then the required items missing
// from it. checkRequired is false where the list itself is misplaced.
func (c *checker) checkContainer(ct *container, checkRequired bool) {
	ownerEnabled := ct.owner == nil || c.enabled(ct.owner)
	lastOrder, lastLink := -1, ""
	seen := map[string]bool{}
	for _, n := range ct.nodes {
		if n.raw == nil {
			c.add("error", "structure", n.path, "item must be a JSON object")
			continue
		}
		if n.linkID == "" {
			c.add("error", "required", n.path, "item has no linkId")
			continue
		}
		if n.def == nil {
			c.add("error", "structure", n.path, "linkId %q is not defined in the Questionnaire", n.linkID)
			continue
		}
		if !n.placed {
			c.add("error", "structure", n.path, "item %q is not allowed here: the Questionnaire defines it %s", n.linkID, n.def.location())
		} else {
			switch {
			case n.def.order < lastOrder:
				c.add("error", "structure", n.path, "item %q is out of order: the Questionnaire puts it before %q", n.linkID, lastLink)
			case seen[n.linkID] && n.def.typ != "group":
				c.add("error", "structure", n.path, "question %q appears more than once here; repeated answers belong in one item's answer list", n.linkID)
			case seen[n.linkID] && !n.def.repeats:
				c.add("error", "structure", n.path, "group %q does not repeat but appears more than once", n.linkID)
			}
			if n.def.order >= lastOrder {
				lastOrder, lastLink = n.def.order, n.linkID
			}
			seen[n.linkID] = true
		}
		if t, ok := n.raw["text"].(string); ok && n.def.text != "" && strings.TrimSpace(t) != strings.TrimSpace(n.def.text) {
			c.add("warning", "value", n.path+".text", "text of item %q differs from the Questionnaire: %q, expected %q", n.linkID, t, n.def.text)
		}
		if ownerEnabled && !c.enabled(n) && hasAnswers(n) {
			c.add("error", "business-rule", n.path, "item %s is disabled by its enableWhen conditions but has answers", n.def.label())
		}
		c.checkNode(n, checkRequired && n.placed)
	}
	if checkRequired && c.enforce && ownerEnabled {
		c.checkRequired(ct)
	}
}

func (c *checker) checkNode(n *rNode, checkRequired bool) {
	d := n.def
	hasItems := len(n.group.nodes) > 0
	if len(n.answers) > 0 && hasItems {
		c.add("error", "structure", n.path, "item %q has both answer and item (qrs-1); child items of a question nest under answer.item", n.linkID)
	}
	switch d.typ {
	case "group", "display":
		if len(n.answers) > 0 {
			c.add("error", "structure", n.path+".answer", "%s item %q cannot have answers", d.typ, n.linkID)
		}
		if d.typ == "display" && hasItems {
			c.add("error", "structure", n.path+".item", "display item %q cannot have child items", n.linkID)
		}
		c.checkContainer(n.group, checkRequired)
		for _, a := range n.answers {
			c.checkContainer(a.items, false)
		}
		return
	}
	if hasItems {
		if len(n.answers) == 0 {
			c.add("error", "structure", n.path+".item", "child items of question %q must nest under answer.item, not item.item", n.linkID)
		}
		c.checkContainer(n.group, false)
	}
	if !d.repeats && len(n.answers) > 1 {
		c.add("error", "structure", n.path+".answer[1]", "question %s does not repeat but has %d answers", d.label(), len(n.answers))
	}
	vsReported := false
	for _, a := range n.answers {
		vsReported = c.checkAnswer(n, a, vsReported)
		c.checkContainer(a.items, checkRequired && a.kind != "")
	}
}

// checkAnswer checks one answer's value; it returns whether a value set that could not be
// evaluated has been reported for this item, so the information issue appears once per item.
func (c *checker) checkAnswer(n *rNode, a *rAnswer, vsReported bool) bool {
	d := n.def
	if a.raw == nil {
		c.add("error", "structure", a.path, "answer must be a JSON object")
		return vsReported
	}
	switch {
	case a.nkinds == 0:
		if len(a.items.nodes) == 0 {
			c.add("error", "invalid", a.path, "answer to %q has no value", n.linkID)
		}
		return vsReported
	case a.nkinds > 1:
		c.add("error", "invalid", a.path, "answer to %q has %d value[x] elements; exactly one is allowed", n.linkID, a.nkinds)
		return vsReported
	}
	expr := a.path + ".value" + a.kind
	if !contains(d.kinds, a.kind) {
		c.add("error", "value", expr, "item %q is of type %s; its answers must be %s, not value%s", n.linkID, d.typ, joinKinds(d.kinds), a.kind)
		return vsReported
	}
	if why := malformed(a.kind, a.val); why != "" {
		c.add("error", "invalid", expr, "answer to %q: value%s %s", n.linkID, a.kind, why)
		return vsReported
	}
	if d.maxLength > 0 && (a.kind == "String" || a.kind == "Uri") {
		if l := textLength(a.val); l > d.maxLength {
			c.add("error", "value", expr, "answer to %q is %d characters long; maxLength is %d", n.linkID, l, d.maxLength)
		}
	}
	// Free text is always allowed in an open-choice item; other answers outside the permitted
	// list are errors for choice and warnings for open-choice.
	if d.typ == "open-choice" && a.kind == "String" {
		return vsReported
	}
	sev := "error"
	if d.typ == "open-choice" {
		sev = "warning"
	}
	if len(d.options) > 0 {
		for _, o := range d.options {
			if optionMatches(o, a.kind, a.val) {
				return vsReported
			}
		}
		c.add(sev, "value", expr, "answer %s to %q is not one of its answerOptions", describe(a.kind, a.val), n.linkID)
		return vsReported
	}
	if d.valueSet == "" || a.kind != "Coding" {
		return vsReported
	}
	r := c.valueSet(d.valueSet)
	if r.set == nil {
		if !vsReported {
			s := "information"
			if r.missing {
				s = "warning"
			}
			c.add(s, "value", expr, "answer to %q not checked against its answerValueSet: %s", n.linkID, r.reason)
		}
		return true
	}
	cd, _ := a.val.(map[string]any)
	if !r.set.has(str(cd, "system"), str(cd, "code")) {
		c.add(sev, "value", expr, "answer %s to %q is not in value set %s", describe(a.kind, a.val), n.linkID, d.valueSet)
	}
	return vsReported
}

func joinKinds(kinds []string) string {
	if len(kinds) == 0 {
		return "nothing (unknown item type)"
	}
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = "value" + k
	}
	return strings.Join(out, " or ")
}

// checkRequired reports required, enabled items missing from a list or present without answers.
func (c *checker) checkRequired(ct *container) {
	for _, d := range ct.defs {
		if !d.required || d.typ == "display" {
			continue
		}
		present := false
		for _, n := range ct.nodes {
			if n.def != d || !n.placed {
				continue
			}
			present = true
			if !c.enabled(n) || hasAnswers(n) {
				continue
			}
			if d.typ == "group" {
				c.add("error", "required", n.path, "required group %s has no answered items", d.label())
			} else {
				c.add("error", "required", n.path, "required question %s has no answer", d.label())
			}
		}
		if !present && c.enabledAt(d, ct.owner, insertionPoint(ct, d)) {
			c.add("error", "required", ct.path, "required item %s is missing", d.label())
		}
	}
}

// insertionPoint is the document position an absent item would occupy: before the first
// present sibling that the Questionnaire orders after it.
func insertionPoint(ct *container, d *qItem) int {
	for _, n := range ct.nodes {
		if n.placed && n.doc >= 0 && n.def.order > d.order {
			return n.doc
		}
	}
	return ct.end
}

// hasAnswers reports whether n or any item nested in it carries an answer value.
func hasAnswers(n *rNode) bool {
	for _, a := range n.answers {
		if a.nkinds > 0 {
			return true
		}
		for _, ch := range a.items.nodes {
			if ch.raw != nil && hasAnswers(ch) {
				return true
			}
		}
	}
	for _, ch := range n.group.nodes {
		if ch.raw != nil && hasAnswers(ch) {
			return true
		}
	}
	return false
}

package questionnaire

import (
	"fmt"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// qItem is one Questionnaire.item, decoded once so the response walk does not re-read maps.
type qItem struct {
	linkID    string
	typ       string
	text      string
	required  bool
	repeats   bool
	maxLength int // 0 = no limit
	when      []enableWhen
	whenAny   bool // enableBehavior = any
	options   []map[string]any
	valueSet  string
	kinds     []string // answer value[x] suffixes accepted
	children  []*qItem
	parent    *qItem
	order     int // position among its siblings
}

// enableWhen is one Questionnaire.item.enableWhen; kind is the answer[x] suffix ("Coding").
type enableWhen struct {
	question string
	op       string
	kind     string
	val      any
}

// qIndex holds the Questionnaire's item tree and every item by linkId.
type qIndex struct {
	top    []*qItem
	byLink map[string]*qItem
	issues []outcome.Issue
}

func indexQuestionnaire(q map[string]any) *qIndex {
	idx := &qIndex{byLink: map[string]*qItem{}}
	idx.top = idx.items(q["item"], nil)
	idx.lint(idx.top)
	return idx
}

func (idx *qIndex) items(v any, parent *qItem) []*qItem {
	list, _ := v.([]any)
	out := make([]*qItem, 0, len(list))
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			continue
		}
		d := &qItem{parent: parent, order: len(out)}
		d.linkID, _ = m["linkId"].(string)
		d.typ, _ = m["type"].(string)
		d.text, _ = m["text"].(string)
		d.required, _ = m["required"].(bool)
		d.repeats, _ = m["repeats"].(bool)
		if n, ok := intOf(m["maxLength"]); ok && n > 0 {
			d.maxLength = int(n)
		}
		d.valueSet, _ = m["answerValueSet"].(string)
		if b, _ := m["enableBehavior"].(string); b == "any" {
			d.whenAny = true
		}
		ews, _ := m["enableWhen"].([]any)
		for _, e := range ews {
			em, ok := e.(map[string]any)
			if !ok {
				continue
			}
			ew := enableWhen{}
			ew.question, _ = em["question"].(string)
			ew.op, _ = em["operator"].(string)
			ew.kind, ew.val = choiceValue(em, "answer")
			d.when = append(d.when, ew)
		}
		opts, _ := m["answerOption"].([]any)
		for _, o := range opts {
			if om, ok := o.(map[string]any); ok {
				d.options = append(d.options, om)
			}
		}
		if d.linkID != "" {
			if _, dup := idx.byLink[d.linkID]; !dup {
				idx.byLink[d.linkID] = d
			}
		}
		d.kinds = allowedKinds(d)
		d.children = idx.items(m["item"], d)
		out = append(out, d)
	}
	return out
}

// lint reports Questionnaire defects that make parts of the check meaningless. They carry no
// expression because they are not about the response.
func (idx *qIndex) lint(items []*qItem) {
	for _, d := range items {
		for _, ew := range d.when {
			if _, ok := idx.byLink[ew.question]; !ok {
				idx.issues = append(idx.issues, outcome.Issue{Severity: "warning", Code: "invalid",
					Diagnostics: fmt.Sprintf("Questionnaire item %q: enableWhen refers to linkId %q, which the Questionnaire does not define; the condition is treated as unanswered", d.linkID, ew.question)})
			}
			if !validOperator(ew.op) {
				idx.issues = append(idx.issues, outcome.Issue{Severity: "warning", Code: "invalid",
					Diagnostics: fmt.Sprintf("Questionnaire item %q: enableWhen operator %q is not one of exists, =, !=, >, <, >=, <=; the condition is treated as false", d.linkID, ew.op)})
			}
		}
		idx.lint(d.children)
	}
}

// location describes where the Questionnaire puts d, for misplacement messages.
func (d *qItem) location() string {
	if d.parent == nil {
		return "at the top level"
	}
	if d.parent.typ == "group" {
		return fmt.Sprintf("under group %q (item.item)", d.parent.linkID)
	}
	return fmt.Sprintf("under the answers of question %q (answer.item)", d.parent.linkID)
}

// label names an item by linkId and, when it has one, its text.
func (d *qItem) label() string {
	if d.text == "" {
		return fmt.Sprintf("%q", d.linkID)
	}
	t := d.text
	if len(t) > 60 {
		t = t[:57] + "..."
	}
	return fmt.Sprintf("%q (%s)", d.linkID, t)
}

// choiceValue returns the suffix and value of the first prefix[x] element in m, e.g.
// ("Coding", {...}) for valueCoding.
func choiceValue(m map[string]any, prefix string) (string, any) {
	for k, v := range m {
		if strings.HasPrefix(k, prefix) && len(k) > len(prefix) && isUpper(k[len(prefix)]) {
			return k[len(prefix):], v
		}
	}
	return "", nil
}

func isUpper(b byte) bool { return b >= 'A' && b <= 'Z' }

func validOperator(op string) bool {
	switch op {
	case "exists", "=", "!=", ">", "<", ">=", "<=":
		return true
	}
	return false
}

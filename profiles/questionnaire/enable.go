package questionnaire

// Enablement states memoised per response item; visiting breaks enableWhen cycles.
const (
	unevaluated int8 = iota
	visiting
	enabledState
	disabledState
)

// enabled reports whether a response item is enabled: its enclosing items are enabled and its
// own enableWhen conditions hold.
func (c *checker) enabled(n *rNode) bool {
	switch n.state {
	case visiting:
		return false // a cycle in the Questionnaire's conditions; treat as not enabled
	case enabledState:
		return true
	case disabledState:
		return false
	}
	n.state = visiting
	ok := n.parent == nil || c.enabled(n.parent)
	if ok && n.def != nil {
		ok = c.conditions(n.def, n.parent, n.doc-1, n.doc+1)
	}
	if ok {
		n.state = enabledState
	} else {
		n.state = disabledState
	}
	return ok
}

// enabledAt reports whether an item absent from the response would be enabled if it were
// inserted under owner at document position pos.
func (c *checker) enabledAt(d *qItem, owner *rNode, pos int) bool {
	if owner != nil && !c.enabled(owner) {
		return false
	}
	return c.conditions(d, owner, pos-1, pos)
}

// conditions evaluates d's enableWhen list for an item whose nearest enclosing response item is
// anc; prev and next are the document positions just before and after the item.
func (c *checker) conditions(d *qItem, anc *rNode, prev, next int) bool {
	if len(d.when) == 0 {
		return true
	}
	for _, ew := range d.when {
		hit := c.evaluate(ew, c.answersOf(c.find(ew.question, anc, prev, next)))
		if d.whenAny && hit {
			return true
		}
		if !d.whenAny && !hit {
			return false
		}
	}
	return !d.whenAny
}

// find locates the occurrence of the question linkId that governs a condition: the nearest
// ancestor, then the nearest preceding item, then the nearest following one (R4
// Questionnaire.item.enableWhen.question).
func (c *checker) find(linkID string, anc *rNode, prev, next int) *rNode {
	for a := anc; a != nil; a = a.parent {
		if a.linkID == linkID {
			return a
		}
	}
	for i := prev; i >= 0; i-- {
		if c.flat[i].linkID == linkID {
			return c.flat[i]
		}
	}
	for i := next; i < len(c.flat); i++ {
		if c.flat[i].linkID == linkID {
			return c.flat[i]
		}
	}
	return nil
}

type value struct {
	kind string
	v    any
}

// answersOf returns the answer values of n; a disabled or missing question counts as unanswered.
func (c *checker) answersOf(n *rNode) []value {
	if n == nil || !c.enabled(n) {
		return nil
	}
	var out []value
	for _, a := range n.answers {
		if a.kind != "" && a.val != nil {
			out = append(out, value{a.kind, a.val})
		}
	}
	return out
}

// evaluate applies one enableWhen to a question's answers with the R4 operator semantics: "="
// and the orderings need at least one matching answer, "!=" needs none to be equal.
func (c *checker) evaluate(ew enableWhen, answers []value) bool {
	switch ew.op {
	case "exists":
		want, ok := ew.val.(bool)
		return ok && want == (len(answers) > 0)
	case "!=":
		for _, a := range answers {
			if r, ok, _ := compare(a.kind, a.v, ew.kind, ew.val); ok && r == 0 {
				return false
			}
		}
		return true
	}
	for _, a := range answers {
		r, ok, ordered := compare(a.kind, a.v, ew.kind, ew.val)
		if !ok {
			continue
		}
		switch {
		case ew.op == "=" && r == 0,
			ordered && ew.op == ">" && r > 0,
			ordered && ew.op == "<" && r < 0,
			ordered && ew.op == ">=" && r >= 0,
			ordered && ew.op == "<=" && r <= 0:
			return true
		}
	}
	return false
}

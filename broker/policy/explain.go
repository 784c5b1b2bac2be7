package policy

import (
	"sort"
	"strings"
)

// AccessReport answers "what would this agency see of this patient, for this purpose, and
// why", from the same evaluation that enforces it.
type AccessReport struct {
	Patient    string `json:"patient"`
	Agency     string `json:"agency"`
	AgencyKind string `json:"agencyKind"`
	Purpose    string `json:"purpose"`
	// BreakGlass is set when anything would be shared only by break-glass.
	BreakGlass bool          `json:"breakGlass,omitempty"`
	Classes    []ClassReport `json:"classes"`
}

// Outcomes of a class of data.
const (
	OutcomeShared   = "shared"
	OutcomeWithheld = "withheld"
	OutcomePartial  = "partly shared"
)

// ClassReport is one class of data: a resource type with one set of security labels.
type ClassReport struct {
	Type   string   `json:"type"`
	Labels []string `json:"labels,omitempty"`
	// Outcome is shared, withheld or partly shared (when Consents or rules tell the
	// resources of the class apart).
	Outcome  string `json:"outcome"`
	Shared   int    `json:"shared"`
	Withheld int    `json:"withheld"`
	// Redacted counts resources shared as redacted copies.
	Redacted int      `json:"redacted,omitempty"`
	Reasons  []Reason `json:"reasons"`
	// Resources gives each resource's decision, by literal reference.
	Resources []ResourceOutcome `json:"resources"`
}

// ResourceOutcome is the decision on one resource.
type ResourceOutcome struct {
	Reference string `json:"reference"`
	Permit    bool   `json:"permit"`
}

// ClassOf names the class of data a resource belongs to: its type and its security label
// codes, sorted.
func ClassOf(res map[string]any) (typ string, labels []string) {
	c := classify(res)
	seen := map[string]bool{}
	for _, l := range c.labels {
		if !seen[l.Code] {
			seen[l.Code] = true
			labels = append(labels, l.Code)
		}
	}
	sort.Strings(labels)
	return c.typ, labels
}

// Explain decides every candidate resource of a patient and groups the decisions by class.
// Candidates about another patient are left out. Reasons are merged per class, duplicates
// removed, in first-seen order.
func (e *Engine) Explain(req Request, patientID string, candidates, consents []map[string]any) AccessReport {
	patient := "Patient/" + strings.TrimPrefix(patientID, "Patient/")
	rep := AccessReport{Patient: patient, Agency: req.Agency.ID, AgencyKind: req.Agency.Kind, Purpose: req.Purpose}
	byKey := map[string]*ClassReport{}
	var order []string
	for _, res := range candidates {
		if p := patientOf(res); p != "" && p != patient {
			continue
		}
		d := e.Decide(req, res, consents)
		typ, labels := ClassOf(res)
		key := typ + "|" + strings.Join(labels, ",")
		cr := byKey[key]
		if cr == nil {
			cr = &ClassReport{Type: typ, Labels: labels}
			byKey[key] = cr
			order = append(order, key)
		}
		if d.Permit {
			cr.Shared++
			if d.Redacted {
				cr.Redacted++
			}
			rep.BreakGlass = rep.BreakGlass || d.BreakGlass
		} else {
			cr.Withheld++
		}
		cr.Resources = append(cr.Resources, ResourceOutcome{Reference: resourceRef(res), Permit: d.Permit})
		for _, r := range d.Reasons {
			if !containsReason(cr.Reasons, r) {
				cr.Reasons = append(cr.Reasons, r)
			}
		}
	}
	sort.Strings(order)
	for _, k := range order {
		cr := byKey[k]
		switch {
		case cr.Withheld == 0:
			cr.Outcome = OutcomeShared
		case cr.Shared == 0:
			cr.Outcome = OutcomeWithheld
		default:
			cr.Outcome = OutcomePartial
		}
		rep.Classes = append(rep.Classes, *cr)
	}
	return rep
}

func containsReason(rs []Reason, r Reason) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

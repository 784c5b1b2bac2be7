package policy

import (
	"fmt"
	"slices"
	"strings"
)

type consentDecision int

const (
	consentNone consentDecision = iota
	consentPermit
	consentDeny
)

type consentOutcome struct {
	decision consentDecision
}

// Actions a disclosure performs, in consentaction terms: the broker discloses, the agency
// accesses and uses.
var disclosureActions = []string{"access", "use", "disclose"}

// Policy rules (Consent.policyRule, v3-ActCode / v3-ActReason) that give a base decision when
// the root provision has no type.
var (
	permitPolicies = []string{"OPTIN", "OPTINR", "IMPLIED", "IMPLIEDD", "HLEGAL", "LEGAL"}
	denyPolicies   = []string{"OPTOUT", "OPTOUTE"}
	legalBases     = []string{"HLEGAL", "LEGAL"}
)

// consent evaluates the patient's Consents (step 3): deny wins across Consents.
func (ev *evaluation) consent(consents []map[string]any) consentOutcome {
	var out consentOutcome
	var permits, denies []Reason
	resPatient := patientOf(ev.res)
	for _, c := range consents {
		if str(c, "resourceType") != "Consent" {
			continue
		}
		id := "Consent"
		if s := str(c, "id"); s != "" {
			id += "/" + s
		}
		if p := ref(str(obj(c["patient"]), "reference")); resPatient != "" && p != "" && p != resPatient {
			// Another patient's Consent: not mentioned, it says nothing about this one.
			continue
		}
		switch st := str(c, "status"); st {
		case "active":
		case "inactive":
			ev.add(KindConsent, id, "%s is inactive (withdrawn) and no longer applies", id)
			continue
		default:
			ev.add(KindConsent, id, "%s has status %q and does not apply", id, orNone(st))
			continue
		}
		if !hasCode(codings(c["scope"]), SystemConsentScope, "patient-privacy") {
			ev.add(KindConsent, id, "%s is not a patient-privacy Consent and does not govern disclosure", id)
			continue
		}
		if str(obj(c["patient"]), "reference") == "" {
			ev.add(KindConsent, id, "%s names no patient and does not apply", id)
			continue
		}
		d, where, legal := ev.evalConsent(c)
		what := fmt.Sprintf("%s to %s agencies for %s", ev.typ, ev.req.Agency.Kind, ev.req.Purpose)
		switch d {
		case consentDeny:
			denies = append(denies, Reason{KindConsent, id, fmt.Sprintf("%s (%s) denies disclosure of %s", id, where, what)})
		case consentPermit:
			text := fmt.Sprintf("%s (%s) permits disclosure of %s", id, where, what)
			if legal {
				text = fmt.Sprintf("%s records a legal basis (policyRule, %s) for disclosure of %s", id, where, what)
			}
			permits = append(permits, Reason{KindConsent, id, text})
		default:
			ev.add(KindConsent, id, "%s does not cover disclosure of %s", id, what)
		}
	}
	switch {
	case len(denies) > 0:
		out.decision = consentDeny
		ev.reasons = append(ev.reasons, denies...)
	case len(permits) > 0:
		out.decision = consentPermit
		ev.reasons = append(ev.reasons, permits...)
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// evalConsent applies one active patient-privacy Consent. where names the deciding element;
// legal is set when a permit rests on a legal basis (policyRule or provision purpose HLEGAL or
// LEGAL).
func (ev *evaluation) evalConsent(c map[string]any) (d consentDecision, where string, legal bool) {
	policy := codings(c["policyRule"])
	base := ""
	for _, p := range permitPolicies {
		if hasCode(policy, "", p) {
			base = "permit"
		}
	}
	for _, p := range denyPolicies {
		if hasCode(policy, "", p) {
			base = "deny"
		}
	}
	legalPolicy := false
	for _, p := range legalBases {
		legalPolicy = legalPolicy || hasCode(policy, "", p)
	}
	root := obj(c["provision"])
	if root == nil {
		switch base {
		case "permit":
			d = consentPermit
		case "deny":
			d = consentDeny
		}
		where = "Consent.policyRule"
	} else {
		d, where = ev.evalProvision(root, "Consent.provision", base, 0)
	}
	// A legal basis recorded as the policy (a court order, a statute) is named as such; a
	// permit for purpose HLEGAL or LEGAL is the patient's consent to a legal use.
	legal = d == consentPermit && legalPolicy
	return d, where, legal
}

// maxProvisionDepth bounds nesting so hostile Consents cannot exhaust the stack.
const maxProvisionDepth = 32

// evalProvision applies a provision and its nested exceptions: the most specific matching
// provision decides, and among matching siblings deny wins. inherited is the type used when
// the provision has none (the policy base at the root, deny for a malformed nested one).
func (ev *evaluation) evalProvision(p map[string]any, at, inherited string, depth int) (consentDecision, string) {
	typ := str(p, "type")
	if typ != "permit" && typ != "deny" {
		typ = inherited
	}
	switch ev.criteria(p) {
	case no:
		return consentNone, ""
	case unknown:
		// A criterion that cannot be evaluated is assumed to hold for a deny and not for a
		// permit, so missing data never widens disclosure.
		if typ != "deny" {
			return consentNone, ""
		}
	}
	if depth >= maxProvisionDepth {
		return consentDeny, at
	}
	var permitAt, denyAt string
	for i, n := range list(p["provision"]) {
		nm := obj(n)
		if nm == nil {
			continue
		}
		switch r, w := ev.evalProvision(nm, fmt.Sprintf("%s.provision[%d]", at, i), "deny", depth+1); {
		case r == consentDeny && denyAt == "":
			denyAt = w
		case r == consentPermit && permitAt == "":
			permitAt = w
		}
	}
	switch {
	case denyAt != "":
		return consentDeny, denyAt
	case permitAt != "":
		return consentPermit, permitAt
	case typ == "permit":
		return consentPermit, at
	case typ == "deny":
		return consentDeny, at
	}
	return consentNone, ""
}

type match int

const (
	yes match = iota
	no
	unknown
)

// all combines criteria: every one must hold.
func all(ms ...match) match {
	out := yes
	for _, m := range ms {
		if m == no {
			return no
		}
		if m == unknown {
			out = unknown
		}
	}
	return out
}

// anyOf combines alternatives: one must hold.
func anyOf(ms []match) match {
	out := no
	for _, m := range ms {
		if m == yes {
			return yes
		}
		if m == unknown {
			out = unknown
		}
	}
	return out
}

func boolMatch(b bool) match {
	if b {
		return yes
	}
	return no
}

// criteria matches a provision's conditions against the request and resource.
func (ev *evaluation) criteria(p map[string]any) match {
	return all(
		ev.periodMatch(p),
		ev.actorMatch(p),
		ev.actionMatch(p),
		ev.purposeMatch(p),
		ev.classMatch(p),
		ev.codeMatch(p),
		ev.labelMatch(p),
		ev.dataPeriodMatch(p),
		ev.dataMatch(p),
	)
}

func (ev *evaluation) periodMatch(p map[string]any) match {
	per, present := p["period"]
	if !present {
		return yes
	}
	pp, ok := parsePeriod(obj(per))
	if !ok {
		return unknown
	}
	return boolMatch(pp.contains(ev.now))
}

func (ev *evaluation) actorMatch(p map[string]any) match {
	actors := list(p["actor"])
	if len(actors) == 0 {
		return yes
	}
	ms := make([]match, 0, len(actors))
	for _, a := range actors {
		ms = append(ms, ev.actorIs(obj(a)))
	}
	return anyOf(ms)
}

// actorIs matches one provision.actor against the requesting agency: by a reference to its
// Organization (Organization/<agency id or ODS>, a conditional reference on the ODS
// identifier, or a logical identifier) or by a role naming its agency kind. Other forms (a
// Practitioner, CareTeam, ...) cannot be resolved here.
func (ev *evaluation) actorIs(a map[string]any) match {
	ag := ev.req.Agency
	kinds := roleKinds(a)
	if slices.Contains(kinds, ag.Kind) {
		return yes
	}
	r := obj(a["reference"])
	if r == nil {
		if len(kinds) > 0 {
			return no
		}
		return unknown
	}
	form, key := actorForm(r)
	switch form {
	case actorOrgID:
		return boolMatch(key == ag.ID || (ag.ODS != "" && strings.EqualFold(key, ag.ODS)))
	case actorODS:
		return boolMatch(ag.ODS != "" && strings.EqualFold(key, ag.ODS))
	}
	return unknown
}

// roleKinds returns the agency kinds an actor's role names.
func roleKinds(a map[string]any) []string {
	var out []string
	for _, c := range codings(a["role"]) {
		if c.System == SystemAgencyKind {
			out = append(out, c.Code)
		}
	}
	return out
}

type actorKind int

const (
	actorUnsupported actorKind = iota
	actorOrgID
	actorODS
)

// actorForm classifies a provision.actor.reference.
func actorForm(r map[string]any) (actorKind, string) {
	s := str(r, "reference")
	if strings.HasPrefix(s, "Organization?") {
		q := strings.TrimPrefix(s, "Organization?")
		for _, kv := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if k != "identifier" {
				continue
			}
			if sys, val, ok := strings.Cut(v, "|"); ok && sys == SystemODS && val != "" {
				return actorODS, val
			}
		}
		return actorUnsupported, ""
	}
	if s != "" {
		rr := ref(s)
		if t, id, ok := strings.Cut(rr, "/"); ok && t == "Organization" && id != "" {
			return actorOrgID, id
		}
		return actorUnsupported, ""
	}
	id := obj(r["identifier"])
	if str(id, "system") == SystemODS && str(id, "value") != "" {
		return actorODS, str(id, "value")
	}
	return actorUnsupported, ""
}

func (ev *evaluation) actionMatch(p map[string]any) match {
	acts := codings(p["action"])
	if _, present := p["action"]; !present {
		return yes
	}
	for _, a := range disclosureActions {
		if hasCode(acts, SystemConsentAction, a) {
			return yes
		}
	}
	return no
}

func (ev *evaluation) purposeMatch(p map[string]any) match {
	if _, present := p["purpose"]; !present {
		return yes
	}
	return boolMatch(hasCode(codings(p["purpose"]), SystemActReason, ev.req.Purpose))
}

// classMatch matches provision.class: resource types, or profile canonical URLs.
func (ev *evaluation) classMatch(p map[string]any) match {
	if _, present := p["class"]; !present {
		return yes
	}
	c := classify(ev.res)
	for _, cl := range codings(p["class"]) {
		if cl.System == SystemResourceTypes && cl.Code == c.typ {
			return yes
		}
		if cl.System != SystemResourceTypes && slices.ContainsFunc(c.profiles, func(pr string) bool {
			base, _, _ := strings.Cut(pr, "|")
			want, _, _ := strings.Cut(cl.Code, "|")
			return base == want
		}) {
			return yes
		}
	}
	return no
}

func (ev *evaluation) codeMatch(p map[string]any) match {
	if _, present := p["code"]; !present {
		return yes
	}
	c := classify(ev.res)
	for _, want := range codings(p["code"]) {
		for _, have := range c.codes {
			if have.Code == want.Code && (want.System == "" || have.System == want.System) {
				return yes
			}
		}
	}
	return no
}

func (ev *evaluation) labelMatch(p map[string]any) match {
	if _, present := p["securityLabel"]; !present {
		return yes
	}
	c := classify(ev.res)
	for _, want := range codings(p["securityLabel"]) {
		if hasCode(c.labels, want.System, want.Code) {
			return yes
		}
	}
	return no
}

func (ev *evaluation) dataPeriodMatch(p map[string]any) match {
	dp, present := p["dataPeriod"]
	if !present {
		return yes
	}
	pp, ok := parsePeriod(obj(dp))
	if !ok {
		return unknown
	}
	t, ok := relevantDate(ev.res)
	if !ok {
		return unknown
	}
	return boolMatch(pp.contains(t))
}

// authorElements hold who authored a resource, for data.meaning authoredby.
var authorElements = []string{"author", "recorder", "asserter", "requester", "performer", "informationSource", "custodian", "participant"}

// dataMatch matches provision.data. "related" is read like "dependents" (the instance or
// resources that refer to it): the engine cannot see what the named resource refers to.
func (ev *evaluation) dataMatch(p map[string]any) match {
	data := list(p["data"])
	if _, present := p["data"]; !present {
		return yes
	}
	self := resourceRef(ev.res)
	var refs []string
	ms := make([]match, 0, len(data))
	for _, d := range data {
		dm := obj(d)
		target := ref(str(obj(dm["reference"]), "reference"))
		if target == "" {
			ms = append(ms, unknown)
			continue
		}
		switch str(dm, "meaning") {
		case "instance":
			ms = append(ms, boolMatch(self != "" && target == self))
		case "related", "dependents":
			if refs == nil {
				refs = references(ev.res, []string{})
			}
			ms = append(ms, boolMatch((self != "" && target == self) || slices.Contains(refs, target)))
		case "authoredby":
			var authors []string
			for _, k := range authorElements {
				authors = references(ev.res[k], authors)
			}
			ms = append(ms, boolMatch(slices.Contains(authors, target)))
		default:
			ms = append(ms, unknown)
		}
	}
	return anyOf(ms)
}

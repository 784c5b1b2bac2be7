package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

var (
	consentStatuses = []string{"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
	consentScopes   = []string{"adr", "research", "patient-privacy", "treatment"}
	consentActions  = []string{"collect", "access", "use", "disclose", "correct"}
	dataMeanings    = []string{"instance", "related", "dependents", "authoredby"}
	// purposesOfUse are the v3-ActReason purpose-of-use codes accepted in provisions.
	purposesOfUse = []string{
		"PurposeOfUse", "HMARKT", "HOPERAT", "CAREMGT", "DONAT", "FRAUD", "GOV", "HACCRED",
		"HCOMPL", "HDECD", "HDIRECT", "HDM", "HLEGAL", "HOUTCOMS", "HPRGRP", "HQUALIMP",
		"HSYSADMIN", "LABELING", "METAMGT", "MEMADMIN", "MILCDM", "PATADMIN", "PATSFTY",
		"PERFMSR", "RECORDMGT", "SYSDEV", "HTEST", "TRAIN", "HPAYMT", "CLMATTCH", "COVAUTH",
		"COVERAGE", "ELIGDTRM", "ELIGVER", "ENROLLM", "MILDCRG", "REMITADV", "HRESCH",
		"BIORCH", "CLINTRCH", "CLINTRCHNPC", "CLINTRCHPC", "PRECLINTRCH", "DSRCH", "POARCH",
		"TRANSRCH", "PATRQT", "FAMRQT", "PWATRNY", "SUPNWK", "PUBHLTH", "DISASTER", "THREAT",
		"TREAT", "CLINTRL", "COC", "ETREAT", "BTG", "ERTREAT", "POPHLTH", "LEGAL",
	}
	resourceTypeName = regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
)

// CheckConsent reports what makes a Consent unusable or ambiguous for the engine: missing or
// unknown status and scope, a missing patient where the scope needs one (ppc-2..5), no policy
// (ppc-1), unknown action or purpose codes, periods that end before they start, provisions
// without a type, and actor forms the engine cannot resolve. Expressions are FHIRPath-like.
func CheckConsent(consent map[string]any) []outcome.Issue {
	var c consentChecker
	if rt := str(consent, "resourceType"); rt != "Consent" {
		c.err("structure", "Consent.resourceType", "expected a Consent, found %q", orNone(rt))
		return c.issues
	}
	switch st := str(consent, "status"); {
	case st == "":
		c.err("required", "Consent.status", "status is required (draft | proposed | active | rejected | inactive | entered-in-error)")
	case !slices.Contains(consentStatuses, st):
		c.err("code-invalid", "Consent.status", "unknown status %q (expected draft | proposed | active | rejected | inactive | entered-in-error)", st)
	}
	scopes := codings(consent["scope"])
	scope := ""
	if len(scopes) == 0 {
		c.err("required", "Consent.scope", "scope is required; use %s patient-privacy for information sharing", SystemConsentScope)
	}
	for i, s := range scopes {
		if s.System == SystemConsentScope || s.System == "" {
			if !slices.Contains(consentScopes, s.Code) {
				c.err("code-invalid", fmt.Sprintf("Consent.scope.coding[%d].code", i), "unknown consent scope %q (expected adr | research | patient-privacy | treatment)", s.Code)
				continue
			}
			scope = s.Code
		}
	}
	if scope != "" && str(obj(consent["patient"]), "reference") == "" {
		c.err("required", "Consent.patient", "patient (a reference to the Patient) is required when scope is %s", scope)
	}
	if len(list(consent["category"])) == 0 {
		c.err("required", "Consent.category", "category is required (for example v3-ActCode IDSCL or LOINC 59284-0)")
	}
	if consent["policy"] == nil && consent["policyRule"] == nil {
		c.err("invariant", "Consent", "a Consent needs policy or policyRule (ppc-1); use policyRule HLEGAL to record a legal basis")
	}
	if root, present := consent["provision"]; present {
		if m := obj(root); m != nil {
			c.provision(m, "Consent.provision", true, 0)
		} else {
			c.err("structure", "Consent.provision", "provision must be an object")
		}
	}
	return c.issues
}

type consentChecker struct{ issues []outcome.Issue }

func (c *consentChecker) add(sev, code, expr, format string, args ...any) {
	c.issues = append(c.issues, outcome.Issue{Severity: sev, Code: code, Diagnostics: fmt.Sprintf(format, args...), Expression: []string{expr}})
}

func (c *consentChecker) err(code, expr, format string, args ...any) {
	c.add("error", code, expr, format, args...)
}

func (c *consentChecker) warn(code, expr, format string, args ...any) {
	c.add("warning", code, expr, format, args...)
}

func (c *consentChecker) provision(p map[string]any, at string, root bool, depth int) {
	if depth >= maxProvisionDepth {
		c.err("too-costly", at, "provisions are nested more than %d deep", maxProvisionDepth)
		return
	}
	switch t := str(p, "type"); {
	case t == "" && !root:
		c.err("required", at+".type", "a nested provision needs a type (permit | deny); without one it is treated as deny")
	case t != "" && t != "permit" && t != "deny":
		c.err("code-invalid", at+".type", "unknown provision type %q (expected permit | deny)", t)
	}
	c.period(p, "period", at)
	c.period(p, "dataPeriod", at)
	for i, a := range list(p["action"]) {
		for j, cd := range codings(a) {
			e := fmt.Sprintf("%s.action[%d].coding[%d]", at, i, j)
			if cd.System != SystemConsentAction && cd.System != "" {
				c.warn("code-invalid", e+".system", "action code %s is not from %s and never matches", cd, SystemConsentAction)
				continue
			}
			if !slices.Contains(consentActions, cd.Code) {
				c.err("code-invalid", e+".code", "unknown consent action %q (expected collect | access | use | disclose | correct)", cd.Code)
			}
		}
	}
	for i, pu := range list(p["purpose"]) {
		cd, _ := codingOf(pu)
		e := fmt.Sprintf("%s.purpose[%d]", at, i)
		switch {
		case cd.Code == "":
			c.err("required", e+".code", "purpose needs a code from %s", SystemActReason)
		case cd.System != SystemActReason && cd.System != "":
			c.warn("code-invalid", e+".system", "purpose %s is not from %s and never matches", cd, SystemActReason)
		case !slices.Contains(purposesOfUse, cd.Code):
			c.err("code-invalid", e+".code", "unknown purpose of use %q (expected a v3-ActReason code such as TREAT, COC, HLEGAL)", cd.Code)
		}
	}
	for i, a := range list(p["actor"]) {
		c.actor(obj(a), fmt.Sprintf("%s.actor[%d]", at, i))
	}
	for i, cl := range list(p["class"]) {
		cd := coding{System: str(obj(cl), "system"), Code: str(obj(cl), "code")}
		e := fmt.Sprintf("%s.class[%d]", at, i)
		switch {
		case cd.Code == "":
			c.err("required", e+".code", "class needs a code: a resource type (system %s) or a profile URL", SystemResourceTypes)
		case cd.System == SystemResourceTypes && !resourceTypeName.MatchString(cd.Code):
			c.err("code-invalid", e+".code", "%q is not a resource type name", cd.Code)
		case cd.System != SystemResourceTypes && !strings.Contains(cd.Code, "://"):
			c.warn("code-invalid", e, "class %s is neither a resource type (system %s) nor a profile URL and never matches", cd, SystemResourceTypes)
		}
	}
	for i, d := range list(p["data"]) {
		dm := obj(d)
		e := fmt.Sprintf("%s.data[%d]", at, i)
		if m := str(dm, "meaning"); !slices.Contains(dataMeanings, m) {
			c.err("code-invalid", e+".meaning", "unknown data meaning %q (expected instance | related | dependents | authoredby)", m)
		}
		if str(obj(dm["reference"]), "reference") == "" {
			c.err("required", e+".reference", "data needs a literal reference to the resource it is about")
		}
	}
	for i, l := range list(p["securityLabel"]) {
		if cd, _ := codingOf(l); cd.Code == "" {
			c.err("required", fmt.Sprintf("%s.securityLabel[%d].code", at, i), "securityLabel needs a code (for example R, V, PSY)")
		}
	}
	for i, n := range list(p["provision"]) {
		e := fmt.Sprintf("%s.provision[%d]", at, i)
		if m := obj(n); m != nil {
			c.provision(m, e, false, depth+1)
		} else {
			c.err("structure", e, "provision must be an object")
		}
	}
}

func (c *consentChecker) period(p map[string]any, key, at string) {
	v, present := p[key]
	if !present {
		return
	}
	m := obj(v)
	e := at + "." + key
	if m == nil {
		c.err("structure", e, "%s must be a Period", key)
		return
	}
	var lo, hi string
	for _, end := range []string{"start", "end"} {
		s := str(m, end)
		if s == "" {
			continue
		}
		if _, _, ok := fhirTime(s); !ok {
			c.err("value", e+"."+end, "%q is not a FHIR dateTime", s)
			return
		}
		if end == "start" {
			lo = s
		} else {
			hi = s
		}
	}
	if lo != "" && hi != "" {
		l, _, _ := fhirTime(lo)
		_, h, _ := fhirTime(hi)
		if !h.After(l) {
			c.err("invariant", e, "%s ends (%s) before it starts (%s)", key, hi, lo)
		}
	}
}

// actor reports provision.actor forms the engine cannot match to an agency.
func (c *consentChecker) actor(a map[string]any, at string) {
	if a == nil {
		c.err("structure", at, "actor must be an object")
		return
	}
	if len(roleKinds(a)) > 0 {
		return
	}
	if len(codings(a["role"])) == 0 {
		c.warn("required", at+".role", "actor.role is required by FHIR R4 (for example v3-ParticipationType IRCP)")
	}
	r := obj(a["reference"])
	if r == nil {
		c.err("required", at+".reference", "actor needs a reference to the agency's Organization, or a role from %s", SystemAgencyKind)
		return
	}
	if form, _ := actorForm(r); form == actorUnsupported {
		c.err("not-supported", at+".reference", "unsupported provision.actor form %q: use Organization/<id>, an Organization identifier with system %s, or a role from %s", describeRef(r), SystemODS, SystemAgencyKind)
	}
}

func describeRef(r map[string]any) string {
	if s := str(r, "reference"); s != "" {
		return s
	}
	id := obj(r["identifier"])
	if id != nil {
		return str(id, "system") + "|" + str(id, "value")
	}
	return "(empty reference)"
}

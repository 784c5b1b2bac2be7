// Package policy decides whether a resource may be disclosed to an agency, and says why. One
// engine both enforces and explains: the sharing rules of the configuration, the patient's
// FHIR Consents, the configured consent defaults, security labels and break-glass. It does no
// I/O; callers pass the request, the resource, the patient's Consents and a clock.
//
// The order of evaluation (each step can deny; the reasons record every step taken):
//  1. the client may act for the agency and claim the purpose (configured scopes);
//  2. a sharing rule for the agency (kind or id) and purpose covers the resource, and no
//     matching rule's deny selector withholds it (deny wins across rules);
//  3. the patient's active patient-privacy Consents (deny wins across Consents; within one,
//     the most specific matching provision wins);
//  4. with no applicable Consent, the configured consent defaults (deny wins; none permitting
//     is a denial, except for operators); a rule with requiresConsent instead needs step 3 to
//     permit (a Consent or a recorded legal basis);
//  5. restricted (R or V) Patients are redacted before disclosure.
//
// Break-glass (purpose BTG with a stated reason) uses only rules marked breakGlass, overrides
// Consent denials and defaults, and is flagged so callers raise an alert.
package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/config"
)

// Code systems the engine reads and writes.
const (
	SystemActReason        = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	SystemActCode          = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	SystemConfidentiality  = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	SystemObservationValue = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	SystemConsentScope     = "http://terminology.hl7.org/CodeSystem/consentscope"
	SystemConsentAction    = "http://terminology.hl7.org/CodeSystem/consentaction"
	SystemResourceTypes    = "http://hl7.org/fhir/resource-types"
	SystemODS              = "https://fhir.nhs.uk/Id/ods-organization-code"
	// SystemAgencyKind codes a Consent provision.actor.role as an agency kind
	// (custody-healthcare, court, ...), so a patient can consent for every agency of a kind.
	SystemAgencyKind = "https://hjbroker.dev/fhir/CodeSystem/agency-kind"
)

// PurposeBreakGlass is the v3-ActReason purpose of an emergency override.
const PurposeBreakGlass = "BTG"

// Agency identifies the agency a request acts for.
type Agency struct {
	ID   string
	Kind string // a config.Kind* value
	ODS  string
}

// Request is who asks, and why.
type Request struct {
	Agency Agency
	// ClientID is the API client; empty for disclosures the broker makes itself (routing),
	// which skips the client checks.
	ClientID string
	// Purpose is a v3-ActReason code (TREAT, HLEGAL, BTG, ...).
	Purpose string
	// BreakGlass is the stated reason for a BTG request.
	BreakGlass string
}

// ReasonKind says which part of the policy a Reason comes from.
type ReasonKind string

// Reason kinds.
const (
	KindRule       ReasonKind = "rule"
	KindConsent    ReasonKind = "consent"
	KindDefault    ReasonKind = "default"
	KindLabel      ReasonKind = "label"
	KindBreakGlass ReasonKind = "breakglass"
	KindScope      ReasonKind = "scope"
)

// Reason is one step of a decision: a rule, Consent, default, label or check that applied.
type Reason struct {
	Kind ReasonKind `json:"kind"`
	// ID names what applied: a sharing rule or consent default id, "Consent/x" (with the
	// provision path when one decided), a label, or a client id.
	ID   string `json:"id,omitempty"`
	Text string `json:"text"`
}

// Decision is the outcome for one resource.
type Decision struct {
	Permit bool
	// BreakGlass is set when the disclosure rests on a break-glass rule: callers must raise
	// an alert (audit, metric, log).
	BreakGlass bool
	// Redacted is set when Resource is a redacted copy of the input.
	Redacted bool
	// Resource is what to disclose when Permit is set: the input itself, or a redacted copy
	// (Redacted). Nil when denied.
	Resource map[string]any
	// Reasons explain the decision in evaluation order; when denied, the last one is why.
	Reasons []Reason
}

// Engine evaluates the policy of one configuration. It is immutable and safe for concurrent
// use.
type Engine struct {
	cfg *config.Config
	now func() time.Time
}

// New returns an engine for cfg; now is the clock used for Consent periods (time.Now when
// nil).
func New(cfg *config.Config, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	return &Engine{cfg: cfg, now: now}
}

// evaluation carries what the steps share.
type evaluation struct {
	e       *Engine
	req     Request
	res     map[string]any
	typ     string
	now     time.Time
	reasons []Reason
}

func (ev *evaluation) add(k ReasonKind, id, format string, args ...any) {
	ev.reasons = append(ev.reasons, Reason{Kind: k, ID: id, Text: fmt.Sprintf(format, args...)})
}

func (ev *evaluation) deny() Decision { return Decision{Reasons: ev.reasons} }

// Decide says whether resource may be disclosed for req, given the patient's Consents (any
// status; those for other patients are ignored). It never modifies its inputs.
func (e *Engine) Decide(req Request, resource map[string]any, consents []map[string]any) Decision {
	ev := &evaluation{e: e, req: req, res: resource, typ: str(resource, "resourceType"), now: e.now()}
	if ev.typ == "" {
		ev.add(KindRule, "", "the resource has no resourceType")
		return ev.deny()
	}
	if !ev.checkClient() {
		return ev.deny()
	}
	breakGlass := req.Purpose == PurposeBreakGlass
	if breakGlass && strings.TrimSpace(req.BreakGlass) == "" {
		ev.add(KindBreakGlass, "", "break-glass (purpose BTG) needs a stated reason")
		return ev.deny()
	}
	rules, ok := ev.rules(breakGlass)
	if !ok {
		return ev.deny()
	}
	cons := ev.consent(consents)
	switch {
	case breakGlass:
		if cons.decision == consentDeny {
			ev.add(KindBreakGlass, "", "break-glass overrides the patient's Consent denial")
		}
		ev.add(KindBreakGlass, req.ClientID, "break-glass by %s for the %s agency %s: %s", orUnknown(req.ClientID), req.Agency.Kind, req.Agency.ID, req.BreakGlass)
	case cons.decision == consentDeny:
		return ev.deny()
	case cons.decision == consentPermit:
		// The Consent (or legal basis) satisfies every rule, including requiresConsent.
	default:
		if !ev.defaults(rules) {
			return ev.deny()
		}
	}
	d := Decision{Permit: true, BreakGlass: breakGlass, Resource: resource}
	if out, redacted := redactAll(resource); redacted {
		d.Resource, d.Redacted = out, true
		ev.add(KindLabel, "R", "restricted patient: address, telecom and registered GP removed before disclosure")
	}
	d.Reasons = ev.reasons
	return d
}

func orUnknown(s string) string {
	if s == "" {
		return "the broker"
	}
	return s
}

// checkClient checks the configured client: it belongs to the agency, may claim the purpose
// and has a read or search scope on the type. Token scopes are the auth layer's business.
func (ev *evaluation) checkClient() bool {
	cfg, req := ev.e.cfg, ev.req
	if a, ok := cfg.Agency(req.Agency.ID); ok && a.Kind != req.Agency.Kind {
		ev.add(KindScope, req.Agency.ID, "agency %s is configured as %s, not %s", a.ID, a.Kind, req.Agency.Kind)
		return false
	}
	if req.ClientID == "" {
		return true
	}
	cl, ag, ok := cfg.Client(req.ClientID)
	if !ok {
		ev.add(KindScope, req.ClientID, "client %s is not configured", req.ClientID)
		return false
	}
	if ag.ID != req.Agency.ID {
		ev.add(KindScope, req.ClientID, "client %s acts for agency %s, not %s", cl.ID, ag.ID, req.Agency.ID)
		return false
	}
	if len(cl.Purposes) > 0 && !slices.Contains(cl.Purposes, req.Purpose) {
		ev.add(KindScope, req.ClientID, "client %s may not claim purpose %s (allowed: %s)", cl.ID, req.Purpose, strings.Join(cl.Purposes, ", "))
		return false
	}
	if !canRead(cl.Scopes, ev.typ) {
		ev.add(KindScope, req.ClientID, "client %s has no scope to read or search %s", cl.ID, ev.typ)
		return false
	}
	return true
}

// canRead reports whether SMART scopes allow reading or searching typ.
func canRead(scopes []string, typ string) bool {
	for _, s := range scopes {
		_, rest, ok := strings.Cut(s, "/")
		if !ok {
			continue
		}
		t, perms, ok := strings.Cut(rest, ".")
		if !ok || (t != "*" && t != typ) {
			continue
		}
		if perms == "*" || perms == "read" || strings.ContainsAny(perms, "rs") {
			return true
		}
	}
	return false
}

// rules returns the sharing rules that admit the resource (step 2), recording why when none
// does.
func (ev *evaluation) rules(breakGlass bool) ([]*config.SharingRule, bool) {
	req := ev.req
	var matching []*config.SharingRule
	for i := range ev.e.cfg.Sharing {
		r := &ev.e.cfg.Sharing[i]
		if r.BreakGlass != breakGlass || !slices.Contains(r.Purposes, req.Purpose) {
			continue
		}
		if slices.Contains(r.AgencyKinds, req.Agency.Kind) || (req.Agency.ID != "" && slices.Contains(r.Agencies, req.Agency.ID)) {
			matching = append(matching, r)
		}
	}
	if len(matching) == 0 {
		if breakGlass {
			ev.add(KindBreakGlass, "", "no break-glass rule lets a %s agency see %s", req.Agency.Kind, ev.typ)
		} else {
			ev.add(KindRule, "", "no sharing rule lets a %s agency see %s for %s", req.Agency.Kind, ev.typ, req.Purpose)
		}
		return nil, false
	}
	c := classify(ev.res)
	// Deny wins across rules: a rule withholding the resource is never bypassed by another.
	for _, r := range matching {
		if !selects(r.Deny, c) {
			continue
		}
		if lab := matchedLabels(r.Deny, c); len(lab) > 0 {
			ev.add(KindLabel, r.ID, "sharing rule %s withholds data labelled %s from %s agencies", r.ID, strings.Join(lab, ", "), req.Agency.Kind)
		} else {
			ev.add(KindRule, r.ID, "sharing rule %s withholds this %s from %s agencies", r.ID, ev.typ, req.Agency.Kind)
		}
		return nil, false
	}
	var admitted []*config.SharingRule
	for _, r := range matching {
		if selects(r.Allow, c) {
			admitted = append(admitted, r)
		}
	}
	if len(admitted) == 0 {
		ids := make([]string, len(matching))
		for i, r := range matching {
			ids[i] = r.ID
		}
		ev.add(KindRule, strings.Join(ids, ","), "no sharing rule lets a %s agency see %s for %s (%s %s not cover it)",
			req.Agency.Kind, describeClass(ev.typ, c), req.Purpose, strings.Join(ids, ", "), plural(len(ids), "does", "do"))
		return nil, false
	}
	for _, r := range admitted {
		ev.add(KindRule, r.ID, "sharing rule %s lets %s agencies see %s for %s", r.ID, req.Agency.Kind, ev.typ, req.Purpose)
	}
	return admitted, true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func describeClass(typ string, c classes) string {
	if len(c.labels) == 0 {
		return typ
	}
	codes := make([]string, len(c.labels))
	for i, l := range c.labels {
		codes[i] = l.Code
	}
	return fmt.Sprintf("%s labelled %s", typ, strings.Join(codes, ", "))
}

// defaults applies the consent defaults when no Consent applies (step 4).
func (ev *evaluation) defaults(rules []*config.SharingRule) bool {
	req := ev.req
	needConsent := true
	for _, r := range rules {
		if !r.RequiresConsent {
			needConsent = false
		}
	}
	if needConsent {
		ev.add(KindConsent, rules[0].ID, "sharing rule %s needs the patient's explicit Consent or a recorded legal basis, and none applies", rules[0].ID)
		return false
	}
	from, fromKnown := ev.e.recorderKind(ev.res)
	var permit, deny *config.ConsentDefault
	for i := range ev.e.cfg.ConsentDefaults {
		d := &ev.e.cfg.ConsentDefaults[i]
		if !slices.Contains(d.Purposes, req.Purpose) {
			continue
		}
		if len(d.ToKinds) > 0 && !slices.Contains(d.ToKinds, req.Agency.Kind) {
			continue
		}
		// An unknown recorder does not stop a default applying: the sharing rules already
		// limit who sees what, and the defaults only add the consent position.
		if len(d.FromKinds) > 0 && fromKnown && !slices.Contains(d.FromKinds, from) {
			continue
		}
		switch d.Decision {
		case "permit":
			if permit == nil {
				permit = d
			}
		default:
			if deny == nil {
				deny = d
			}
		}
	}
	switch {
	case deny != nil:
		ev.add(KindDefault, deny.ID, "no Consent applies and consent default %s denies %s for %s agencies", deny.ID, req.Purpose, req.Agency.Kind)
		return false
	case permit != nil:
		ev.add(KindDefault, permit.ID, "no Consent applies; consent default %s permits %s for %s agencies", permit.ID, req.Purpose, req.Agency.Kind)
		return true
	}
	if req.Agency.Kind == config.KindBroker {
		// Operators administer the service rather than receive care data; their access
		// rests on the sharing rule and is audited like anyone else's.
		ev.add(KindDefault, "", "no Consent applies; operators' access rests on the sharing rule")
		return true
	}
	ev.add(KindDefault, "", "no Consent applies and no consent default permits %s for %s agencies%s", req.Purpose, req.Agency.Kind, recordedBy(from, fromKnown))
	return false
}

func recordedBy(kind string, known bool) string {
	if !known {
		return ""
	}
	return " of data recorded by a " + kind + " agency"
}

// recorderKind finds the kind of the agency that recorded the resource from meta.source
// (an agency id or ODS code, alone or as the last segment or fragment of a URI).
func (e *Engine) recorderKind(res map[string]any) (string, bool) {
	src := str(obj(res["meta"]), "source")
	if src == "" {
		return "", false
	}
	if i := strings.LastIndexAny(src, "/#"); i >= 0 {
		src = src[i+1:]
	}
	for _, a := range e.cfg.Agencies {
		if a.ID == src || strings.EqualFold(a.ODS, src) {
			return a.Kind, true
		}
	}
	return "", false
}

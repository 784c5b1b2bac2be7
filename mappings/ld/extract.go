package ld

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/profiles/questionnaire"
)

// Party is an organisation taking part in a referral.
type Party struct {
	Ref  string // "Organization/org-xld001"
	ODS  string
	Name string
}

// reference renders the party as a Reference carrying its ODS identifier, so that routes
// and consent provisions can match it without resolving the reference.
func (p Party) reference() map[string]any {
	r := map[string]any{}
	if p.Ref != "" {
		r["reference"] = p.Ref
	}
	if p.ODS != "" {
		r["identifier"] = map[string]any{"system": SystemODS, "value": p.ODS}
	}
	if p.Name != "" {
		r["display"] = p.Name
	}
	return r
}

// Service is a directory entry a referral may name.
type Service struct {
	Ref      string   // "HealthcareService/svc-probation"
	Name     string   // the HealthcareService name
	Pathways []string // codes of SystemPathway the service takes referrals for
	Provider Party    // the Organization providing it
}

// Offers reports whether the service takes referrals for pathway.
func (s Service) Offers(pathway string) bool {
	for _, p := range s.Pathways {
		if p == pathway {
			return true
		}
	}
	return false
}

// ServiceFrom reads a directory entry from a HealthcareService and the Organization that
// provides it (org may be nil; providedBy's identifier and display are used then).
func ServiceFrom(hs, org map[string]any) Service {
	s := Service{Ref: "HealthcareService/" + str(hs, "id"), Name: str(hs, "name")}
	for _, t := range list(hs["type"]) {
		for _, c := range list(obj(t)["coding"]) {
			if str(obj(c), "system") == SystemPathway {
				s.Pathways = append(s.Pathways, str(obj(c), "code"))
			}
		}
	}
	pb := obj(hs["providedBy"])
	s.Provider = Party{Ref: str(pb, "reference"), ODS: str(obj(pb["identifier"]), "value"), Name: str(pb, "display")}
	if org != nil {
		s.Provider.Ref = "Organization/" + str(org, "id")
		s.Provider.Name = str(org, "name")
		for _, id := range list(org["identifier"]) {
			if str(obj(id), "system") == SystemODS {
				s.Provider.ODS = str(obj(id), "value")
			}
		}
	}
	return s
}

// Options are what an extraction needs beyond the response and its Questionnaire.
type Options struct {
	// Requester is the L&D organisation making the referrals and recording the findings.
	Requester Party
	// Services are the directory entries referrals may name, by reference
	// ("HealthcareService/svc-probation").
	Services map[string]Service
	// NewID returns a fresh UUID for each extracted resource's urn:uuid fullUrl.
	NewID func() string
	// Now stamps Provenance.recorded.
	Now time.Time
}

// Entry is one resource of an extraction, with the urn:uuid fullUrl other entries use to
// reference it.
type Entry struct {
	FullURL  string         `json:"fullUrl"`
	Resource map[string]any `json:"resource"`
}

// Result is an extraction: the QuestionnaireResponse first, then what was derived from it,
// then one Provenance naming every derived resource.
type Result struct {
	Entries []Entry
}

// ReferencedServices lists the service references a response's referral answers name, so
// the caller can look them up before extracting.
func ReferencedServices(qr map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, ref := range collectReferrals(qr) {
		if r := ref.service.refValue(); r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// Extract derives UK Core resources from a completed L&D QuestionnaireResponse answering q.
// It fails (422, with the QuestionnaireResponse path) when the response does not fit the
// Questionnaire, is not completed, names no Patient, or refers to a service the directory
// does not hold or that does not take the chosen pathway. The rules are in rules.go and
// docs/ld-and-referrals.md.
func Extract(qr, q map[string]any, opts Options) (*Result, error) {
	if err := checkResponse(qr, q); err != nil {
		return nil, err
	}
	x := &extraction{qr: qr, opts: opts, subject: str(obj(qr["subject"]), "reference"), authored: str(qr, "authored")}
	if x.authored == "" {
		x.authored = opts.Now.UTC().Format(time.RFC3339)
	}
	x.qrURL = x.fullURL()
	x.answers = collectAnswers(qr)
	x.flags()
	x.observations()
	x.conditions()
	if err := x.referrals(); err != nil {
		return nil, err
	}
	x.consents()
	entries := []Entry{{FullURL: x.qrURL, Resource: qr}}
	entries = append(entries, x.out...)
	if len(x.out) > 0 {
		entries = append(entries, x.provenance())
	}
	return &Result{Entries: entries}, nil
}

func checkResponse(qr, q map[string]any) error {
	const status = http.StatusUnprocessableEntity
	if u := str(q, "url"); u != IdentificationURL && u != ScreeningURL && u != AssessmentURL {
		return outcome.At(status, "not-supported", "QuestionnaireResponse.questionnaire",
			"no extraction rules exist for Questionnaire %s; the L&D Questionnaires are %s, %s and %s", u, IdentificationURL, ScreeningURL, AssessmentURL)
	}
	if c, _, _ := strings.Cut(str(qr, "questionnaire"), "|"); c != str(q, "url") {
		return outcome.At(status, "invalid", "QuestionnaireResponse.questionnaire", "the response answers %q, not %s", str(qr, "questionnaire"), str(q, "url"))
	}
	if s := str(qr, "status"); s != "completed" && s != "amended" {
		return outcome.At(status, "business-rule", "QuestionnaireResponse.status", "only a completed (or amended) response is extracted; this one is %q", s)
	}
	if ref := str(obj(qr["subject"]), "reference"); !strings.HasPrefix(ref, "Patient/") && !strings.HasPrefix(ref, "urn:uuid:") {
		return outcome.At(status, "required", "QuestionnaireResponse.subject", "the response must name the Patient it is about (subject: Patient/<id>)")
	}
	var errs []outcome.Issue
	for _, is := range questionnaire.Check(qr, q, questionnaire.Options{}) {
		if is.Severity == "error" || is.Severity == "fatal" {
			errs = append(errs, is)
		}
	}
	if len(errs) > 0 {
		return &outcome.Error{Status: status, Issues: errs}
	}
	return nil
}

// answer is one QuestionnaireResponse.item.answer with its path.
type answer struct {
	value map[string]any
	path  string
}

func (a answer) coding() (system, code, display string) {
	c := obj(a.value["valueCoding"])
	return str(c, "system"), str(c, "code"), str(c, "display")
}

func (a answer) is(system, code string) bool {
	s, c, _ := a.coding()
	return s == system && c == code
}

func (a answer) boolean() bool {
	b, _ := a.value["valueBoolean"].(bool)
	return b
}

func (a answer) text() string {
	return str(a.value, "valueString")
}

// collectAnswers indexes the answers of every item outside repeating referral groups by
// linkId (the L&D Questionnaires use each linkId once).
func collectAnswers(qr map[string]any) map[string][]answer {
	out := map[string][]answer{}
	var walk func(items []any, path string)
	walk = func(items []any, path string) {
		for i, it := range items {
			m := obj(it)
			p := fmt.Sprintf("%s.item[%d]", path, i)
			if str(m, "linkId") == "referrals" {
				continue
			}
			for j, a := range list(m["answer"]) {
				out[str(m, "linkId")] = append(out[str(m, "linkId")], answer{value: obj(a), path: fmt.Sprintf("%s.answer[%d]", p, j)})
				walk(list(obj(a)["item"]), fmt.Sprintf("%s.answer[%d]", p, j))
			}
			walk(list(m["item"]), p)
		}
	}
	walk(list(qr["item"]), "QuestionnaireResponse")
	return out
}

// referralAnswers is one instance of the repeating referrals group.
type referralAnswers struct {
	path                               string
	pathway, service, reason, priority answer
}

func collectReferrals(qr map[string]any) []referralAnswers {
	var out []referralAnswers
	for i, it := range list(qr["item"]) {
		m := obj(it)
		if str(m, "linkId") != "referrals" {
			continue
		}
		r := referralAnswers{path: fmt.Sprintf("QuestionnaireResponse.item[%d]", i)}
		for j, c := range list(m["item"]) {
			cm := obj(c)
			as := list(cm["answer"])
			if len(as) == 0 {
				continue
			}
			a := answer{value: obj(as[0]), path: fmt.Sprintf("%s.item[%d].answer[0]", r.path, j)}
			switch str(cm, "linkId") {
			case "referral.pathway":
				r.pathway = a
			case "referral.service":
				r.service = a
			case "referral.reason":
				r.reason = a
			case "referral.priority":
				r.priority = a
			}
		}
		out = append(out, r)
	}
	return out
}

// ref of a service answer.
func (a answer) refValue() string {
	return str(obj(a.value["valueReference"]), "reference")
}

type extraction struct {
	qr       map[string]any
	opts     Options
	subject  string
	authored string
	qrURL    string
	answers  map[string][]answer
	out      []Entry
	// referred are the organisations referrals went to, in order, for the sharing Consent.
	referred []Party
}

func (x *extraction) fullURL() string {
	return "urn:uuid:" + x.opts.NewID()
}

func (x *extraction) add(res map[string]any) string {
	u := x.fullURL()
	x.out = append(x.out, Entry{FullURL: u, Resource: res})
	return u
}

// first returns the first answer to linkId.
func (x *extraction) first(linkID string) (answer, bool) {
	as := x.answers[linkID]
	if len(as) == 0 {
		return answer{}, false
	}
	return as[0], true
}

func (x *extraction) subjectRef() map[string]any {
	return map[string]any{"reference": x.subject}
}

func securityLabels(labels []string) map[string]any {
	if len(labels) == 0 {
		return nil
	}
	var sec []any
	for _, l := range labels {
		sec = append(sec, map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": l})
	}
	return map[string]any{"security": sec}
}

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(system, code, display, text string) map[string]any {
	cc := map[string]any{"coding": []any{coding(system, code, display)}}
	if text != "" {
		cc["text"] = text
	}
	return cc
}

func (x *extraction) flags() {
	for _, r := range flagRules {
		var hit *answer
		for _, l := range r.linkIDs {
			for _, a := range x.answers[l] {
				if r.when(a) {
					a := a
					hit = &a
					break
				}
			}
			if hit != nil {
				break
			}
		}
		if hit == nil {
			continue
		}
		text := r.text
		if r.detail != "" {
			if d, ok := x.first(r.detail); ok && d.text() != "" {
				text += ": " + d.text()
			}
		}
		f := map[string]any{
			"resourceType": "Flag",
			"status":       "active",
			"category":     []any{concept(SystemFlagBaRS, r.category, flagCategoryDisplay[r.category], "")},
			"code":         concept(r.system, r.code, r.display, text),
			"subject":      x.subjectRef(),
			"period":       map[string]any{"start": x.authored},
			"author":       x.opts.Requester.reference(),
		}
		if m := securityLabels(r.labels); m != nil {
			f["meta"] = m
		}
		x.add(f)
	}
}

func (x *extraction) observations() {
	if score, ok := x.auditC(); ok {
		x.add(map[string]any{
			"resourceType":      "Observation",
			"status":            "final",
			"category":          []any{concept("http://terminology.hl7.org/CodeSystem/observation-category", "social-history", "Social History", "")},
			"code":              concept("http://loinc.org", "75626-2", "Total score [AUDIT-C]", "AUDIT-C score"),
			"subject":           x.subjectRef(),
			"effectiveDateTime": x.authored,
			"performer":         []any{x.opts.Requester.reference()},
			"valueInteger":      score,
			"interpretation":    []any{map[string]any{"text": auditCInterpretation(score)}},
			"derivedFrom":       []any{map[string]any{"reference": x.qrURL}},
		})
	}
	for _, r := range riskRules {
		a, ok := x.first(r.linkID)
		if !ok {
			continue
		}
		sys, code, display := a.coding()
		x.add(map[string]any{
			"resourceType":         "Observation",
			"meta":                 securityLabels([]string{"PSY"}),
			"status":               "final",
			"category":             []any{concept("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey", "")},
			"code":                 concept(SystemObservation, r.code, r.display, r.display),
			"subject":              x.subjectRef(),
			"effectiveDateTime":    x.authored,
			"performer":            []any{x.opts.Requester.reference()},
			"valueCodeableConcept": concept(sys, code, display, ""),
			"derivedFrom":          []any{map[string]any{"reference": x.qrURL}},
		})
	}
}

// auditC sums the AUDIT-C answers (each code ends in its score, 0 to 4). The later two
// questions are skipped for someone who never drinks, and then score 0.
func (x *extraction) auditC() (int, bool) {
	freq, ok := x.first("alcohol.frequency")
	if !ok {
		return 0, false
	}
	total := 0
	for _, l := range []string{"alcohol.frequency", "alcohol.units", "alcohol.binge"} {
		a, ok := x.first(l)
		if l == "alcohol.frequency" {
			a, ok = freq, true
		}
		if !ok {
			continue
		}
		sys, code, _ := a.coding()
		i := strings.LastIndexByte(code, '-')
		n, err := strconv.Atoi(code[i+1:])
		if sys != SystemAuditC || i < 0 || err != nil {
			continue
		}
		total += n
	}
	return total, true
}

// auditCInterpretation reads a score with the UK cut-off: 5 or more is a positive screen.
func auditCInterpretation(score int) string {
	if score >= 5 {
		return "Positive screen (5 or more): increasing or higher risk drinking; consider the full AUDIT"
	}
	return "Negative screen (under 5): lower risk drinking"
}

func (x *extraction) conditions() {
	for _, a := range x.answers["mh.diagnosis"] {
		sys, code, display := a.coding()
		x.add(map[string]any{
			"resourceType":   "Condition",
			"meta":           securityLabels([]string{"PSY"}),
			"clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active", ""),
			// Reported by the person at L&D assessment, not diagnosed there.
			"verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "unconfirmed", "Unconfirmed", ""),
			"category":           []any{concept("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item", "")},
			"code":               concept(sys, code, display, display),
			"subject":            x.subjectRef(),
			"recordedDate":       x.authored,
			"note":               []any{map[string]any{"text": "Reported at Liaison and Diversion assessment"}},
			"evidence":           []any{map[string]any{"detail": []any{map[string]any{"reference": x.qrURL}}}},
		})
	}
}

func (x *extraction) referrals() error {
	for _, r := range collectReferrals(x.qr) {
		ref := r.service.refValue()
		svc, ok := x.opts.Services[ref]
		if !ok {
			return outcome.At(http.StatusUnprocessableEntity, "not-found", r.service.path+".valueReference",
				"the service directory holds no %q; refer to one of its HealthcareServices", ref)
		}
		_, pathway, pathwayName := r.pathway.coding()
		if !svc.Offers(pathway) {
			return outcome.At(http.StatusUnprocessableEntity, "business-rule", r.service.path+".valueReference",
				"%s (%s) does not take %s referrals; it takes %s", ref, svc.Name, pathway, strings.Join(svc.Pathways, ", "))
		}
		_, priority, _ := r.priority.coding()
		sr := map[string]any{
			"resourceType": "ServiceRequest",
			"status":       "active",
			"intent":       "order",
			"category":     []any{concept(SystemSNOMED, "3457005", "Patient referral", "")},
			"code":         concept(SystemPathway, pathway, pathwayName, "Referral to "+svc.Name),
			"subject":      x.subjectRef(),
			"authoredOn":   x.authored,
			"requester":    x.opts.Requester.reference(),
			"performer": []any{
				map[string]any{"reference": svc.Ref, "display": svc.Name},
				svc.Provider.reference(),
			},
			"reasonCode":     []any{map[string]any{"text": r.reason.text()}},
			"supportingInfo": []any{map[string]any{"reference": x.qrURL}},
		}
		if priority != "" {
			sr["priority"] = priority
		}
		if m := securityLabels(pathwayLabels[pathway]); m != nil {
			sr["meta"] = m
		}
		srURL := x.fullURL()
		sr["identifier"] = []any{map[string]any{"system": SystemReferralID, "value": strings.TrimPrefix(srURL, "urn:uuid:")}}
		x.out = append(x.out, Entry{FullURL: srURL, Resource: sr})
		x.referred = append(x.referred, svc.Provider)
		if pathway == PathwayProbation {
			x.add(ReferralTask(srURL, x.subject, x.authored, x.opts.Requester, svc.Provider))
		}
	}
	return nil
}

// SystemReferralID identifies the referrals the broker derives, for correlation.
const SystemReferralID = "https://hjbroker.dev/Id/referral"

// ReferralTask is the Task a probation referral comes with: the probation provider (owner)
// is asked to fulfil the ServiceRequest (focus) for the L&D team (requester).
func ReferralTask(serviceRequest, subject, authored string, requester, owner Party) map[string]any {
	return map[string]any{
		"resourceType": "Task",
		"status":       "requested",
		"intent":       "order",
		"code":         concept("http://hl7.org/fhir/CodeSystem/task-code", "fulfill", "Fulfill the focal request", ""),
		"focus":        map[string]any{"reference": serviceRequest},
		"basedOn":      []any{map[string]any{"reference": serviceRequest}},
		"for":          map[string]any{"reference": subject},
		"authoredOn":   authored,
		"requester":    requester.reference(),
		"owner":        owner.reference(),
	}
}

func (x *extraction) consents() {
	if a, ok := x.first("consent.share-referrals"); ok && a.boolean() && len(x.referred) > 0 {
		var actors []any
		seen := map[string]bool{}
		for _, p := range x.referred {
			if p.ODS == "" || seen[p.ODS] {
				continue
			}
			seen[p.ODS] = true
			actors = append(actors, map[string]any{
				"role":      concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient", ""),
				"reference": map[string]any{"identifier": map[string]any{"system": SystemODS, "value": p.ODS}, "display": p.Name},
			})
		}
		if len(actors) > 0 {
			x.add(x.consent("COC", actors))
		}
	}
	if a, ok := x.first("consent.share-court"); ok && a.boolean() {
		x.add(x.consent("HLEGAL", []any{map[string]any{
			"role": map[string]any{"coding": []any{
				coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient"),
				coding(SystemAgencyKind, "court", "Court"),
			}},
			"reference": map[string]any{"display": "The court hearing the person's case"},
		}}))
	}
}

func (x *extraction) consent(purpose string, actors []any) map[string]any {
	return map[string]any{
		"resourceType":    "Consent",
		"status":          "active",
		"scope":           concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent", ""),
		"category":        []any{concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IDSCL", "information disclosure", "")},
		"patient":         x.subjectRef(),
		"dateTime":        x.authored,
		"organization":    []any{x.opts.Requester.reference()},
		"sourceReference": map[string]any{"reference": x.qrURL},
		"policyRule":      concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN", "opt-in", ""),
		"provision": map[string]any{
			"type":    "permit",
			"period":  map[string]any{"start": x.authored},
			"actor":   actors,
			"purpose": []any{coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", purpose, "")},
		},
	}
}

func (x *extraction) provenance() Entry {
	var targets []any
	for _, e := range x.out {
		targets = append(targets, map[string]any{"reference": e.FullURL})
	}
	return Entry{FullURL: x.fullURL(), Resource: map[string]any{
		"resourceType": "Provenance",
		"target":       targets,
		"recorded":     x.opts.Now.UTC().Format(time.RFC3339),
		"activity":     concept("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "CREATE", "create", "Extracted from an L&D QuestionnaireResponse"),
		"agent": []any{map[string]any{
			"type": concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author", ""),
			"who":  x.opts.Requester.reference(),
		}},
		"entity": []any{map[string]any{"role": "source", "what": map[string]any{"reference": x.qrURL}}},
	}}
}

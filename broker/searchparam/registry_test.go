package searchparam

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

const spURL = "http://hl7.org/fhir/SearchParameter/"

func newR4(t *testing.T) *Registry {
	t.Helper()
	r, err := NewR4()
	if err != nil {
		t.Fatalf("NewR4: %v", err)
	}
	return r
}

// The resource types the broker serves; each must have its R4 parameters.
var servedTypes = []string{
	"Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Encounter",
	"Observation", "Condition", "AllergyIntolerance", "MedicationStatement", "Medication",
	"Questionnaire", "QuestionnaireResponse", "ServiceRequest", "Task", "Consent", "Flag",
	"CarePlan", "Composition", "DocumentReference", "Provenance", "AuditEvent",
	"MessageHeader", "Bundle", "Endpoint", "HealthcareService", "Subscription",
}

func TestWellKnownParams(t *testing.T) {
	r := newR4(t)
	tests := []struct {
		rt, code string
		typ      Type
		expr     string   // ExpressionFor(rt)
		id       string   // SearchParameter id
		targets  []string // must all be present
	}{
		{"Patient", "identifier", Token, "Patient.identifier", "Patient-identifier", nil},
		{"Patient", "name", String, "Patient.name", "Patient-name", nil},
		{"Patient", "family", String, "Patient.name.family", "individual-family", nil},
		{"Patient", "given", String, "Patient.name.given", "individual-given", nil},
		{"Patient", "birthdate", Date, "Patient.birthDate", "individual-birthdate", nil},
		{"Patient", "gender", Token, "Patient.gender", "individual-gender", nil},
		{"Patient", "address-postalcode", String, "Patient.address.postalCode", "individual-address-postalcode", nil},
		{"Patient", "general-practitioner", Reference, "Patient.generalPractitioner", "Patient-general-practitioner", []string{"Organization", "Practitioner", "PractitionerRole"}},
		{"Patient", "organization", Reference, "Patient.managingOrganization", "Patient-organization", []string{"Organization"}},
		{"Patient", "phone", Token, "Patient.telecom.where(system='phone')", "individual-phone", nil},
		{"Patient", "email", Token, "Patient.telecom.where(system='email')", "individual-email", nil},
		{"Patient", "telecom", Token, "Patient.telecom", "individual-telecom", nil},
		{"Patient", "active", Token, "Patient.active", "Patient-active", nil},
		{"Patient", "deceased", Token, "Patient.deceased.exists() and Patient.deceased != false", "Patient-deceased", nil},
		{"Patient", "death-date", Date, "(Patient.deceased as dateTime)", "Patient-death-date", nil},
		{"Practitioner", "family", String, "Practitioner.name.family", "individual-family", nil},
		{"Practitioner", "identifier", Token, "Practitioner.identifier", "Practitioner-identifier", nil},
		{"PractitionerRole", "practitioner", Reference, "PractitionerRole.practitioner", "PractitionerRole-practitioner", []string{"Practitioner"}},
		{"PractitionerRole", "organization", Reference, "PractitionerRole.organization", "PractitionerRole-organization", []string{"Organization"}},
		{"PractitionerRole", "email", Token, "PractitionerRole.telecom.where(system='email')", "individual-email", nil},
		{"Organization", "name", String, "Organization.name | Organization.alias", "Organization-name", nil},
		{"Organization", "partof", Reference, "Organization.partOf", "Organization-partof", []string{"Organization"}},
		{"Location", "name", String, "Location.name | Location.alias", "Location-name", nil},
		{"Location", "organization", Reference, "Location.managingOrganization", "Location-organization", []string{"Organization"}},
		{"Encounter", "patient", Reference, "Encounter.subject.where(resolve() is Patient)", "clinical-patient", []string{"Patient"}},
		{"Encounter", "date", Date, "Encounter.period", "clinical-date", nil},
		{"Encounter", "class", Token, "Encounter.class", "Encounter-class", nil},
		{"Encounter", "service-provider", Reference, "Encounter.serviceProvider", "Encounter-service-provider", []string{"Organization"}},
		{"Observation", "code", Token, "Observation.code", "clinical-code", nil},
		{"Observation", "subject", Reference, "Observation.subject", "Observation-subject", []string{"Patient", "Group", "Device", "Location"}},
		{"Observation", "patient", Reference, "Observation.subject.where(resolve() is Patient)", "clinical-patient", []string{"Patient"}},
		{"Observation", "date", Date, "Observation.effective", "clinical-date", nil},
		{"Observation", "category", Token, "Observation.category", "Observation-category", nil},
		{"Observation", "value-quantity", Quantity, "(Observation.value as Quantity) | (Observation.value as SampledData)", "Observation-value-quantity", nil},
		{"Observation", "status", Token, "Observation.status", "Observation-status", nil},
		{"Observation", "encounter", Reference, "Observation.encounter", "clinical-encounter", []string{"Encounter"}},
		{"Observation", "performer", Reference, "Observation.performer", "Observation-performer", []string{"Practitioner", "Organization", "Patient", "CareTeam"}},
		{"Observation", "code-value-quantity", Composite, "Observation", "Observation-code-value-quantity", nil},
		{"Condition", "clinical-status", Token, "Condition.clinicalStatus", "Condition-clinical-status", nil},
		{"Condition", "onset-date", Date, "Condition.onset.as(dateTime) | Condition.onset.as(Period)", "Condition-onset-date", nil},
		{"Condition", "code", Token, "Condition.code", "clinical-code", nil},
		{"AllergyIntolerance", "code", Token, "AllergyIntolerance.code | AllergyIntolerance.reaction.substance", "clinical-code", nil},
		{"AllergyIntolerance", "patient", Reference, "AllergyIntolerance.patient", "clinical-patient", []string{"Patient"}},
		{"MedicationStatement", "code", Token, "(MedicationStatement.medication as CodeableConcept)", "clinical-code", nil},
		{"MedicationStatement", "medication", Reference, "(MedicationStatement.medication as Reference)", "medications-medication", []string{"Medication"}},
		{"MedicationStatement", "status", Token, "MedicationStatement.status", "medications-status", nil},
		{"Medication", "code", Token, "Medication.code", "clinical-code", nil},
		{"Medication", "ingredient", Reference, "(Medication.ingredient.item as Reference)", "Medication-ingredient", []string{"Medication", "Substance"}},
		{"Questionnaire", "url", URI, "Questionnaire.url", "Questionnaire-url", nil},
		{"Questionnaire", "status", Token, "Questionnaire.status", "Questionnaire-status", nil},
		{"QuestionnaireResponse", "questionnaire", Reference, "QuestionnaireResponse.questionnaire", "QuestionnaireResponse-questionnaire", []string{"Questionnaire"}},
		{"QuestionnaireResponse", "patient", Reference, "QuestionnaireResponse.subject.where(resolve() is Patient)", "QuestionnaireResponse-patient", []string{"Patient"}},
		{"ServiceRequest", "performer", Reference, "ServiceRequest.performer", "ServiceRequest-performer", []string{"Organization", "Practitioner", "PractitionerRole", "HealthcareService", "CareTeam"}},
		{"ServiceRequest", "status", Token, "ServiceRequest.status", "ServiceRequest-status", nil},
		{"ServiceRequest", "subject", Reference, "ServiceRequest.subject", "ServiceRequest-subject", []string{"Patient", "Group"}},
		{"ServiceRequest", "patient", Reference, "ServiceRequest.subject.where(resolve() is Patient)", "clinical-patient", []string{"Patient"}},
		{"ServiceRequest", "authored", Date, "ServiceRequest.authoredOn", "ServiceRequest-authored", nil},
		{"ServiceRequest", "category", Token, "ServiceRequest.category", "ServiceRequest-category", nil},
		{"ServiceRequest", "requester", Reference, "ServiceRequest.requester", "ServiceRequest-requester", []string{"Practitioner", "Organization", "Patient"}},
		{"ServiceRequest", "intent", Token, "ServiceRequest.intent", "ServiceRequest-intent", nil},
		{"ServiceRequest", "based-on", Reference, "ServiceRequest.basedOn", "ServiceRequest-based-on", []string{"CarePlan", "ServiceRequest", "MedicationRequest"}},
		{"Task", "owner", Reference, "Task.owner", "Task-owner", []string{"Organization", "Practitioner", "PractitionerRole", "HealthcareService", "CareTeam"}},
		{"Task", "status", Token, "Task.status", "Task-status", nil},
		{"Task", "focus", Reference, "Task.focus", "Task-focus", []string{"ServiceRequest", "Patient"}},
		// R4 searches Task.for with "subject" (and "patient"); it has no parameter named "for".
		{"Task", "subject", Reference, "Task.for", "Task-subject", []string{"Patient"}},
		{"Task", "patient", Reference, "Task.for.where(resolve() is Patient)", "Task-patient", []string{"Patient"}},
		{"Task", "requester", Reference, "Task.requester", "Task-requester", []string{"Organization", "Practitioner"}},
		{"Task", "business-status", Token, "Task.businessStatus", "Task-business-status", nil},
		{"Task", "authored-on", Date, "Task.authoredOn", "Task-authored-on", nil},
		{"Task", "modified", Date, "Task.lastModified", "Task-modified", nil},
		{"Consent", "patient", Reference, "Consent.patient", "clinical-patient", []string{"Patient"}},
		{"Consent", "status", Token, "Consent.status", "Consent-status", nil},
		{"Consent", "scope", Token, "Consent.scope", "Consent-scope", nil},
		{"Consent", "category", Token, "Consent.category", "Consent-category", nil},
		{"Consent", "actor", Reference, "Consent.provision.actor.reference", "Consent-actor", []string{"Organization", "Practitioner", "CareTeam"}},
		{"Consent", "action", Token, "Consent.provision.action", "Consent-action", nil},
		{"Consent", "purpose", Token, "Consent.provision.purpose", "Consent-purpose", nil},
		{"Consent", "period", Date, "Consent.provision.period", "Consent-period", nil},
		{"Consent", "data", Reference, "Consent.provision.data.reference", "Consent-data", []string{"Observation", "DocumentReference"}},
		{"Consent", "date", Date, "Consent.dateTime", "clinical-date", nil},
		{"Flag", "patient", Reference, "Flag.subject.where(resolve() is Patient)", "clinical-patient", []string{"Patient"}},
		{"Flag", "subject", Reference, "Flag.subject", "Flag-subject", []string{"Patient", "Location", "Organization"}},
		{"Flag", "date", Date, "Flag.period", "clinical-date", nil},
		{"Flag", "author", Reference, "Flag.author", "Flag-author", []string{"Practitioner", "Organization", "Device"}},
		{"CarePlan", "subject", Reference, "CarePlan.subject", "CarePlan-subject", []string{"Patient", "Group"}},
		{"CarePlan", "activity-date", Date, "CarePlan.activity.detail.scheduled", "CarePlan-activity-date", nil},
		{"Composition", "type", Token, "Composition.type", "clinical-type", nil},
		{"Composition", "subject", Reference, "Composition.subject", "Composition-subject", []string{"Patient"}},
		{"Composition", "related-ref", Reference, "(Composition.relatesTo.target as Reference)", "Composition-related-ref", []string{"Composition"}},
		{"Composition", "encounter", Reference, "Composition.encounter", "clinical-encounter", []string{"Encounter"}},
		{"DocumentReference", "identifier", Token, "DocumentReference.masterIdentifier | DocumentReference.identifier", "clinical-identifier", nil},
		{"DocumentReference", "encounter", Reference, "DocumentReference.context.encounter", "clinical-encounter", []string{"Encounter", "EpisodeOfCare"}},
		{"DocumentReference", "contenttype", Token, "DocumentReference.content.attachment.contentType", "DocumentReference-contenttype", nil},
		{"Provenance", "target", Reference, "Provenance.target", "Provenance-target", []string{"Patient", "Observation"}},
		{"Provenance", "when", Date, "(Provenance.occurred as dateTime)", "Provenance-when", nil},
		{"AuditEvent", "patient", Reference, "AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)", "AuditEvent-patient", []string{"Patient"}},
		{"AuditEvent", "date", Date, "AuditEvent.recorded", "AuditEvent-date", nil},
		{"MessageHeader", "event", Token, "MessageHeader.event", "MessageHeader-event", nil},
		{"MessageHeader", "focus", Reference, "MessageHeader.focus", "MessageHeader-focus", []string{"ServiceRequest"}},
		{"Bundle", "composition", Reference, "Bundle.entry[0].resource", "Bundle-composition", []string{"Composition"}},
		{"Bundle", "type", Token, "Bundle.type", "Bundle-type", nil},
		{"Endpoint", "organization", Reference, "Endpoint.managingOrganization", "Endpoint-organization", []string{"Organization"}},
		{"HealthcareService", "organization", Reference, "HealthcareService.providedBy", "HealthcareService-organization", []string{"Organization"}},
		{"HealthcareService", "service-type", Token, "HealthcareService.type", "HealthcareService-service-type", nil},
		{"Subscription", "url", URI, "Subscription.channel.endpoint", "Subscription-url", nil},
		{"Subscription", "criteria", String, "Subscription.criteria", "Subscription-criteria", nil},
	}
	for _, tc := range tests {
		t.Run(tc.rt+"/"+tc.code, func(t *testing.T) {
			p, ok := r.Lookup(tc.rt, tc.code)
			if !ok {
				t.Fatalf("Lookup(%q, %q) not found", tc.rt, tc.code)
			}
			if p.Code != tc.code || p.Type != tc.typ {
				t.Errorf("code/type = %s/%s, want %s/%s", p.Code, p.Type, tc.code, tc.typ)
			}
			if p.URL != spURL+tc.id {
				t.Errorf("url = %s, want %s", p.URL, spURL+tc.id)
			}
			if got := p.ExpressionFor(tc.rt); got != tc.expr {
				t.Errorf("ExpressionFor = %q, want %q", got, tc.expr)
			}
			for _, want := range tc.targets {
				if !slices.Contains(p.Target, want) {
					t.Errorf("target %v lacks %s", p.Target, want)
				}
			}
			if !slices.Contains(p.Base, tc.rt) {
				t.Errorf("base %v lacks %s", p.Base, tc.rt)
			}
		})
	}
}

func TestNotR4ParamsAbsent(t *testing.T) {
	r := newR4(t)
	for _, c := range [][2]string{
		{"Task", "for"}, {"Patient", "_text"}, {"Patient", "_content"}, {"Patient", "_has"},
		{"Patient", "_list"}, {"Patient", "_query"}, {"Patient", "_filter"}, {"Patient", "nope"},
		{"NotAType", "_id"},
	} {
		if _, ok := r.Lookup(c[0], c[1]); ok {
			t.Errorf("Lookup(%q, %q) found a parameter; want none", c[0], c[1])
		}
	}
}

func TestCommonParams(t *testing.T) {
	r := newR4(t)
	common := map[string]struct {
		typ  Type
		expr string
	}{
		"_id":          {Token, "Resource.id"},
		"_lastUpdated": {Date, "Resource.meta.lastUpdated"},
		"_tag":         {Token, "Resource.meta.tag"},
		"_profile":     {URI, "Resource.meta.profile"},
		"_security":    {Token, "Resource.meta.security"},
		"_source":      {URI, "Resource.meta.source"},
	}
	// Types with and without specific parameters, including ones DomainResource excludes.
	for _, rt := range []string{"Patient", "Bundle", "Binary", "Parameters", "Basic", "Specimen"} {
		for code, want := range common {
			p, ok := r.Lookup(rt, code)
			if !ok {
				t.Errorf("Lookup(%q, %q) not found", rt, code)
				continue
			}
			if p.Type != want.typ || p.Expression != want.expr || !slices.Equal(p.Base, []string{"Resource"}) {
				t.Errorf("%s %s = %s %q base %v", rt, code, p.Type, p.Expression, p.Base)
			}
		}
	}
}

func TestServedTypesHaveParams(t *testing.T) {
	r := newR4(t)
	types := r.Types()
	for _, rt := range servedTypes {
		if !slices.Contains(types, rt) {
			t.Errorf("Types() lacks %s", rt)
		}
		ps := r.ForType(rt)
		if len(ps) < 6+4 { // the six common ones plus at least a handful of its own
			t.Errorf("ForType(%s) has only %d params", rt, len(ps))
		}
		if !sort.SliceIsSorted(ps, func(i, j int) bool { return ps[i].Code < ps[j].Code }) {
			t.Errorf("ForType(%s) is not sorted by code", rt)
		}
		codes := make(map[string]bool)
		for _, p := range ps {
			if codes[p.Code] {
				t.Errorf("ForType(%s) repeats %s", rt, p.Code)
			}
			codes[p.Code] = true
			if got, ok := r.Lookup(rt, p.Code); !ok || got != p {
				t.Errorf("Lookup(%s, %s) disagrees with ForType", rt, p.Code)
			}
		}
		if !codes["_id"] || !codes["_lastUpdated"] {
			t.Errorf("ForType(%s) lacks the common parameters", rt)
		}
	}
	if r.ForType("NotAType") != nil {
		t.Error("ForType(unknown) should be empty")
	}
	if !sort.StringsAreSorted(types) || slices.Contains(types, "Resource") {
		t.Errorf("Types() = %v: want sorted, without Resource", types)
	}
}

// TestDataIntegrity checks every loaded definition the way the indexer will use it.
func TestDataIntegrity(t *testing.T) {
	r := newR4(t)
	seen := map[string]bool{}
	for _, m := range r.byType {
		for _, p := range m {
			if seen[p.URL] {
				continue
			}
			seen[p.URL] = true
			if !strings.HasPrefix(p.URL, spURL) {
				t.Errorf("%s: url not under %s", p.URL, spURL)
			}
			if strings.TrimSpace(p.Description) == "" || strings.Contains(p.Description, "\n") {
				t.Errorf("%s: want a one-line description, got %q", p.URL, p.Description)
			}
			if err := checkExpression(p.Expression); err != nil {
				t.Errorf("%s: %v", p.URL, err)
			}
			if p.Type == Reference && len(p.Target) == 0 {
				t.Errorf("%s: reference without targets", p.URL)
			}
			if p.Type != Reference && len(p.Target) > 0 {
				t.Errorf("%s: %s parameter with targets", p.URL, p.Type)
			}
			if p.Type == Special {
				t.Errorf("%s: special parameters are not indexed and should not be listed", p.URL)
			}
			if p.Type == Composite {
				for _, c := range p.Components {
					if _, ok := r.ByURL(c.Definition); !ok {
						t.Errorf("%s: component %s is not defined", p.URL, c.Definition)
					}
				}
			}
			for _, b := range p.Base {
				e := p.ExpressionFor(b)
				if e == "" {
					t.Errorf("%s: no expression for base %s", p.URL, b)
					continue
				}
				for _, br := range splitUnion(e) {
					if h := leadingIdentifier(br); h != b {
						t.Errorf("%s: branch %q for %s starts with %q", p.URL, br, b, h)
					}
				}
				if got, ok := r.Lookup(b, p.Code); b != "Resource" && (!ok || got != p) {
					t.Errorf("%s: Lookup(%s, %s) does not return it", p.URL, b, p.Code)
				}
			}
		}
	}
	if len(seen) < 350 {
		t.Errorf("loaded %d definitions, expected the full set (>350)", len(seen))
	}
	// A shared definition keeps its full base list and expression.
	p, _ := r.ByURL(spURL + "clinical-patient")
	if p == nil || len(p.Base) != 32 || !strings.HasPrefix(p.Expression, "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient)") {
		t.Fatalf("clinical-patient = %+v", p)
	}
	if got := p.ExpressionFor("Consent"); got != "Consent.patient" {
		t.Errorf("clinical-patient for Consent = %q", got)
	}
}

func validSP() map[string]any {
	return map[string]any{
		"resourceType": "SearchParameter",
		"url":          "https://hjbroker.example/fhir/SearchParameter/patient-custody-id",
		"name":         "CustodyId",
		"status":       "active",
		"code":         "custody-id",
		"base":         []any{"Patient"},
		"type":         "token",
		"expression":   "Patient.identifier.where(system='https://hjbroker.example/custody-id')",
		"description":  "Custody suite record number",
	}
}

func TestAddFromResource(t *testing.T) {
	r := newR4(t)
	p, err := r.AddFromResource(validSP())
	if err != nil {
		t.Fatalf("AddFromResource: %v", err)
	}
	got, ok := r.Lookup("Patient", "custody-id")
	if !ok || got != p || got.Type != Token || got.ExpressionFor("Patient") != validSP()["expression"] {
		t.Fatalf("Lookup after add = %+v, %v", got, ok)
	}
	if ps := r.ForType("Patient"); !slices.ContainsFunc(ps, func(p *Param) bool { return p.Code == "custody-id" }) {
		t.Error("ForType(Patient) lacks the custom parameter")
	}

	// The same url again is an update: it may move to a new code.
	upd := validSP()
	upd["code"] = "custody-number"
	if _, err := r.AddFromResource(upd); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, ok := r.Lookup("Patient", "custody-id"); ok {
		t.Error("old code still registered after update")
	}
	if _, ok := r.Lookup("Patient", "custody-number"); !ok {
		t.Error("updated code not registered")
	}

	// A multi-base custom parameter with a union expression.
	multi := validSP()
	multi["url"] = "https://hjbroker.example/fhir/SearchParameter/custody-episode"
	multi["code"] = "custody-episode"
	multi["base"] = []any{"Encounter", "Flag"}
	multi["type"] = "reference"
	multi["target"] = []any{"EpisodeOfCare"}
	multi["expression"] = "Encounter.episodeOfCare | Flag.extension('https://hjbroker.example/episode').value"
	mp, err := r.AddFromResource(multi)
	if err != nil {
		t.Fatalf("multi-base: %v", err)
	}
	if got := mp.ExpressionFor("Flag"); got != "Flag.extension('https://hjbroker.example/episode').value" {
		t.Errorf("ExpressionFor(Flag) = %q", got)
	}

	// Special parameters need no expression.
	special := validSP()
	special["url"] = "https://hjbroker.example/fhir/SearchParameter/near-custody"
	special["code"] = "near-custody"
	special["type"] = "special"
	delete(special, "expression")
	if _, err := r.AddFromResource(special); err != nil {
		t.Errorf("special without expression: %v", err)
	}
}

func TestAddFromResourceRejects(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(sp map[string]any)
		wantErr string
	}{
		{"nil resource", nil, "empty"},
		{"wrong resourceType", func(sp map[string]any) { sp["resourceType"] = "Patient" }, "resourceType"},
		{"missing url", func(sp map[string]any) { delete(sp, "url") }, "url is missing"},
		{"missing code", func(sp map[string]any) { delete(sp, "code") }, "code is missing"},
		{"blank code", func(sp map[string]any) { sp["code"] = "  " }, "code is missing"},
		{"code with modifier separator", func(sp map[string]any) { sp["code"] = "custody:id" }, "code"},
		{"reserved code", func(sp map[string]any) { sp["code"] = "_custody" }, "reserved"},
		{"missing base", func(sp map[string]any) { delete(sp, "base") }, "base is missing"},
		{"empty base", func(sp map[string]any) { sp["base"] = []any{} }, "base is missing"},
		{"base not an array", func(sp map[string]any) { sp["base"] = "Patient" }, "base must be an array"},
		{"unknown base", func(sp map[string]any) { sp["base"] = []any{"Patient", "Prisoner"} }, `base[1]: unknown resource type "Prisoner"`},
		{"missing type", func(sp map[string]any) { delete(sp, "type") }, "type is missing"},
		{"bad type", func(sp map[string]any) { sp["type"] = "text" }, `type "text"`},
		{"missing expression", func(sp map[string]any) { delete(sp, "expression") }, "expression is missing"},
		{"unbalanced expression", func(sp map[string]any) { sp["expression"] = "Patient.identifier.where(system='x'" }, "expression: unclosed"},
		{"expression not a string", func(sp map[string]any) { sp["expression"] = 3 }, "expression must be a string"},
		{"unknown target", func(sp map[string]any) {
			sp["type"] = "reference"
			sp["target"] = []any{"Cell"}
		}, `target[0]: unknown resource type "Cell"`},
		{"composite without components", func(sp map[string]any) { sp["type"] = "composite" }, "component is missing"},
		{"component without definition", func(sp map[string]any) {
			sp["type"] = "composite"
			sp["component"] = []any{map[string]any{"expression": "code"}}
		}, "component[0].definition is missing"},
		{"clashes with an R4 code", func(sp map[string]any) { sp["code"] = "gender" }, "already defined by " + spURL + "individual-gender"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newR4(t)
			var sp map[string]any
			if tc.edit != nil {
				sp = validSP()
				tc.edit(sp)
			}
			p, err := r.AddFromResource(sp)
			if err == nil {
				t.Fatalf("AddFromResource accepted %v", sp)
			}
			if p != nil {
				t.Error("returned a param with an error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if code, _ := sp["code"].(string); code != "" && code != "gender" {
				if _, ok := r.Lookup("Patient", code); ok {
					t.Error("rejected parameter was registered")
				}
			}
		})
	}
}

func TestConcurrentReadsAndAdds(t *testing.T) {
	r := newR4(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, ok := r.Lookup("Observation", "code"); !ok {
					t.Error("Lookup failed during concurrent adds")
					return
				}
				_ = r.ForType("Patient")
				_ = r.Types()
			}
		}()
		go func() {
			defer wg.Done()
			sp := validSP()
			sp["url"] = fmt.Sprintf("https://hjbroker.example/fhir/SearchParameter/c%d", i)
			sp["code"] = fmt.Sprintf("custom-%d", i)
			if _, err := r.AddFromResource(sp); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range 8 {
		if _, ok := r.Lookup("Patient", fmt.Sprintf("custom-%d", i)); !ok {
			t.Errorf("custom-%d missing", i)
		}
	}
}

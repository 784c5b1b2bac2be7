// Package careconnect maps a GP Connect Access Record: Structured response (an STU3 Bundle of
// type collection, profile GPConnect-StructuredRecord-Bundle-1, CareConnect resources) to a
// FHIR R4 transaction Bundle of UK Core resources: Patient, Organization, Practitioner,
// PractitionerRole, Condition, AllergyIntolerance, MedicationStatement, MedicationRequest,
// Medication, Observation and List, plus a Provenance naming what the mapping produced.
//
// The conversion is a pure function. Every element of every supported resource is either
// carried over (with the STU3-to-R4 changes: coded statuses become CodeableConcepts,
// assertedDate becomes recordedDate, context becomes encounter, Dosage dose/rate become
// doseAndRate, code systems moved to terminology.hl7.org are renamed, ...), deliberately
// dropped with a warning (listed in docs/clinical-entries.md), or refused
// with an error naming the element (Bundle.entry[3].resource.clinicalStatus). Nothing is lost
// silently.
package careconnect

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/mappings/nhsnumber"
)

// Name is the mapping's name; MappingURL (Provenance.policy) is its canonical URL.
const (
	Name       = "careconnect"
	MappingURL = "https://hjbroker.dev/fhir/StructureMap/" + Name
	// BundleProfile is the GP Connect structured record Bundle profile.
	BundleProfile = "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1"

	gpcSD   = "https://fhir.nhs.uk/STU3/StructureDefinition/"
	ccSD    = "https://fhir.hl7.org.uk/STU3/StructureDefinition/"
	ukSD    = "https://fhir.hl7.org.uk/StructureDefinition/"
	odsOrg  = "https://fhir.nhs.uk/Id/ods-organization-code"
	sdsUser = "https://fhir.nhs.uk/Id/sds-user-id"
	source  = "https://hjbroker.dev/fhir/Id/source-system"

	stu3Verification = "https://fhir.hl7.org.uk/STU3/CodeSystem/CareConnect-NHSNumberVerificationStatus-1"
	stu3VerifExt     = ccSD + "Extension-CareConnect-NHSNumberVerificationStatus-1"
	gpcListWarning   = gpcSD + "Extension-CareConnect-GPC-ListWarningCode-1"
	ukListWarning    = ukSD + "Extension-UKCore-ListWarningCode"
	ukListWarningCS  = "https://fhir.hl7.org.uk/CodeSystem/UKCore-ListWarningCode"
)

// Options are what the mapping needs beyond the input.
type Options struct {
	// AgencyODS is the ODS code of the agency importing the record (Provenance author).
	AgencyODS string
	// Source names the importing client (Provenance.entity).
	Source string
	// Recorded is Provenance.recorded; zero means now.
	Recorded time.Time
	// NewID returns the uuid of each fullUrl; nil uses random UUIDs.
	NewID func() string
}

// Warning is an issue about one output entry that does not stop the mapping.
type Warning struct {
	Entry int           `json:"entry"`
	Issue outcome.Issue `json:"issue"`
}

// Result is a mapped record.
type Result struct {
	Bundle   map[string]any
	Warnings []Warning
	// Sources gives, per output entry, the input entry it came from ("Bundle.entry[3]").
	Sources []string
}

// Mapper converts GP Connect structured records. It is immutable and safe for concurrent use.
type Mapper struct {
	nhs *nhsnumber.Statuses
}

// New loads what the mapping needs.
func New() (*Mapper, error) {
	nhs, err := nhsnumber.Load()
	if err != nil {
		return nil, err
	}
	return &Mapper{nhs: nhs}, nil
}

// conv is the state of one conversion.
type conv struct {
	m        *Mapper
	opts     Options
	refs     map[string]string // "Type/id" and input fullUrls -> output fullUrl
	errs     []outcome.Issue
	warnings []Warning
	entry    int // output entry being built
}

func (c *conv) fail(code, path, format string, args ...any) {
	c.errs = append(c.errs, outcome.Issue{Severity: "error", Code: code, Expression: []string{path},
		Diagnostics: path + ": " + fmt.Sprintf(format, args...)})
}

func (c *conv) warn(path, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{Entry: c.entry, Issue: outcome.Issue{Severity: "warning", Code: "informational",
		Expression: []string{path}, Diagnostics: path + ": " + fmt.Sprintf(format, args...)}})
}

func (c *conv) newURL() string {
	if c.opts.NewID != nil {
		return "urn:uuid:" + c.opts.NewID()
	}
	return "urn:uuid:" + uuid.NewString()
}

// Map converts an STU3 structured record Bundle (decoded JSON). Errors are *outcome.Error:
// 400 when the input is not such a Bundle, 422 when it holds content the mapping does not
// support, each issue naming the element.
func (m *Mapper) Map(in map[string]any, opts Options) (*Result, error) {
	if in["resourceType"] != "Bundle" {
		return nil, outcome.At(http.StatusBadRequest, "invalid", "Bundle.resourceType", "a GP Connect structured record is a Bundle; got resourceType %v", in["resourceType"])
	}
	if in["type"] != "collection" {
		return nil, outcome.At(http.StatusBadRequest, "invalid", "Bundle.type", "a GP Connect structured record is a Bundle of type collection; got %v", in["type"])
	}
	if mt, ok := in["meta"].(map[string]any); ok {
		if profiles, ok := mt["profile"].([]any); ok && !containsAny(profiles, BundleProfile) {
			return nil, outcome.At(http.StatusBadRequest, "invalid", "Bundle.meta.profile", "the Bundle does not declare %s", BundleProfile)
		}
	}
	entries, _ := in["entry"].([]any)
	if len(entries) == 0 {
		return nil, outcome.At(http.StatusBadRequest, "required", "Bundle.entry", "the structured record has no entries")
	}
	c := &conv{m: m, opts: opts, refs: map[string]string{}}
	// First pass: the output fullUrl of every input resource, so references can be rewritten.
	type item struct {
		res  map[string]any
		path string
		url  string
	}
	var items []item
	patients := 0
	for i, e := range entries {
		path := fmt.Sprintf("Bundle.entry[%d]", i)
		en, _ := e.(map[string]any)
		res, _ := en["resource"].(map[string]any)
		if res == nil {
			c.fail("required", path+".resource", "the entry has no resource")
			continue
		}
		typ, _ := res["resourceType"].(string)
		if _, ok := specs[typ]; !ok {
			c.fail("not-supported", path+".resource.resourceType", "%s is not supported by this mapping (supported: %s)", typ, strings.Join(supported(), ", "))
			continue
		}
		if typ == "Patient" {
			patients++
		}
		url := c.newURL()
		if id, _ := res["id"].(string); id != "" {
			c.refs[typ+"/"+id] = url
		}
		if fu, _ := en["fullUrl"].(string); fu != "" {
			c.refs[fu] = url
			// An absolute fullUrl ending in Type/id is also referenced relatively.
			if parts := strings.Split(fu, "/"); len(parts) >= 2 {
				c.refs[parts[len(parts)-2]+"/"+parts[len(parts)-1]] = url
			}
		}
		items = append(items, item{res, path + ".resource", url})
	}
	if patients != 1 && len(c.errs) == 0 {
		c.fail("invalid", "Bundle.entry", "a structured record holds exactly one Patient; this one has %d", patients)
	}
	var out []any
	var sources []string
	var targets []any
	for _, it := range items {
		c.entry = len(out)
		typ := it.res["resourceType"].(string)
		res := c.resource(typ, it.res, it.path)
		if res == nil {
			continue
		}
		req := map[string]any{"method": http.MethodPost, "url": typ}
		if ine := conditional(typ, res); ine != "" {
			req["ifNoneExist"] = ine
		}
		out = append(out, map[string]any{"fullUrl": it.url, "resource": res, "request": req})
		sources = append(sources, strings.TrimSuffix(it.path, ".resource"))
		if typ != "Patient" {
			targets = append(targets, map[string]any{"reference": it.url})
		}
	}
	if len(c.errs) > 0 {
		status := http.StatusUnprocessableEntity
		for _, is := range c.errs {
			if is.Code == "invalid" || is.Code == "required" || is.Code == "structure" {
				status = http.StatusBadRequest
			}
		}
		return nil, &outcome.Error{Status: status, Issues: c.errs}
	}
	out = append(out, map[string]any{"fullUrl": c.newURL(), "resource": c.provenance(in, targets), "request": map[string]any{"method": http.MethodPost, "url": "Provenance"}})
	sources = append(sources, "")
	return &Result{
		Bundle:   map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": out},
		Warnings: c.warnings,
		Sources:  sources,
	}, nil
}

func containsAny(list []any, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func supported() []string {
	var out []string
	for k := range specs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// conditional is the If-None-Exist of resources the broker may already hold: the Patient by
// NHS number, an Organization by ODS code, a Practitioner by SDS user id.
func conditional(typ string, res map[string]any) string {
	want := map[string]string{"Patient": nhsnumber.System, "Organization": odsOrg, "Practitioner": sdsUser}[typ]
	if want == "" {
		return ""
	}
	ids, _ := res["identifier"].([]any)
	for _, x := range ids {
		id, _ := x.(map[string]any)
		if id["system"] == want {
			if v, _ := id["value"].(string); v != "" {
				return "identifier=" + want + "|" + v
			}
		}
	}
	return ""
}

func (c *conv) provenance(in map[string]any, targets []any) map[string]any {
	recorded := c.opts.Recorded
	if recorded.IsZero() {
		recorded = time.Now()
	}
	pt := "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	agents := []any{map[string]any{
		"type": cc(pt, "assembler", "Assembler"),
		"who":  map[string]any{"type": "Device", "display": "hjbroker"},
	}}
	if c.opts.AgencyODS != "" {
		agents = append(agents, map[string]any{
			"type": cc(pt, "author", "Author"),
			"who":  map[string]any{"type": "Organization", "identifier": map[string]any{"system": odsOrg, "value": c.opts.AgencyODS}},
		})
	}
	what := map[string]any{"display": "GP Connect structured record"}
	if id, ok := in["identifier"].(map[string]any); ok {
		what["identifier"] = id
	} else if c.opts.Source != "" {
		what["identifier"] = map[string]any{"system": source, "value": c.opts.Source}
	}
	return map[string]any{
		"resourceType": "Provenance",
		"meta":         map[string]any{"profile": []any{ukSD + "UKCore-Provenance"}},
		"target":       targets,
		"recorded":     recorded.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"activity":     cc("http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "transform", "Transform/Translate Record Lifecycle Event"),
		"policy":       []any{MappingURL},
		"agent":        agents,
		"entity":       []any{map[string]any{"role": "source", "what": what}},
	}
}

func cc(system, code, display string) map[string]any {
	cd := map[string]any{"system": system, "code": code}
	if display != "" {
		cd["display"] = display
	}
	return map[string]any{"coding": []any{cd}}
}

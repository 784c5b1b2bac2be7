// Package clinical maps the clinical entries a custody healthcare professional records in the
// custody EMR (the JSON format of docs/clinical-entries.md, checked by schema.json) to a FHIR
// R4 transaction Bundle of UK Core resources: the custody Encounter, vital-sign and NEWS2
// Observations, Conditions, MedicationAdministrations and MedicationStatements,
// AllergyIntolerances and a Provenance naming what the mapping produced.
//
// The mapping is a pure function of its input and Options. Read v2 and CTV3 codes are
// translated to SNOMED CT through the starter map (codes.json); a code it does not know is
// kept with its original system, the resource is tagged (meta.tag TagUnmapped) and a warning
// names it. Nothing is guessed.
package clinical

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/xeipuuv/gojsonschema"

	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/mappings/nhsnumber"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

//go:embed schema.json
var schemaJSON []byte

//go:embed codes.json
var codesJSON []byte

// maxDepth bounds the nesting of a document; the format itself needs five levels.
const maxDepth = 16

// Format is the value of the input's "format" member.
const Format = "hjbroker-clinical-entries/1"

// Name is the mapping's name; its canonical URL (MappingURL) is Provenance.policy.
const Name = "clinical-entries"

// Identifiers and codes the mapping stamps.
const (
	MappingURL = "https://hjbroker.dev/fhir/StructureMap/" + Name
	// SystemEpisode identifies the custody Encounter: "<custody suite>/<episode id>".
	SystemEpisode = "https://hjbroker.dev/fhir/Id/custody-episode"
	// SystemEntry identifies a resource made from an entry with an id:
	// "<custody suite>/<entry id>", with "/<observation>" for the Observations of one set.
	SystemEntry = "https://hjbroker.dev/fhir/Id/clinical-entry"
	// SystemMappingTag and TagUnmapped mark a resource holding a source code the mapping
	// kept untranslated.
	SystemMappingTag = "https://hjbroker.dev/fhir/CodeSystem/mapping"
	TagUnmapped      = "unmapped-code"
	systemODSOrg     = "https://fhir.nhs.uk/Id/ods-organization-code"
	systemODSSite    = "https://fhir.nhs.uk/Id/ods-site-code"
	systemSource     = "https://hjbroker.dev/fhir/Id/source-system"
	sdBase           = "https://fhir.hl7.org.uk/StructureDefinition/"
)

// Entries is the decoded input.
type Entries struct {
	Format       string           `json:"format"`
	Patient      Patient          `json:"patient"`
	Episode      Episode          `json:"episode"`
	Observations []ObservationSet `json:"observations"`
	Problems     []Problem        `json:"problems"`
	Medications  []Medication     `json:"medications"`
	Allergies    []Allergy        `json:"allergies"`
}

// Patient identifies the person by NHS number.
type Patient struct {
	NHSNumber          string  `json:"nhsNumber"`
	VerificationStatus *Coding `json:"verificationStatus"`
	Name               *struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
	BirthDate string `json:"birthDate"`
	Gender    string `json:"gender"`
}

// Episode is the custody episode.
type Episode struct {
	ID               string `json:"id"`
	CustodySuite     string `json:"custodySuite"`
	CustodySuiteName string `json:"custodySuiteName"`
	Provider         string `json:"provider"`
	Arrival          string `json:"arrival"`
	Release          string `json:"release"`
	Reason           string `json:"reason"`
}

// Coding is a code with its system (an alias or a URI).
type Coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

// Author is the professional who recorded an entry.
type Author struct {
	Name           string `json:"name"`
	Role           string `json:"role"`
	ProfessionalID *struct {
		Register string `json:"register"`
		Value    string `json:"value"`
	} `json:"professionalId"`
}

// ObservationSet is one set of observations taken at one time.
type ObservationSet struct {
	ID              string `json:"id"`
	Time            string `json:"time"`
	Author          Author `json:"author"`
	HeartRate       *int   `json:"heartRate"`
	RespiratoryRate *int   `json:"respiratoryRate"`
	BloodPressure   *struct {
		Systolic  int `json:"systolic"`
		Diastolic int `json:"diastolic"`
	} `json:"bloodPressure"`
	Temperature *float64 `json:"temperature"`
	SpO2        *int     `json:"spo2"`
	ACVPU       string   `json:"acvpu"`
	NEWS2       *int     `json:"news2"`
}

// Problem is a problem or diagnosis.
type Problem struct {
	ID           string `json:"id"`
	Code         Coding `json:"code"`
	Category     string `json:"category"`
	Status       string `json:"status"`
	Verification string `json:"verification"`
	Onset        string `json:"onset"`
	Note         string `json:"note"`
	Time         string `json:"time"`
	Author       Author `json:"author"`
}

// Medication is a medication given in custody or declared by the person.
type Medication struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Code Coding `json:"code"`
	Dose *struct {
		Value float64 `json:"value"`
		Unit  string  `json:"unit"`
	} `json:"dose"`
	Route        string `json:"route"`
	Instructions string `json:"instructions"`
	Status       string `json:"status"`
	Note         string `json:"note"`
	Time         string `json:"time"`
	Author       Author `json:"author"`
}

// Allergy is an allergy or intolerance.
type Allergy struct {
	ID           string `json:"id"`
	Code         Coding `json:"code"`
	Type         string `json:"type"`
	Category     string `json:"category"`
	Criticality  string `json:"criticality"`
	Status       string `json:"status"`
	Verification string `json:"verification"`
	Reaction     *struct {
		Description string `json:"description"`
		Severity    string `json:"severity"`
	} `json:"reaction"`
	Note   string `json:"note"`
	Time   string `json:"time"`
	Author Author `json:"author"`
}

// Options are what the mapping needs beyond the input.
type Options struct {
	// AgencyODS is the ODS organisation code of the agency posting the entries: the
	// Encounter's serviceProvider when the episode names no provider, and the Provenance
	// author.
	AgencyODS string
	// Source names the sending system or client (Provenance.entity).
	Source string
	// Recorded is Provenance.recorded; zero means now.
	Recorded time.Time
	// NewID returns the uuid of each fullUrl; nil uses random UUIDs.
	NewID func() string
}

// Warning is an issue about one Bundle entry that does not stop the mapping.
type Warning struct {
	Entry int           `json:"entry"` // index in Bundle.entry
	Issue outcome.Issue `json:"issue"`
}

// Result is a mapped input.
type Result struct {
	Bundle   map[string]any
	Warnings []Warning
	// Sources gives, per Bundle entry, the input path it was made from ("patient",
	// "observations[0]", "problems[1]"), so errors about an entry can name the input too.
	Sources []string
}

// Mapper maps clinical entries. It is immutable and safe for concurrent use.
type Mapper struct {
	schema *gojsonschema.Schema
	codes  *CodeMap
	nhs    *nhsnumber.Statuses
}

// New compiles the schema and loads the code map.
func New() (*Mapper, error) {
	s, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("compiling the clinical entries schema: %w", err)
	}
	codes, err := parseCodeMap(codesJSON)
	if err != nil {
		return nil, err
	}
	nhs, err := nhsnumber.Load()
	if err != nil {
		return nil, err
	}
	return &Mapper{schema: s, codes: codes, nhs: nhs}, nil
}

// Codes returns the starter code map.
func (m *Mapper) Codes() *CodeMap { return m.codes }

// Decode checks raw against the schema and the rules a schema cannot say (NHS number check
// digit, ODS code shape, release after arrival, verification status spelling). Errors are
// *outcome.Error with status 400 and one issue per problem, each naming its JSON path.
func (m *Mapper) Decode(raw []byte) (*Entries, error) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return nil, outcome.New(http.StatusBadRequest, "structure", "clinical entries are one JSON object (see docs/clinical-entries.md)")
	}
	// The broker's JSON reader refuses repeated properties (decoders disagree on which copy
	// wins) and absurd nesting, as it does for FHIR bodies.
	if _, err := resource.Decode(raw, resource.Limits{MaxDepth: maxDepth}); err != nil {
		return nil, err
	}
	if err := m.checkSchema(raw); err != nil {
		return nil, err
	}
	var in Entries
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, outcome.New(http.StatusBadRequest, "structure", "decoding the clinical entries: %v", err)
	}
	var issues []outcome.Issue
	bad := func(code, path, format string, args ...any) {
		issues = append(issues, outcome.Issue{Severity: "error", Code: code, Expression: []string{path},
			Diagnostics: path + ": " + fmt.Sprintf(format, args...)})
	}
	if ok, why := nhsnumber.Valid(in.Patient.NHSNumber); !ok {
		bad("value", "patient.nhsNumber", "%q is not a valid NHS number: %s", in.Patient.NHSNumber, why)
	}
	if vs := in.Patient.VerificationStatus; vs != nil {
		if _, ok := m.nhs.Coding(vs.System, vs.Code); !ok {
			bad("code-invalid", "patient.verificationStatus", "%s|%s is not an NHS number verification status (England 01-08, the retired string codes, Wales, or NullFlavor)", vs.System, vs.Code)
		}
	}
	if ok, why := validate.ValidODSCode(in.Episode.CustodySuite); !ok {
		bad("value", "episode.custodySuite", "%q is not an ODS site code: %s", in.Episode.CustodySuite, why)
	}
	if p := in.Episode.Provider; p != "" {
		if ok, why := validate.ValidODSCode(p); !ok {
			bad("value", "episode.provider", "%q is not an ODS organisation code: %s", p, why)
		}
	}
	if in.Episode.Release != "" {
		a, errA := time.Parse(time.RFC3339, in.Episode.Arrival)
		r, errR := time.Parse(time.RFC3339, in.Episode.Release)
		if errA == nil && errR == nil && r.Before(a) {
			bad("invariant", "episode.release", "release %s is before arrival %s", in.Episode.Release, in.Episode.Arrival)
		}
	}
	checkCode := func(path string, c Coding) {
		sys := system(c.System)
		if sys == SystemSNOMED || sys == SystemDMD {
			if !sctid(c.Code) {
				bad("value", path+".code", "%q is not a SNOMED CT / dm+d identifier (6 to 18 digits, no leading zero)", c.Code)
			}
		}
	}
	// An id names one entry: a second entry with it would be taken for the first and lost.
	uniq := func(list string, ids []string) {
		first := map[string]int{}
		for i, id := range ids {
			if id == "" {
				continue
			}
			if j, dup := first[id]; dup {
				bad("business-rule", fmt.Sprintf("%s[%d].id", list, i), "id %q is already used by %s[%d]; entry ids must be unique", id, list, j)
				continue
			}
			first[id] = i
		}
	}
	var ids []string
	for _, o := range in.Observations {
		ids = append(ids, o.ID)
	}
	uniq("observations", ids)
	ids = nil
	for _, p := range in.Problems {
		ids = append(ids, p.ID)
	}
	uniq("problems", ids)
	ids = nil
	for _, md := range in.Medications {
		ids = append(ids, md.ID)
	}
	uniq("medications", ids)
	ids = nil
	for _, a := range in.Allergies {
		ids = append(ids, a.ID)
	}
	uniq("allergies", ids)
	for i, p := range in.Problems {
		checkCode(fmt.Sprintf("problems[%d].code", i), p.Code)
	}
	for i, md := range in.Medications {
		checkCode(fmt.Sprintf("medications[%d].code", i), md.Code)
		if md.Kind == "administered" && md.Status != "" && md.Status != "completed" {
			bad("value", fmt.Sprintf("medications[%d].status", i), "a medication administered in custody is completed; status %q applies to declared medication", md.Status)
		}
	}
	for i, a := range in.Allergies {
		checkCode(fmt.Sprintf("allergies[%d].code", i), a.Code)
	}
	if len(issues) > 0 {
		return nil, &outcome.Error{Status: http.StatusBadRequest, Issues: issues}
	}
	return &in, nil
}

// Map decodes raw (see Decode) and maps it to a transaction Bundle.
func (m *Mapper) Map(raw []byte, opts Options) (*Result, error) {
	in, err := m.Decode(raw)
	if err != nil {
		return nil, err
	}
	return m.MapEntries(in, opts), nil
}

func system(s string) string {
	if a, ok := aliases[s]; ok {
		return a
	}
	return s
}

// sctid checks the shape of a SNOMED CT identifier.
func sctid(s string) bool {
	if len(s) < 6 || len(s) > 18 || s[0] == '0' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// builder accumulates the Bundle.
type builder struct {
	m        *Mapper
	opts     Options
	entries  []any
	sources  []string
	source   string // input path of the entries being added
	warnings []Warning
	targets  []any
	suite    string         // custody suite ODS code, the namespace of entry ids
	patient  map[string]any // the reference every resource uses for the patient
	episode  map[string]any
}

func (b *builder) fullURL() string {
	if b.opts.NewID != nil {
		return "urn:uuid:" + b.opts.NewID()
	}
	return "urn:uuid:" + uuid.NewString()
}

// add appends an entry and returns its fullUrl. ifNoneExist makes it a conditional create.
func (b *builder) add(res map[string]any, method, url, ifNoneExist string) string {
	full := b.fullURL()
	req := map[string]any{"method": method, "url": url}
	if ifNoneExist != "" {
		req["ifNoneExist"] = ifNoneExist
	}
	b.entries = append(b.entries, map[string]any{"fullUrl": full, "resource": res, "request": req})
	b.sources = append(b.sources, b.source)
	if res["resourceType"] != "Patient" {
		b.targets = append(b.targets, map[string]any{"reference": full})
	}
	return full
}

// create adds a POST entry, conditional on the entry identifier when the source gave an id.
// Entry ids are the EMR's, so they are namespaced by the custody suite, as the episode is.
func (b *builder) create(res map[string]any, entryID string) string {
	typ := res["resourceType"].(string)
	if entryID == "" {
		return b.add(res, http.MethodPost, typ, "")
	}
	value := b.suite + "/" + entryID
	res["identifier"] = []any{map[string]any{"system": SystemEntry, "value": value}}
	return b.add(res, http.MethodPost, typ, "identifier="+SystemEntry+"|"+value)
}

func (b *builder) warn(entry int, inputPath, resourcePath, format string, args ...any) {
	b.warnings = append(b.warnings, Warning{Entry: entry, Issue: outcome.Issue{
		Severity: "warning", Code: "code-invalid",
		Diagnostics: inputPath + ": " + fmt.Sprintf(format, args...),
		Expression:  []string{inputPath, fmt.Sprintf("Bundle.entry[%d].resource.%s", entry, resourcePath)},
	}})
}

// MapEntries maps decoded, checked entries.
func (m *Mapper) MapEntries(in *Entries, opts Options) *Result {
	b := &builder{m: m, opts: opts, suite: in.Episode.CustodySuite}
	b.source = "patient"
	b.mapPatient(in.Patient)
	b.source = "episode"
	b.mapEpisode(in.Episode)
	for i, set := range in.Observations {
		b.source = fmt.Sprintf("observations[%d]", i)
		b.mapObservations(i, set)
	}
	for i, p := range in.Problems {
		b.source = fmt.Sprintf("problems[%d]", i)
		b.mapProblem(i, p)
	}
	for i, md := range in.Medications {
		b.source = fmt.Sprintf("medications[%d]", i)
		b.mapMedication(i, md)
	}
	for i, a := range in.Allergies {
		b.source = fmt.Sprintf("allergies[%d]", i)
		b.mapAllergy(i, a)
	}
	b.source = ""
	b.provenance()
	return &Result{
		Bundle:   map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": b.entries},
		Warnings: b.warnings,
		Sources:  b.sources,
	}
}

func meta(profile string) map[string]any {
	return map[string]any{"profile": []any{sdBase + profile}}
}

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(system, code, display string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code, display)}}
}

func (b *builder) mapPatient(p Patient) {
	var status map[string]any
	if vs := p.VerificationStatus; vs != nil {
		status, _ = b.m.nhs.Coding(vs.System, vs.Code)
	}
	res := map[string]any{
		"resourceType": "Patient",
		"meta":         meta("UKCore-Patient"),
		"identifier":   []any{b.m.nhs.Identifier(p.NHSNumber, status)},
	}
	if p.Name != nil {
		n := map[string]any{"use": "official", "family": p.Name.Family}
		if len(p.Name.Given) > 0 {
			g := make([]any, len(p.Name.Given))
			for i, s := range p.Name.Given {
				g[i] = s
			}
			n["given"] = g
		}
		res["name"] = []any{n}
	}
	if p.Gender != "" {
		res["gender"] = p.Gender
	}
	if p.BirthDate != "" {
		res["birthDate"] = p.BirthDate
	}
	ident := nhsnumber.System + "|" + p.NHSNumber
	b.add(res, http.MethodPost, "Patient", "identifier="+ident)
	// Everything references the patient by NHS number (a conditional reference): the engine
	// resolves it inside the transaction to the Patient matched or created above.
	b.patient = map[string]any{"reference": "Patient?identifier=" + ident, "type": "Patient",
		"identifier": map[string]any{"system": nhsnumber.System, "value": p.NHSNumber}}
}

func (b *builder) mapEpisode(ep Episode) {
	ident := ep.CustodySuite + "/" + ep.ID
	status, locStatus := "in-progress", "active"
	period := map[string]any{"start": ep.Arrival}
	if ep.Release != "" {
		status, locStatus = "finished", "completed"
		period["end"] = ep.Release
	}
	site := map[string]any{"type": "Location", "identifier": map[string]any{"system": systemODSSite, "value": ep.CustodySuite}}
	if ep.CustodySuiteName != "" {
		site["display"] = ep.CustodySuiteName
	}
	res := map[string]any{
		"resourceType": "Encounter",
		"meta":         meta("UKCore-Encounter"),
		"identifier":   []any{map[string]any{"system": SystemEpisode, "value": ident}},
		"status":       status,
		// A custody suite is neither a healthcare setting nor the person's home: "field".
		"class":    coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "FLD", "field"),
		"type":     []any{map[string]any{"text": "Police custody healthcare episode"}},
		"subject":  b.patient,
		"period":   period,
		"location": []any{map[string]any{"location": site, "status": locStatus}},
	}
	if provider := firstNonEmpty(ep.Provider, b.opts.AgencyODS); provider != "" {
		res["serviceProvider"] = map[string]any{"type": "Organization", "identifier": map[string]any{"system": systemODSOrg, "value": provider}}
	}
	if ep.Reason != "" {
		res["reasonCode"] = []any{map[string]any{"text": ep.Reason}}
	}
	// A conditional update: the first posting for an episode creates the Encounter, later ones
	// (with the release time, say) update it.
	full := b.add(res, http.MethodPut, "Encounter?identifier="+SystemEpisode+"|"+ident, "")
	b.episode = map[string]any{"reference": full, "type": "Encounter"}
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

var registers = map[string]string{
	"gmc":         "https://fhir.hl7.org.uk/Id/gmc-number",
	"nmc":         "https://fhir.hl7.org.uk/Id/nmc-number",
	"hcpc":        "https://fhir.hl7.org.uk/Id/hcpc-number",
	"gphc":        "https://fhir.hl7.org.uk/Id/gphc-number",
	"sds-user-id": "https://fhir.nhs.uk/Id/sds-user-id",
}

// author is a logical reference to the practitioner: by professional registration when
// given, always with the name. The broker keeps no Practitioner directory of the EMR's staff.
func author(a Author) map[string]any {
	ref := map[string]any{"type": "Practitioner", "display": a.Name}
	if a.Role != "" {
		ref["display"] = a.Name + " (" + a.Role + ")"
	}
	if p := a.ProfessionalID; p != nil {
		ref["identifier"] = map[string]any{"system": registers[p.Register], "value": p.Value}
	}
	return ref
}

// code maps a source code. SNOMED CT and dm+d codes are kept as given; Read v2 and CTV3
// codes in the starter map gain their SNOMED CT coding first and keep the original after it;
// anything else is kept as given and reported as unmapped.
func (b *builder) code(c Coding) (cc map[string]any, labels []string, mapped bool) {
	sys := system(c.System)
	orig := coding(sys, c.Code, c.Display)
	switch sys {
	case SystemSNOMED, SystemDMD:
		cc = map[string]any{"coding": []any{orig}}
		labels = b.m.codes.Labels(c.Code)
		mapped = true
	default:
		if e, ok := b.m.codes.Lookup(sys, c.Code); ok {
			if c.Display == "" {
				orig["display"] = e.Display
			}
			cc = map[string]any{"coding": []any{coding(SystemSNOMED, e.SNOMED, e.SNOMEDDisplay), orig}}
			labels = e.Labels
			mapped = true
		} else {
			cc = map[string]any{"coding": []any{orig}}
		}
	}
	if c.Display != "" {
		cc["text"] = c.Display
	}
	return cc, labels, mapped
}

// coded sets a resource's code element, with its labels, or the unmapped tag and a warning.
func (b *builder) coded(res map[string]any, element, inputPath string, c Coding) {
	cc, labels, mapped := b.code(c)
	res[element] = cc
	if len(labels) > 0 {
		sec := make([]any, len(labels))
		for i, l := range labels {
			sec[i] = coding(SystemActCode, l, "")
		}
		res["meta"].(map[string]any)["security"] = sec
	}
	if !mapped {
		res["meta"].(map[string]any)["tag"] = []any{coding(SystemMappingTag, TagUnmapped, "Source code kept without a SNOMED CT translation")}
		b.warn(len(b.entries), inputPath, element, "%s code %q is not in the starter map; it is kept with its original system, not translated to SNOMED CT", describeSystem(system(c.System)), c.Code)
	}
}

func describeSystem(s string) string {
	switch s {
	case SystemReadV2:
		return "Read v2"
	case SystemCTV3:
		return "CTV3"
	}
	return s
}

func text(s string) []any {
	if s == "" {
		return nil
	}
	return []any{map[string]any{"text": s}}
}

// vital describes one vital sign: its LOINC and SNOMED CT codes and UCUM unit.
type vital struct {
	key                 string
	loinc, loincDisplay string
	sct, sctDisplay     string
	unit, unitDisplay   string
}

var (
	heartRate   = vital{"heart-rate", "8867-4", "Heart rate", "364075005", "Heart rate", "/min", "beats/minute"}
	respRate    = vital{"respiratory-rate", "9279-1", "Respiratory rate", "86290005", "Respiratory rate", "/min", "breaths/minute"}
	temperature = vital{"temperature", "8310-5", "Body temperature", "386725007", "Body temperature", "Cel", "degree Celsius"}
	spo2        = vital{"spo2", "2708-6", "Oxygen saturation in Arterial blood", "431314004", "Peripheral oxygen saturation", "%", "percent"}
	bpPanel     = vital{"blood-pressure", "85354-9", "Blood pressure panel with all children optional", "75367002", "Blood pressure", "mm[Hg]", "mmHg"}
	systolic    = vital{"", "8480-6", "Systolic blood pressure", "72313002", "Systolic arterial pressure", "mm[Hg]", "mmHg"}
	diastolic   = vital{"", "8462-4", "Diastolic blood pressure", "271650006", "Diastolic blood pressure", "mm[Hg]", "mmHg"}
)

// acvpu are the SNOMED CT findings of the ACVPU scale as NEWS2 uses it.
var acvpu = map[string][2]string{
	"A": {"248234008", "Mentally alert"},
	"C": {"1104271000000105", "New confusion"},
	"V": {"450847001", "Responds to voice"},
	"P": {"450848006", "Responds to pain"},
	"U": {"422768004", "Unresponsive"},
}

func (v vital) code() map[string]any {
	return map[string]any{"coding": []any{coding(SystemLOINC, v.loinc, v.loincDisplay), coding(SystemSNOMED, v.sct, v.sctDisplay)}}
}

func quantity(value any, v vital) map[string]any {
	return map[string]any{"value": value, "unit": v.unitDisplay, "system": SystemUCUM, "code": v.unit}
}

func category(code, display string) []any {
	return []any{concept("http://terminology.hl7.org/CodeSystem/observation-category", code, display)}
}

func (b *builder) observation(set ObservationSet, profile string, cat []any) map[string]any {
	return map[string]any{
		"resourceType":      "Observation",
		"meta":              meta(profile),
		"status":            "final",
		"category":          cat,
		"subject":           b.patient,
		"encounter":         b.episode,
		"effectiveDateTime": set.Time,
		"performer":         []any{author(set.Author)},
	}
}

func (b *builder) mapObservations(i int, set ObservationSet) {
	vitalsCat := category("vital-signs", "Vital Signs")
	entryID := func(key string) string {
		if set.ID == "" {
			return ""
		}
		return set.ID + "/" + key
	}
	var parts []any
	simple := func(v vital, value any) {
		o := b.observation(set, "UKCore-Observation-VitalSigns", vitalsCat)
		o["code"] = v.code()
		o["valueQuantity"] = quantity(value, v)
		parts = append(parts, map[string]any{"reference": b.create(o, entryID(v.key)), "type": "Observation"})
	}
	if set.HeartRate != nil {
		simple(heartRate, *set.HeartRate)
	}
	if set.RespiratoryRate != nil {
		simple(respRate, *set.RespiratoryRate)
	}
	if bp := set.BloodPressure; bp != nil {
		o := b.observation(set, "UKCore-Observation-VitalSigns", vitalsCat)
		o["code"] = bpPanel.code()
		o["component"] = []any{
			map[string]any{"code": systolic.code(), "valueQuantity": quantity(bp.Systolic, systolic)},
			map[string]any{"code": diastolic.code(), "valueQuantity": quantity(bp.Diastolic, diastolic)},
		}
		parts = append(parts, map[string]any{"reference": b.create(o, entryID(bpPanel.key)), "type": "Observation"})
	}
	if set.Temperature != nil {
		simple(temperature, *set.Temperature)
	}
	if set.SpO2 != nil {
		simple(spo2, *set.SpO2)
	}
	if set.ACVPU != "" {
		// ACVPU has no LOINC vital-sign code, so it is a UK Core Observation, not a VitalSigns one.
		o := b.observation(set, "UKCore-Observation", vitalsCat)
		o["code"] = concept(SystemSNOMED, "1104441000000107", "ACVPU (Alert New confusion Voice Pain Unresponsive) scale score")
		f := acvpu[set.ACVPU]
		o["valueCodeableConcept"] = concept(SystemSNOMED, f[0], f[1])
		parts = append(parts, map[string]any{"reference": b.create(o, entryID("acvpu")), "type": "Observation"})
	}
	if set.NEWS2 != nil {
		o := b.observation(set, "UKCore-Observation", category("survey", "Survey"))
		o["code"] = concept(SystemSNOMED, "1104051000000101", "Royal College of Physicians NEWS2 (National Early Warning Score 2) total score")
		o["valueInteger"] = *set.NEWS2
		if len(parts) > 0 {
			o["derivedFrom"] = parts
		}
		b.create(o, entryID("news2"))
	}
}

func (b *builder) mapProblem(i int, p Problem) {
	cat, catDisplay := "problem-list-item", "Problem List Item"
	if p.Category == "diagnosis" {
		cat, catDisplay = "encounter-diagnosis", "Encounter Diagnosis"
	}
	status := firstNonEmpty(p.Status, "active")
	verification := firstNonEmpty(p.Verification, "confirmed")
	res := map[string]any{
		"resourceType":       "Condition",
		"meta":               meta("UKCore-Condition"),
		"clinicalStatus":     concept("http://terminology.hl7.org/CodeSystem/condition-clinical", status, ""),
		"verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", verification, ""),
		"category":           []any{concept("http://terminology.hl7.org/CodeSystem/condition-category", cat, catDisplay)},
		"subject":            b.patient,
		"encounter":          b.episode,
		"recordedDate":       p.Time,
		"recorder":           author(p.Author),
	}
	if p.Onset != "" {
		res["onsetDateTime"] = p.Onset
	}
	if p.Note != "" {
		res["note"] = []any{map[string]any{"text": p.Note, "time": p.Time}}
	}
	b.coded(res, "code", fmt.Sprintf("problems[%d].code", i), p.Code)
	b.create(res, p.ID)
}

var routes = map[string][2]string{
	"oral":          {"26643006", "Oral route"},
	"sublingual":    {"37839007", "Sublingual route"},
	"buccal":        {"54471007", "Buccal route"},
	"inhalation":    {"447694001", "Respiratory tract route"},
	"intramuscular": {"78421000", "Intramuscular route"},
	"intravenous":   {"47625008", "Intravenous route"},
	"subcutaneous":  {"34206005", "Subcutaneous route"},
	"topical":       {"6064005", "Topical route"},
	"nasal":         {"46713006", "Nasal route"},
	"transdermal":   {"45890007", "Transdermal route"},
}

var unitDisplays = map[string]string{
	"mg": "milligram", "g": "gram", "ug": "microgram", "mL": "millilitre", "[iU]": "international unit",
	"{tablet}": "tablet", "{capsule}": "capsule", "{puff}": "puff", "{patch}": "patch",
}

func (md Medication) dosage() map[string]any {
	d := map[string]any{}
	if md.Instructions != "" {
		d["text"] = md.Instructions
	}
	if r, ok := routes[md.Route]; ok {
		d["route"] = concept(SystemSNOMED, r[0], r[1])
	}
	if md.Dose != nil {
		d["dose"] = map[string]any{"value": md.Dose.Value, "unit": unitDisplays[md.Dose.Unit], "system": SystemUCUM, "code": md.Dose.Unit}
	}
	return d
}

func (b *builder) mapMedication(i int, md Medication) {
	path := fmt.Sprintf("medications[%d].code", i)
	var res map[string]any
	dosage := md.dosage()
	if md.Kind == "administered" {
		res = map[string]any{
			"resourceType":      "MedicationAdministration",
			"meta":              meta("UKCore-MedicationAdministration"),
			"status":            "completed",
			"subject":           b.patient,
			"context":           b.episode,
			"effectiveDateTime": md.Time,
			"performer":         []any{map[string]any{"actor": author(md.Author)}},
		}
		if len(dosage) > 0 {
			res["dosage"] = dosage
		}
		b.coded(res, "medicationCodeableConcept", path, md.Code)
	} else {
		res = map[string]any{
			"resourceType": "MedicationStatement",
			"meta":         meta("UKCore-MedicationStatement"),
			"status":       firstNonEmpty(md.Status, "active"),
			"category":     concept("http://terminology.hl7.org/CodeSystem/medication-statement-category", "patientspecified", "Patient Specified"),
			"subject":      b.patient,
			"context":      b.episode,
			"dateAsserted": md.Time,
			// Declared by the person, recorded by the professional.
			"informationSource": b.patient,
		}
		if len(dosage) > 0 {
			if dose, ok := dosage["dose"]; ok {
				delete(dosage, "dose")
				dosage["doseAndRate"] = []any{map[string]any{"doseQuantity": dose}}
			}
			res["dosage"] = []any{dosage}
		}
		b.coded(res, "medicationCodeableConcept", path, md.Code)
	}
	var notes []any
	if md.Kind == "declared" {
		// MedicationStatement has no recorder element: say who recorded the declaration.
		notes = append(notes, map[string]any{"text": "Declared to " + author(md.Author)["display"].(string), "time": md.Time})
	}
	if md.Note != "" {
		notes = append(notes, map[string]any{"text": md.Note, "time": md.Time})
	}
	if len(notes) > 0 {
		res["note"] = notes
	}
	b.create(res, md.ID)
}

func (b *builder) mapAllergy(i int, a Allergy) {
	res := map[string]any{
		"resourceType":       "AllergyIntolerance",
		"meta":               meta("UKCore-AllergyIntolerance"),
		"clinicalStatus":     concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", firstNonEmpty(a.Status, "active"), ""),
		"verificationStatus": concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", firstNonEmpty(a.Verification, "confirmed"), ""),
		"patient":            b.patient,
		"encounter":          b.episode,
		"recordedDate":       a.Time,
		"recorder":           author(a.Author),
	}
	if a.Type != "" {
		res["type"] = a.Type
	}
	if a.Category != "" {
		res["category"] = []any{a.Category}
	}
	if a.Criticality != "" {
		res["criticality"] = a.Criticality
	}
	if r := a.Reaction; r != nil {
		rx := map[string]any{"manifestation": text(r.Description)}
		if r.Severity != "" {
			rx["severity"] = r.Severity
		}
		res["reaction"] = []any{rx}
	}
	if a.Note != "" {
		res["note"] = []any{map[string]any{"text": a.Note, "time": a.Time}}
	}
	b.coded(res, "code", fmt.Sprintf("allergies[%d].code", i), a.Code)
	b.create(res, a.ID)
}

// provenance records that the broker produced these resources from clinical entries, on
// behalf of the posting agency, in the model of the broker's normalisation Provenance.
func (b *builder) provenance() {
	recorded := b.opts.Recorded
	if recorded.IsZero() {
		recorded = time.Now()
	}
	agents := []any{map[string]any{
		"type": concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "assembler", "Assembler"),
		"who":  map[string]any{"type": "Device", "display": "hjbroker"},
	}}
	if b.opts.AgencyODS != "" {
		agents = append(agents, map[string]any{
			"type": concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"),
			"who":  map[string]any{"type": "Organization", "identifier": map[string]any{"system": systemODSOrg, "value": b.opts.AgencyODS}},
		})
	}
	p := map[string]any{
		"resourceType": "Provenance",
		"meta":         meta("UKCore-Provenance"),
		"target":       b.targets,
		"recorded":     recorded.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"activity":     concept("http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "transform", "Transform/Translate Record Lifecycle Event"),
		"policy":       []any{MappingURL},
		"agent":        agents,
	}
	if src := b.opts.Source; src != "" {
		p["entity"] = []any{map[string]any{"role": "source", "what": map[string]any{
			"identifier": map[string]any{"system": systemSource, "value": src},
			"display":    "clinical entries from " + src,
		}}}
	}
	full := b.fullURL()
	b.entries = append(b.entries, map[string]any{"fullUrl": full, "resource": p, "request": map[string]any{"method": http.MethodPost, "url": "Provenance"}})
	b.sources = append(b.sources, "")
}

package spinesim

// The test patients (docs/spine.md describes each). All numbers but InvalidNumber pass the
// modulus 11 check.
const (
	// NormalPatient is registered with GP practice NormalGP; SCR permission Yes, with
	// allergies and medication as XHTML tables and a coded Condition and Observation.
	NormalPatient = "9000000009"
	// RestrictedPatient is restricted (R): the PDS sends no address, telecom or GP.
	RestrictedPatient = "9000000017"
	// SupersededNumber was merged into ReplacementNumber: reading it returns that record.
	SupersededNumber  = "9000000025"
	ReplacementNumber = "9000000033"
	// OptedOutPatient has SCR permission No.
	OptedOutPatient = "9000000041"
	// AskPatient has SCR permission Ask.
	AskPatient = "9000000068"
	// UnknownPatient is a valid number the PDS does not know.
	UnknownPatient = "9000000076"
	// InvalidNumber fails the modulus 11 check.
	InvalidNumber = "9000000000"
	// SlowSCRPatient's SCR lookup hangs for Options.SlowDelay; permission Ask.
	SlowSCRPatient = "9000000084"
	// GarbageSCRPatient's SCR Bundle is not JSON; permission Yes.
	GarbageSCRPatient = "9000000092"
	// SlowPDSPatient's PDS read hangs for Options.SlowDelay.
	SlowPDSPatient = "9000000106"
	// GarbagePDSPatient's PDS read answers 200 with a body that is not JSON.
	GarbagePDSPatient = "9000000114"
	// NoSCRPatient has no Summary Care Record.
	NoSCRPatient = "9000000122"
	// ThrottledPatient's PDS read answers 429 (Retry-After: 1) to the first attempt of every
	// X-Request-ID, and normally to a retry with the same X-Request-ID.
	ThrottledPatient = "9000000130"

	// NormalGP is the ODS code of the practice the patients with a GP are registered with.
	NormalGP = "Y12345"
)

type patient struct {
	nhs          string
	prefix       string
	given        []string
	family       string
	gender       string
	birthDate    string
	line         []string
	postcode     string
	phone        string
	gp           string
	restricted   bool
	supersededBy string
	permission   string // "" when the person has no SCR
	pdsSlow      bool
	pdsGarbage   bool
	throttled    bool
	scrSlow      bool
	scrGarbage   bool
}

var leeds = []string{"1 Trevelyan Square", "Boar Lane", "Leeds"}

// testPatients builds the fixed set; a function, so no package state is shared or changed.
func testPatients() map[string]*patient {
	ps := []*patient{
		{nhs: NormalPatient, prefix: "Mrs", given: []string{"Jane"}, family: "Smith", gender: "female", birthDate: "1985-10-22",
			line: leeds, postcode: "LS1 6AE", phone: "01632960587", gp: NormalGP, permission: "Yes"},
		{nhs: RestrictedPatient, prefix: "Ms", given: []string{"Ann"}, family: "Hidden", gender: "female", birthDate: "1990-03-14",
			restricted: true, permission: "Yes"},
		{nhs: SupersededNumber, supersededBy: ReplacementNumber},
		{nhs: ReplacementNumber, prefix: "Mr", given: []string{"Peter", "James"}, family: "Merged", gender: "male", birthDate: "1979-01-05",
			line: []string{"22 Market Street", "Anytown"}, postcode: "AN1 2BC", phone: "01632960111", gp: NormalGP, permission: "Yes"},
		{nhs: OptedOutPatient, prefix: "Mr", given: []string{"Owen"}, family: "Optout", gender: "male", birthDate: "1988-07-30",
			line: []string{"3 Station Road", "Anytown"}, postcode: "AN1 3DE", gp: NormalGP, permission: "No"},
		{nhs: AskPatient, prefix: "Ms", given: []string{"Alice"}, family: "Asking", gender: "female", birthDate: "1995-12-01",
			line: []string{"9 Church Lane", "Anytown"}, postcode: "AN2 4FG", phone: "01632960222", gp: NormalGP, permission: "Ask"},
		{nhs: SlowSCRPatient, prefix: "Mr", given: []string{"Simon"}, family: "Slow", gender: "male", birthDate: "1970-02-02",
			line: []string{"5 Mill Road", "Anytown"}, postcode: "AN3 5HJ", gp: NormalGP, permission: "Ask", scrSlow: true},
		{nhs: GarbageSCRPatient, prefix: "Mr", given: []string{"Gary"}, family: "Garbled", gender: "male", birthDate: "1982-04-04",
			line: []string{"7 Bridge Street", "Anytown"}, postcode: "AN4 6KL", gp: NormalGP, permission: "Yes", scrGarbage: true},
		{nhs: SlowPDSPatient, given: []string{"Sally"}, family: "Sluggish", gender: "female", birthDate: "1975-05-05", pdsSlow: true},
		{nhs: GarbagePDSPatient, given: []string{"Greg"}, family: "Mangled", gender: "male", birthDate: "1966-06-06", pdsGarbage: true},
		{nhs: NoSCRPatient, prefix: "Mx", given: []string{"Noel"}, family: "Nosummary", gender: "other", birthDate: "2001-08-08",
			line: []string{"11 High Street", "Anytown"}, postcode: "AN5 7MN", gp: NormalGP},
		{nhs: ThrottledPatient, prefix: "Mr", given: []string{"Terry"}, family: "Throttle", gender: "male", birthDate: "1993-09-09",
			line: []string{"13 Park Road", "Anytown"}, postcode: "AN6 8PQ", gp: NormalGP, permission: "Yes", throttled: true},
	}
	out := make(map[string]*patient, len(ps))
	for _, p := range ps {
		out[p.nhs] = p
	}
	return out
}

const (
	systemVerificationPDS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
	extVerification       = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
	systemConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
)

// pdsPatient renders a record as the PDS sends it: id the NHS number, the verification
// status in the PDS's spelling (old code system URI, new-style code), one security label, and
// for a restricted record no address, telecom or GP.
func (p *patient) pdsPatient() map[string]any {
	label := map[string]any{"system": systemConfidentiality, "code": "U", "display": "unrestricted"}
	if p.restricted {
		label = map[string]any{"system": systemConfidentiality, "code": "R", "display": "restricted"}
	}
	name := map[string]any{"id": "name-1", "use": "usual", "period": map[string]any{"start": "2010-01-01"}, "family": p.family, "given": strs(p.given)}
	if p.prefix != "" {
		name["prefix"] = []any{p.prefix}
	}
	res := map[string]any{
		"resourceType": "Patient",
		"id":           p.nhs,
		"meta":         map[string]any{"versionId": "2", "security": []any{label}},
		"identifier": []any{map[string]any{
			"system": "https://fhir.nhs.uk/Id/nhs-number",
			"value":  p.nhs,
			"extension": []any{map[string]any{
				"url": extVerification,
				"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{
					"system": systemVerificationPDS, "version": "1.0.0", "code": "01", "display": "Number present and verified",
				}}},
			}},
		}},
		"name":      []any{name},
		"gender":    p.gender,
		"birthDate": p.birthDate,
	}
	if p.restricted {
		return res
	}
	if len(p.line) > 0 {
		res["address"] = []any{map[string]any{"id": "addr-1", "use": "home", "period": map[string]any{"start": "2010-01-01"},
			"line": strs(p.line), "postalCode": p.postcode}}
	}
	if p.phone != "" {
		res["telecom"] = []any{map[string]any{"id": "tel-1", "period": map[string]any{"start": "2010-01-01"}, "system": "phone", "value": p.phone, "use": "home"}}
	}
	if p.gp != "" {
		res["generalPractitioner"] = []any{map[string]any{"id": "gp-1", "type": "Organization",
			"identifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": p.gp, "period": map[string]any{"start": "2010-01-01"}}}}
	}
	return res
}

func strs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Package ld holds the Liaison and Diversion (L&D) pathway as data and pure functions: the
// identification, screening and assessment Questionnaires, the directory of support services
// that referrals go to, and the extraction of a completed QuestionnaireResponse into UK Core
// Flags, Observations, Conditions, Consents, ServiceRequests and Tasks.
package ld

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed questionnaires/*.json directory/*.json
var shipped embed.FS

// Canonical URLs and code systems of the pathway.
const (
	BaseURL = "https://hjbroker.dev/fhir"

	IdentificationURL = BaseURL + "/Questionnaire/ld-identification"
	ScreeningURL      = BaseURL + "/Questionnaire/ld-screening"
	AssessmentURL     = BaseURL + "/Questionnaire/ld-assessment"

	SystemPathway      = BaseURL + "/CodeSystem/ld-referral-pathway"
	SystemDomain       = BaseURL + "/CodeSystem/ld-vulnerability-domain"
	SystemRisk         = BaseURL + "/CodeSystem/ld-risk-level"
	SystemAuditC       = BaseURL + "/CodeSystem/audit-c"
	SystemObservation  = BaseURL + "/CodeSystem/ld-observation"
	SystemCourt        = BaseURL + "/CodeSystem/ld-court-recommendation"
	SystemAnswer       = BaseURL + "/CodeSystem/ld-answer"
	SystemAgencyKind   = BaseURL + "/CodeSystem/agency-kind"
	SystemODS          = "https://fhir.nhs.uk/Id/ods-organization-code"
	SystemSNOMED       = "http://snomed.info/sct"
	SystemFlagBaRS     = "https://fhir.nhs.uk/CodeSystem/flag-categories-bars"
	SystemSafeguarding = "https://fhir.nhs.uk/CodeSystem/safeguarding-codes-bars"

	// PathwayProbation is the referral pathway whose ServiceRequests come with a Task for
	// the probation provider to work.
	PathwayProbation = "probation"
)

// Questionnaires returns the shipped Questionnaires, ordered by id.
func Questionnaires() ([]map[string]any, error) {
	return readDir("questionnaires")
}

// Directory returns the shipped support-service directory: Organizations (with ODS codes)
// and the HealthcareServices they provide, in that order.
func Directory() ([]map[string]any, error) {
	bundles, err := readDir("directory")
	if err != nil {
		return nil, err
	}
	var orgs, services []map[string]any
	for _, b := range bundles {
		entries, _ := b["entry"].([]any)
		for i, e := range entries {
			res, _ := obj(e)["resource"].(map[string]any)
			switch res["resourceType"] {
			case "Organization":
				orgs = append(orgs, res)
			case "HealthcareService":
				services = append(services, res)
			default:
				return nil, fmt.Errorf("directory: entry %d is a %v; only Organization and HealthcareService belong there", i, res["resourceType"])
			}
		}
	}
	return append(orgs, services...), nil
}

func readDir(dir string) ([]map[string]any, error) {
	files, err := fs.Glob(shipped, dir+"/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []map[string]any
	for _, f := range files {
		raw, err := shipped.ReadFile(f)
		if err != nil {
			return nil, err
		}
		m, err := Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(f), err)
		}
		if _, ok := m["id"].(string); !ok && m["resourceType"] != "Bundle" {
			return nil, fmt.Errorf("%s: a shipped resource needs a fixed id", path.Base(f))
		}
		out = append(out, m)
	}
	return out, nil
}

// Decode reads FHIR JSON keeping numbers as json.Number, as the broker's store does.
func Decode(raw []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// NewerVersion reports whether version a is newer than b, comparing dot-separated numeric
// parts ("1.10.0" > "1.9.2"); a part that is not a number compares as text.
func NewerVersion(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x == y {
			continue
		}
		nx, ex := strconv.Atoi(x)
		ny, ey := strconv.Atoi(y)
		if ex == nil && ey == nil {
			return nx > ny
		}
		if x == "" || y == "" {
			return y == ""
		}
		return x > y
	}
	return false
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

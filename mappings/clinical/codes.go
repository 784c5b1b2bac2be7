package clinical

import (
	"encoding/json"
	"fmt"
)

// Code systems of the source codes the format names by alias.
const (
	SystemSNOMED = "http://snomed.info/sct"
	SystemReadV2 = "http://read.info/readv2"
	SystemCTV3   = "http://read.info/ctv3"
	SystemDMD    = "https://dmd.nhs.uk"
	SystemLOINC  = "http://loinc.org"
	SystemUCUM   = "http://unitsofmeasure.org"
	// SystemActCode carries the sensitivity labels put in meta.security.
	SystemActCode = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// aliases are the short code system names the format accepts.
var aliases = map[string]string{"snomed": SystemSNOMED, "read2": SystemReadV2, "ctv3": SystemCTV3, "dmd": SystemDMD}

// CodeEntry maps one source code to one SNOMED CT concept.
type CodeEntry struct {
	System        string   `json:"system"`
	Code          string   `json:"code"`
	Display       string   `json:"display"`
	SNOMED        string   `json:"snomed"`
	SNOMEDDisplay string   `json:"snomedDisplay"`
	Labels        []string `json:"labels,omitempty"`
}

// CodeMap is the starter map from Read v2 / CTV3 to SNOMED CT (codes.json).
type CodeMap struct {
	Description string      `json:"description"`
	Entries     []CodeEntry `json:"entries"`

	bySource map[string]*CodeEntry
	labels   map[string][]string // SNOMED code -> sensitivity labels
}

func parseCodeMap(raw []byte) (*CodeMap, error) {
	var m CodeMap
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding the code map: %w", err)
	}
	m.bySource = map[string]*CodeEntry{}
	m.labels = map[string][]string{}
	for i := range m.Entries {
		e := &m.Entries[i]
		key := e.System + "|" + e.Code
		if _, dup := m.bySource[key]; dup {
			return nil, fmt.Errorf("code map: %s listed twice", key)
		}
		m.bySource[key] = e
		if len(e.Labels) > 0 {
			m.labels[e.SNOMED] = e.Labels
		}
	}
	return &m, nil
}

// Lookup finds the SNOMED CT concept for a source code.
func (m *CodeMap) Lookup(system, code string) (*CodeEntry, bool) {
	e, ok := m.bySource[system+"|"+code]
	return e, ok
}

// Labels returns the sensitivity labels of a SNOMED CT concept the map knows.
func (m *CodeMap) Labels(snomed string) []string { return m.labels[snomed] }

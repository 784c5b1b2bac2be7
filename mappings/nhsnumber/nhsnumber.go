// Package nhsnumber holds what the source mappings share about NHS numbers: the identifier
// system, the check-digit rule and the verification status extension with its spellings
// normalised to the England code system (UK Core's current one). The spellings come from
// the same data the validator uses (profiles/ukcore), so a mapping and the write path agree.
package nhsnumber

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"

	"github.com/hjbroker/hjbroker/profiles/ukcore"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

// System is the NHS number identifier system.
const System = "https://fhir.nhs.uk/Id/nhs-number"

// Valid applies the modulus 11 check; the reason says what is wrong.
func Valid(s string) (bool, string) { return validate.ValidNHSNumber(s) }

// Statuses normalises NHS number verification status codings.
type Statuses struct {
	v validate.Verification
}

// Load reads the verification status spellings from the UK Core data.
func Load() (*Statuses, error) {
	raw, err := fs.ReadFile(ukcore.FS(), "nhs-number-verification.json")
	if err != nil {
		return nil, fmt.Errorf("reading the NHS number verification spellings: %w", err)
	}
	var s Statuses
	if err := json.Unmarshal(raw, &s.v); err != nil {
		return nil, fmt.Errorf("decoding the NHS number verification spellings: %w", err)
	}
	return &s, nil
}

// Extension is the verification status extension URL.
func (s *Statuses) Extension() string { return s.v.Extension }

// Coding returns the England coding for a status given in any of the spellings in use:
// the England code ("01"), the retired system with a current code (as PDS sends it), the
// retired string codes ("number-present-and-verified", as BaRS examples send them), or a
// Welsh or NullFlavor coding, which are kept. system may be empty for a bare code. ok is
// false when the code is none of these.
func (s *Statuses) Coding(system, code string) (coding map[string]any, ok bool) {
	switch {
	case system == "" || system == s.v.System || system == s.v.RetiredSystem:
		if m, retired := s.v.RetiredCodes[code]; retired {
			if sys, c, cut := strings.Cut(m, "|"); cut {
				return map[string]any{"system": sys, "code": c}, true
			}
			code = m
		}
		d, known := s.v.Displays[code]
		if !known {
			return nil, false
		}
		return map[string]any{"system": s.v.System, "code": code, "display": d}, true
	}
	for _, a := range s.v.Accepted {
		if a == system {
			return map[string]any{"system": system, "code": code}, true
		}
	}
	return nil, false
}

// Identifier builds the NHS number identifier, with the verification status extension when
// a status coding is given.
func (s *Statuses) Identifier(nhsNumber string, status map[string]any) map[string]any {
	id := map[string]any{"system": System, "value": nhsNumber}
	if status != nil {
		id["extension"] = []any{map[string]any{
			"url":                  s.v.Extension,
			"valueCodeableConcept": map[string]any{"coding": []any{status}},
		}}
	}
	return id
}

// Format spaces a ten-digit NHS number 3-3-4 ("943 476 5919"), the way NHS services show
// it to people; anything else is returned as it is.
func Format(n string) string {
	if len(n) == 10 {
		return n[:3] + " " + n[3:6] + " " + n[6:]
	}
	return n
}

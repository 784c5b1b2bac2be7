package validate

import (
	"fmt"
	"strings"
)

// ValidNHSNumber applies the NHS Data Dictionary check: ten ASCII digits whose tenth is the
// modulus 11 check digit of the first nine (weights 10 down to 2; 11 becomes 0; 10 means no
// valid number). It returns a reason when the number is not valid.
func ValidNHSNumber(s string) (bool, string) {
	if len(s) != 10 {
		return false, "an NHS number has exactly 10 digits"
	}
	sum := 0
	for i := 0; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false, "an NHS number has only digits (no spaces or other characters)"
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 || check != int(s[9]-'0') {
		return false, "the check digit (modulus 11) is wrong"
	}
	return true, ""
}

// ValidODSCode checks the shape of an ODS organisation or site code: 3 to 10 upper-case
// letters and digits.
func ValidODSCode(s string) (bool, string) {
	if len(s) < 3 || len(s) > 10 {
		return false, "an ODS code has 3 to 10 characters"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false, "an ODS code has only upper-case letters and digits"
		}
	}
	return true, ""
}

// Verification describes the NHS number verification status extension and the spellings in
// use: the current England code system (the normalised form), and the retired code system,
// whose string codes map to current codes and which PDS still sends with current codes.
type Verification struct {
	// Extension is the extension URL.
	Extension string `json:"extension"`
	// System is the current England code system every spelling is normalised to.
	System string `json:"system"`
	// Accepted lists the code systems accepted as they are (England, Wales, NullFlavor).
	Accepted []string `json:"accepted,omitempty"`
	// RetiredSystem is the retired code system URL.
	RetiredSystem string `json:"retiredSystem"`
	// RetiredCodes maps each retired string code to its current code, as "code" (in System)
	// or "system|code".
	RetiredCodes map[string]string `json:"retiredCodes"`
	// Displays gives the display of each current code of System.
	Displays map[string]string `json:"displays,omitempty"`
}

func (vf *Verification) check() error {
	if vf.Extension == "" || vf.System == "" || vf.RetiredSystem == "" {
		return fmt.Errorf("validate: NHS number verification: extension, system and retiredSystem are required")
	}
	return nil
}

// normalizeCoding rewrites one coding of the retired spellings to the current one and says
// what it was.
func (vf *Verification) normalizeCoding(c map[string]any) (bool, string) {
	sys, _ := c["system"].(string)
	code, _ := c["code"].(string)
	if sys != vf.RetiredSystem || code == "" {
		return false, ""
	}
	was := sys + "|" + code
	newSys, newCode := vf.System, code
	if m, ok := vf.RetiredCodes[code]; ok {
		if s, cd, ok := strings.Cut(m, "|"); ok {
			newSys, newCode = s, cd
		} else {
			newCode = m
		}
	} else if _, current := vf.Displays[code]; !current && len(vf.Displays) > 0 {
		return false, "" // not a code of either spelling: the binding check reports it
	}
	c["system"], c["code"] = newSys, newCode
	if d, ok := vf.Displays[newCode]; ok && newSys == vf.System {
		c["display"] = d
	}
	return true, was
}

// normalizeValue rewrites the codings of an extension's value in place.
func (vf *Verification) normalizeValue(ext map[string]any) (changed bool, was []string) {
	var codings []any
	if cc, ok := ext["valueCodeableConcept"].(map[string]any); ok {
		codings, _ = cc["coding"].([]any)
	} else if c, ok := ext["valueCoding"].(map[string]any); ok {
		codings = []any{c}
	}
	for _, x := range codings {
		if c, ok := x.(map[string]any); ok {
			if ch, w := vf.normalizeCoding(c); ch {
				changed = true
				was = append(was, w)
			}
		}
	}
	return changed, was
}

// Normalize rewrites retired NHS number verification status spellings anywhere in res
// (contained resources and Bundle entries included) to the current England code system, so
// the write path stores one spelling. It reports whether anything changed.
func (v *Validator) Normalize(res map[string]any) (changed bool) {
	if v.verif == nil {
		return false
	}
	var walk func(x any)
	walk = func(x any) {
		switch n := x.(type) {
		case map[string]any:
			if u, _ := n["url"].(string); u == v.verif.Extension {
				if ch, _ := v.verif.normalizeValue(n); ch {
					changed = true
				}
				return
			}
			for _, c := range n {
				walk(c)
			}
		case []any:
			for _, c := range n {
				walk(c)
			}
		}
	}
	walk(res)
	return changed
}

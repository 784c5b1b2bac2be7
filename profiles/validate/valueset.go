package validate

import "github.com/hjbroker/hjbroker/profiles/questionnaire"

// valueSet is a ValueSet prepared for membership tests.
type valueSet struct {
	url     string
	list    []questionnaire.Coding // enumerated codes, in order
	retired bool
	whole   map[string]bool            // systems included entirely
	codes   map[string]map[string]bool // system -> codes
	display map[string]map[string]string
}

func newValueSet(vs ValueSet) *valueSet {
	s := &valueSet{url: vs.URL, retired: vs.Status == "retired", whole: map[string]bool{},
		codes: map[string]map[string]bool{}, display: map[string]map[string]string{}}
	for _, in := range vs.Include {
		if len(in.Codes) == 0 {
			s.whole[in.System] = true
			continue
		}
		if s.codes[in.System] == nil {
			s.codes[in.System] = map[string]bool{}
			s.display[in.System] = map[string]string{}
		}
		for _, c := range in.Codes {
			s.codes[in.System][c.Code] = true
			s.list = append(s.list, questionnaire.Coding{System: in.System, Code: c.Code, Display: c.Display})
			if c.Display != "" {
				s.display[in.System][c.Code] = c.Display
			}
		}
	}
	return s
}

// contains reports membership. A bare code (system "", from a code element) is a member when
// any included system lists it or when the value set includes a whole system.
func (s *valueSet) contains(system, code string) bool {
	if code == "" {
		return false
	}
	if system == "" {
		if len(s.whole) > 0 {
			return true
		}
		for _, cs := range s.codes {
			if cs[code] {
				return true
			}
		}
		return false
	}
	return s.whole[system] || s.codes[system][code]
}

// memberOf answers the FHIRPath memberOf() function from the bundled value sets.
func (v *Validator) memberOf(system, code, url string) (member, known bool) {
	s, ok := v.vsets[url]
	if !ok {
		return false, false
	}
	return s.contains(system, code), true
}

// valueSetCodes lists an enumerated bundled value set for answerValueSet checks; value sets
// that include whole code systems cannot be listed.
func (v *Validator) valueSetCodes(url string) ([]questionnaire.Coding, bool) {
	s, ok := v.vsets[url]
	if !ok || len(s.whole) > 0 {
		return nil, false
	}
	return s.list, true
}

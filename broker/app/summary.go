package app

import "github.com/hjbroker/hjbroker/profiles/r4model"

// summaries answers the engine's _summary questions: mandatory elements come from the type
// model's cardinalities, summary elements from the specification's isSummary flags.
type summaries struct {
	model *r4model.Model
	flags interface {
		SummaryElements(resourceType string) []string
	}
}

func (s summaries) MandatoryElements(typ string) []string {
	t, ok := s.model.Type(typ)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range t.Elements {
		if e.Min > 0 {
			out = append(out, e.Name)
		}
	}
	return out
}

func (s summaries) SummaryElements(typ string) []string {
	if s.flags == nil {
		return nil
	}
	return s.flags.SummaryElements(typ)
}

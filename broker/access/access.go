// Package access enforces disclosure decisions on what the FHIR API returns: for each resource
// leaving the broker it finds the patient the resource is about, loads that patient's Consents
// (once per request), asks the policy engine, and returns the copy to disclose (redacted for
// restricted patients) or withholds it.
package access

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/store"
)

// Deciders decide one disclosure.
type Decider interface {
	Decide(req policy.Request, res map[string]any, consents []map[string]any) policy.Decision
}

// Guard implements engine.Discloser over the policy engine and the store.
type Guard struct {
	policy Decider
	store  store.Store
	params search.Params
}

// New returns a guard.
func New(p Decider, st store.Store, params search.Params) *Guard {
	return &Guard{policy: p, store: st, params: params}
}

// maxConsents bounds the Consents read for one patient.
const maxConsents = 200

// Session returns a per-request discloser that reads each patient's Consents once. The
// service's own operators are not filtered (everything they do is audited), so they get none.
func (g *Guard) Session(ctx context.Context, who *engine.Access) engine.DisclosureSession {
	if who.AgencyKind == config.KindBroker {
		return nil
	}
	return &session{g: g, who: who, consents: map[string][]map[string]any{}}
}

type session struct {
	g        *Guard
	who      *engine.Access
	mu       sync.Mutex
	consents map[string][]map[string]any
	patients []string
	seen     map[string]bool
	btg      bool
}

// Patients lists the patients whose data this session disclosed.
func (s *session) Patients() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.patients...)
}

// BreakGlassUsed reports whether any disclosure needed the emergency override.
func (s *session) BreakGlassUsed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.btg
}

// Disclose decides whether body (a stored resource) may be returned, and returns the bytes to
// return (a redacted copy for restricted patients).
func (s *session) Disclose(ctx context.Context, body []byte) (engine.Disclosure, error) {
	res, err := resource.Decode(body, resource.Limits{})
	if err != nil {
		return engine.Disclosure{}, fmt.Errorf("reading stored resource: %w", err)
	}
	patient := PatientOf(res)
	var consents []map[string]any
	if patient != "" {
		consents, err = s.patientConsents(ctx, patient)
		if err != nil {
			return engine.Disclosure{}, err
		}
	}
	d := s.g.policy.Decide(policy.Request{
		Agency:     policy.Agency{ID: s.who.AgencyID, Kind: s.who.AgencyKind, ODS: s.who.AgencyODS},
		ClientID:   s.who.ClientID,
		Purpose:    s.who.Purpose,
		BreakGlass: s.who.BreakGlass,
	}, res, consents)
	out := engine.Disclosure{Permit: d.Permit, BreakGlass: d.BreakGlass, Patient: patient}
	for _, r := range d.Reasons {
		out.Reasons = append(out.Reasons, string(r.Kind)+" "+r.ID+": "+r.Text)
	}
	if !d.Permit {
		return out, nil
	}
	s.mu.Lock()
	if patient != "" && !s.seen[patient] {
		if s.seen == nil {
			s.seen = map[string]bool{}
		}
		s.seen[patient] = true
		s.patients = append(s.patients, patient)
	}
	s.btg = s.btg || d.BreakGlass
	s.mu.Unlock()
	out.Body = body
	if d.Redacted && d.Resource != nil {
		out.Body = resource.Encode(d.Resource)
		out.Redacted = true
	}
	return out, nil
}

func (s *session) patientConsents(ctx context.Context, patient string) ([]map[string]any, error) {
	s.mu.Lock()
	c, ok := s.consents[patient]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	q, err := search.Parse("Consent", url.Values{"patient": {patient}}, s.g.params, search.Options{Strict: true, MaxCount: maxConsents, DefaultCount: maxConsents})
	if err != nil {
		return nil, fmt.Errorf("finding Consents of %s: %w", patient, err)
	}
	c, err = store.SearchJSON(ctx, s.g.store, q, maxConsents)
	if err != nil {
		return nil, fmt.Errorf("finding Consents of %s: %w", patient, err)
	}
	s.mu.Lock()
	s.consents[patient] = c
	s.mu.Unlock()
	return c, nil
}

// PatientOf returns the patient a resource is about ("Patient/123"), or "" when it is about
// none: a Patient is about itself; other resources name theirs in subject, patient, for or
// beneficiary (the R4 patient compartment's common links).
func PatientOf(res map[string]any) string {
	if resource.Type(res) == "Patient" {
		if id := resource.ID(res); id != "" {
			return "Patient/" + id
		}
		return ""
	}
	for _, k := range []string{"patient", "subject", "for", "beneficiary"} {
		ref, _ := res[k].(map[string]any)
		s, _ := ref["reference"].(string)
		if i := strings.Index(s, "Patient/"); i >= 0 {
			rest := s[i:]
			if j := strings.Index(rest[len("Patient/"):], "/"); j >= 0 {
				rest = rest[:len("Patient/")+j]
			}
			return rest
		}
	}
	return ""
}

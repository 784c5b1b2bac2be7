// Package capability describes, per agency and per API client, what the broker lets it do:
// one CapabilityStatement each (engine.CapabilityView), generated from the agency
// configuration. The interactions follow from the client's SMART scopes exactly as the engine
// enforces them; each resource type's documentation says what the sharing rules let the
// agency see of it, for which purposes of use, and on what consent.
//
// Statements are served at CapabilityStatement/agency-{id} (the union of the agency's
// clients) and CapabilityStatement/client-{id}. An agency's client may read its own agency's
// and its own; operators (agency kind broker) and the broker itself may read all.
package capability

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/hjbroker/hjbroker/broker/auth"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
)

// Id prefixes of the statements.
const (
	AgencyPrefix = "agency-"
	ClientPrefix = "client-"
)

// PurposeExtension carries, on rest.security, one purpose of use (a v3-ActReason coding) the
// agency's or client's requests may claim in X-Purpose-Of-Use.
const PurposeExtension = "https://hjbroker.dev/fhir/StructureDefinition/purpose-of-use"

const actReason = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

// Clients finds a client as the authenticator registered it: the scopes and purposes that
// enforcement uses.
type Clients interface {
	Client(id string) (*auth.Client, bool)
}

// Statements builds the views of one configuration.
type Statements struct {
	cfg      *config.Config
	clients  Clients
	security map[string]any
}

// New returns the statements of cfg; security is the server's rest.security, which each view
// extends with its purposes of use.
func New(cfg *config.Config, clients Clients, security map[string]any) *Statements {
	return &Statements{cfg: cfg, clients: clients, security: security}
}

// Views lists the statements a requester may read, agencies in configuration order, each
// followed by its clients.
func (s *Statements) Views(a *engine.Access) []engine.CapabilityView {
	var out []engine.CapabilityView
	for i := range s.cfg.Agencies {
		ag := &s.cfg.Agencies[i]
		if mayRead(a, AgencyPrefix+ag.ID) {
			out = append(out, s.agencyView(ag))
		}
		for j := range ag.Clients {
			if mayRead(a, ClientPrefix+ag.Clients[j].ID) {
				if v, ok := s.clientView(ag, ag.Clients[j].ID); ok {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// View returns one statement by id.
func (s *Statements) View(a *engine.Access, id string) (engine.CapabilityView, error) {
	notFound := outcome.New(http.StatusNotFound, "not-found", "CapabilityStatement/%s is not known: statements are agency-{agency id} and client-{client id}", id)
	var v engine.CapabilityView
	switch {
	case strings.HasPrefix(id, AgencyPrefix):
		ag, ok := s.cfg.Agency(strings.TrimPrefix(id, AgencyPrefix))
		if !ok {
			return v, notFound
		}
		v = s.agencyView(ag)
	case strings.HasPrefix(id, ClientPrefix):
		_, ag, ok := s.cfg.Client(strings.TrimPrefix(id, ClientPrefix))
		if !ok {
			return v, notFound
		}
		if v, ok = s.clientView(ag, strings.TrimPrefix(id, ClientPrefix)); !ok {
			return v, notFound
		}
	default:
		return v, notFound
	}
	if !mayRead(a, id) {
		return engine.CapabilityView{}, outcome.New(http.StatusForbidden, "forbidden",
			"a client may read its own agency's and its own CapabilityStatement (%s%s, %s%s); operators may read any",
			AgencyPrefix, a.AgencyID, ClientPrefix, a.ClientID)
	}
	return v, nil
}

func mayRead(a *engine.Access, id string) bool {
	return a == nil || a.AgencyKind == config.KindBroker || id == AgencyPrefix+a.AgencyID || id == ClientPrefix+a.ClientID
}

// grant is what a set of clients may do: the union of their scopes and purposes.
type grant struct {
	clients  []string
	scopes   auth.Scopes
	purposes []string
}

func (g grant) Allows(typ string, perm byte) bool { return g.scopes.Allows(typ, perm) }

func (s *Statements) grantOf(ids ...string) grant {
	var g grant
	for _, id := range ids {
		c, ok := s.clients.Client(id)
		if !ok {
			continue
		}
		g.clients = append(g.clients, id)
		g.scopes = append(g.scopes, c.Scopes...)
		for _, p := range c.Purposes {
			if !slices.Contains(g.purposes, p) {
				g.purposes = append(g.purposes, p)
			}
		}
	}
	return g
}

func (s *Statements) agencyView(ag *config.Agency) engine.CapabilityView {
	ids := make([]string, len(ag.Clients))
	for i, c := range ag.Clients {
		ids[i] = c.ID
	}
	g := s.grantOf(ids...)
	clients := "no API clients"
	if len(g.clients) > 0 {
		clients = "clients: " + strings.Join(g.clients, ", ")
	}
	return s.view(ag, g, AgencyPrefix+ag.ID, "Agency", fmt.Sprintf(
		"What %s (%s, ODS %s) may do through the broker's FHIR API: the union of its %s. "+
			"Each client is held to its own scopes and purposes (CapabilityStatement/%s{client id}).",
		ag.Name, ag.Kind, ag.ODS, clients, ClientPrefix))
}

func (s *Statements) clientView(ag *config.Agency, id string) (engine.CapabilityView, bool) {
	g := s.grantOf(id)
	if len(g.clients) == 0 {
		return engine.CapabilityView{}, false
	}
	return s.view(ag, g, ClientPrefix+id, "Client", fmt.Sprintf(
		"What the API client %s of %s (%s, ODS %s) may do through the broker's FHIR API.", id, ag.Name, ag.Kind, ag.ODS)), true
}

func (s *Statements) view(ag *config.Agency, g grant, id, kind, desc string) engine.CapabilityView {
	return engine.CapabilityView{
		ID:          id,
		Name:        kind + identifier(strings.TrimPrefix(strings.TrimPrefix(id, AgencyPrefix), ClientPrefix)),
		Title:       kind + " " + strings.TrimPrefix(strings.TrimPrefix(id, AgencyPrefix), ClientPrefix) + ": what it may do",
		Description: desc,
		Scopes:      g,
		Documentation: fmt.Sprintf("Interactions are those the scopes %s allow; disclosure of each resource is then decided by the "+
			"sharing rules, the patient's Consents and security labels (see each type). Purposes of use: %s.",
			scopeList(g.scopes), purposeList(g.purposes)),
		TypeDocumentation: func(typ string) string { return s.typeDoc(ag, g, typ) },
		Security:          s.securityFor(g),
	}
}

// securityFor is the server's security element with the purposes of use the clients may
// claim.
func (s *Statements) securityFor(g grant) map[string]any {
	sec := map[string]any{}
	for k, v := range s.security {
		sec[k] = v
	}
	desc, _ := sec["description"].(string)
	if len(g.purposes) > 0 {
		desc = strings.TrimSpace(desc + fmt.Sprintf(" Purposes of use (X-Purpose-Of-Use, v3-ActReason): %s; without the header, %s.",
			strings.Join(g.purposes, ", "), g.purposes[0]))
	}
	sec["description"] = desc
	exts, _ := sec["extension"].([]any)
	exts = append([]any(nil), exts...)
	for _, p := range g.purposes {
		exts = append(exts, map[string]any{"url": PurposeExtension, "valueCoding": map[string]any{"system": actReason, "code": p}})
	}
	if len(exts) > 0 {
		sec["extension"] = exts
	}
	return sec
}

// typeDoc says what the sharing rules let the agency see of a type, for the grant's purposes.
func (s *Statements) typeDoc(ag *config.Agency, g grant, typ string) string {
	if ag.Kind == config.KindBroker {
		return "Operators are not filtered by sharing rules; everything they do is audited."
	}
	var parts []string
	for _, r := range s.cfg.Sharing {
		if !slices.Contains(r.AgencyKinds, ag.Kind) && !slices.Contains(r.Agencies, ag.ID) {
			continue
		}
		var purposes []string
		for _, p := range r.Purposes {
			if slices.Contains(g.purposes, p) {
				purposes = append(purposes, p)
			}
		}
		if len(purposes) == 0 || !selectsType(r.Allow, typ) || denies(r.Deny, typ) {
			continue
		}
		p := fmt.Sprintf("sharing rule %s (purposes %s)", r.ID, strings.Join(purposes, ", "))
		if len(r.Allow.Categories) > 0 {
			p += " for categories " + strings.Join(r.Allow.Categories, ", ")
		}
		if len(r.Allow.Labels) > 0 {
			p += " labelled " + strings.Join(r.Allow.Labels, ", ")
		}
		if len(r.Deny.Labels) > 0 || len(r.Deny.Categories) > 0 {
			p += ", except " + strings.Join(append(append([]string(nil), r.Deny.Labels...), r.Deny.Categories...), ", ")
		}
		if r.RequiresConsent {
			p += ", only on the patient's explicit Consent or a recorded legal basis"
		}
		if r.BreakGlass {
			p += ", break-glass only (purpose BTG with a reason in X-Break-Glass-Reason)"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return fmt.Sprintf("No sharing rule lets %s see %s resources about patients: reads answer 404 and searches find none, "+
			"though the scopes allow the interactions listed.", ag.ID, typ)
	}
	sort.Strings(parts)
	return fmt.Sprintf("%s resources are disclosed to %s under %s. The patient's Consents and default consent decisions "+
		"apply; restricted (R) patients are redacted; a withheld resource answers as a missing one.", typ, ag.ID, strings.Join(parts, "; "))
}

func selectsType(sel config.Selector, typ string) bool {
	if sel.Empty() {
		return false
	}
	return len(sel.Types) == 0 || slices.Contains(sel.Types, "*") || slices.Contains(sel.Types, typ)
}

// denies reports whether a deny selector withholds the whole type (not just some labels).
func denies(sel config.Selector, typ string) bool {
	return len(sel.Types) > 0 && len(sel.Categories) == 0 && len(sel.Labels) == 0 &&
		(slices.Contains(sel.Types, "*") || slices.Contains(sel.Types, typ))
}

func scopeList(ss auth.Scopes) string {
	if len(ss) == 0 {
		return "(none)"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.String()
	}
	sort.Strings(parts)
	return strings.Join(slices.Compact(parts), " ")
}

func purposeList(p []string) string {
	if len(p) == 0 {
		return "none"
	}
	return strings.Join(p, ", ")
}

// identifier turns an id into a computable name part: "custody-hcp" gives "CustodyHcp".
func identifier(id string) string {
	var b strings.Builder
	up := true
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			if up && c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			b.WriteRune(c)
			up = false
		default:
			up = true
		}
	}
	return b.String()
}

// Package audit keeps the broker's tamper-evident audit trail: every access becomes a UK Core
// AuditEvent, stored in the store's database in a SHA-256 hash chain that `Verify` walks.
//
// Which call to use:
//   - Recorder.Record for reads, searches and other accesses: the event is queued and written
//     with others in one transaction within FlushInterval. A crash loses at most that window.
//   - Recorder.RecordWait where the response must not leave before the event is durable:
//     break-glass, disclosures to another agency, denials worth alerting on.
//   - Recorder.RecordTx (or Trail.AppendTx) for writes: the event commits or rolls back with the
//     data. Call it as the last statement before Commit: it locks the chain head until the
//     transaction ends, which serialises audited writes across all broker nodes.
package audit

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Action is what was done.
type Action string

// Actions. The REST ones match FHIR interactions; the others are broker activities.
const (
	ActionRead        Action = "read"
	ActionVRead       Action = "vread"
	ActionSearch      Action = "search"
	ActionHistory     Action = "history"
	ActionCreate      Action = "create"
	ActionUpdate      Action = "update"
	ActionPatch       Action = "patch"
	ActionDelete      Action = "delete"
	ActionTransaction Action = "transaction"
	// ActionDisclosure is data released to another agency (in a response or a routed copy).
	ActionDisclosure Action = "disclosure"
	// ActionDelivery is a routed delivery to an agency's endpoint.
	ActionDelivery Action = "delivery"
	// ActionDenial is a refusal not tied to one interaction (routing, consent re-check).
	ActionDenial Action = "denial"
	// ActionBreakGlass is the dedicated alert event for an emergency override.
	ActionBreakGlass Action = "break-glass"
	// ActionLogin is a token request at the token endpoint.
	ActionLogin Action = "login"
)

// Outcome is how it ended.
type Outcome string

// Outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeDenied  Outcome = "denied"
	OutcomeError   Outcome = "error"
)

// PurposeBreakGlass is the v3-ActReason code for break-the-glass.
const PurposeBreakGlass = "BTG"

// Ref names one resource version touched by an event.
type Ref struct {
	Type, ID string
	// Version is the version id; empty when not known.
	Version string
}

// String renders the reference, versioned when the version is known.
func (r Ref) String() string {
	if r.Version == "" {
		return r.Type + "/" + r.ID
	}
	return r.Type + "/" + r.ID + "/_history/" + r.Version
}

// Event is one audited access.
type Event struct {
	// Time is when it happened; zero means now.
	Time    time.Time
	Action  Action
	Outcome Outcome
	// Status is the HTTP status answered (0 when there was no HTTP exchange).
	Status int
	// Detail explains the outcome (for a denial: which rule, consent or label decided).
	Detail string

	ClientID  string
	AgencyID  string
	AgencyODS string
	// Purpose is the purpose of use claimed, a v3-ActReason code (TREAT, COC, BTG, ...).
	Purpose string
	// BreakGlassReason is the reason stated with purpose BTG.
	BreakGlassReason string

	// Patients are the patients whose data was involved ("Patient/id"; a bare id is accepted).
	Patients []string
	// Resources are the resources read, returned or written.
	Resources []Ref
	// Query is the query string of a search (without the leading "?").
	Query string
	// RequestID is the X-Request-ID of the request.
	RequestID string
	// Source is the caller's network address (host or host:port).
	Source string
	// Node names the broker node that observed the event.
	Node string
}

// BreakGlass reports whether the event happened under an emergency override.
func (e Event) BreakGlass() bool {
	return e.Action == ActionBreakGlass || e.Purpose == PurposeBreakGlass || e.BreakGlassReason != ""
}

func (e Event) check() error {
	if _, ok := actions[e.Action]; !ok {
		return fmt.Errorf("audit event: unknown action %q", e.Action)
	}
	switch e.Outcome {
	case OutcomeSuccess, OutcomeDenied, OutcomeError:
	default:
		return fmt.Errorf("audit event: unknown outcome %q", e.Outcome)
	}
	for _, r := range e.Resources {
		if r.Type == "" || r.ID == "" {
			return fmt.Errorf("audit event: resource reference %q lacks a type or id", r.String())
		}
	}
	for _, p := range e.Patients {
		if patientRef(p) == "" {
			return fmt.Errorf("audit event: patient reference %q is not Patient/id", p)
		}
	}
	return nil
}

// patientRef normalises "id" or "Patient/id" to "Patient/id"; "" when it is neither.
func patientRef(p string) string {
	id := strings.TrimPrefix(p, "Patient/")
	if id == "" || strings.Contains(id, "/") {
		return ""
	}
	return "Patient/" + id
}

// patientRefs returns the event's patients normalised, sorted and without repeats.
func patientRefs(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if r := patientRef(p); r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sourceHost strips a port from a network address.
func sourceHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

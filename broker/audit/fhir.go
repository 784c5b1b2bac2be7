package audit

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Code systems and naming systems used in the resources built here.
const (
	SystemDICOM         = "http://dicom.nema.org/resources/ontology/DCM"
	SystemEventType     = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	SystemRestful       = "http://hl7.org/fhir/restful-interaction"
	SystemActReason     = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	SystemSourceType    = "http://terminology.hl7.org/CodeSystem/security-source-type"
	SystemEntityType    = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	SystemObjectRole    = "http://terminology.hl7.org/CodeSystem/object-role"
	SystemParticipation = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	SystemProvAgentType = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	SystemLifecycle     = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
	SystemODS           = "https://fhir.nhs.uk/Id/ods-organization-code"

	// SystemAction codes every event with its broker action (also for actions that are not
	// REST interactions), so the trail can be searched and re-indexed from the hashed content.
	SystemAction = "https://hjbroker.dev/fhir/CodeSystem/audit-action"
	// SystemMarker tags AuditEvents that need review (break-glass).
	SystemMarker    = "https://hjbroker.dev/fhir/CodeSystem/audit-marker"
	SystemClientID  = "https://hjbroker.dev/fhir/Id/client"
	SystemNode      = "https://hjbroker.dev/fhir/Id/node"
	SystemRequestID = "https://hjbroker.dev/fhir/Id/request-id"
	SystemSource    = "https://hjbroker.dev/fhir/Id/source-system"
	// MappingBase prefixes a mapping name to give the canonical URL of the mapping used.
	MappingBase = "https://hjbroker.dev/fhir/StructureMap/"
)

// term is one Coding's content; maps are built per call so callers may modify what they get.
type term struct{ system, code, display string }

func (c term) coding() map[string]any { return coding(c.system, c.code, c.display) }

// actionInfo is how one action is coded: AuditEvent.type, the standard subtype (if any) and
// AuditEvent.action (C create, R read/view, U update, D delete, E execute, as R4 defines them:
// searches and logins are E).
type actionInfo struct {
	typ, subtype term
	action       string
}

var (
	typeRest       = term{SystemEventType, "rest", "RESTful Operation"}
	typeExport     = term{SystemDICOM, "110106", "Export"}
	typeRecord     = term{SystemDICOM, "110110", "Patient Record"}
	typeAlert      = term{SystemDICOM, "110113", "Security Alert"}
	typeUserAuth   = term{SystemDICOM, "110114", "User Authentication"}
	subtypeLogin   = term{SystemDICOM, "110122", "Login"}
	markBreakGlass = term{SystemMarker, "break-glass", "Break-glass access: review required"}
	none           = term{}
)

// actions is read-only.
var actions = map[Action]actionInfo{
	ActionRead:        {typeRest, rest("read"), "R"},
	ActionVRead:       {typeRest, rest("vread"), "R"},
	ActionSearch:      {typeRest, rest("search"), "E"},
	ActionHistory:     {typeRest, rest("history"), "R"},
	ActionCreate:      {typeRest, rest("create"), "C"},
	ActionUpdate:      {typeRest, rest("update"), "U"},
	ActionPatch:       {typeRest, rest("patch"), "U"},
	ActionDelete:      {typeRest, rest("delete"), "D"},
	ActionTransaction: {typeRest, rest("transaction"), "E"},
	ActionDisclosure:  {typeExport, none, "R"},
	ActionDelivery:    {typeExport, none, "E"},
	ActionDenial:      {typeAlert, none, "E"},
	ActionBreakGlass:  {typeRecord, none, "R"},
	ActionLogin:       {typeUserAuth, subtypeLogin, "E"},
}

func rest(c string) term { return term{SystemRestful, c, ""} }

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(system, code, display string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code, display)}}
}

// fhirInstant renders t as an R4 instant (UTC, microseconds).
func fhirInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}

// outcomeCode maps an outcome to AuditEvent.outcome: 0 success, 4 minor failure (a denial or
// a client error), 8 serious failure (a server error).
func outcomeCode(e Event) string {
	switch {
	case e.Outcome == OutcomeSuccess:
		return "0"
	case e.Outcome == OutcomeError && (e.Status == 0 || e.Status >= 500):
		return "8"
	default:
		return "4"
	}
}

// ToAuditEvent renders the event as a UK Core (R4) AuditEvent. It returns nil for an unknown
// action (Trail and Recorder check events and report errors). The id is left to the caller.
func ToAuditEvent(e Event) map[string]any {
	info, ok := actions[e.Action]
	if !ok {
		return nil
	}
	when := e.Time
	if when.IsZero() {
		when = time.Now()
	}
	subtypes := []any{}
	if info.subtype != none {
		subtypes = append(subtypes, info.subtype.coding())
	}
	subtypes = append(subtypes, coding(SystemAction, string(e.Action), ""))
	ae := map[string]any{
		"resourceType": "AuditEvent",
		"meta": map[string]any{
			"profile": []any{"https://fhir.hl7.org.uk/StructureDefinition/UKCore-AuditEvent"},
		},
		"type":     info.typ.coding(),
		"subtype":  subtypes,
		"action":   info.action,
		"recorded": fhirInstant(when),
		"outcome":  outcomeCode(e),
		"agent":    agents(e),
		"source":   source(e),
	}
	if desc := outcomeDesc(e); desc != "" {
		ae["outcomeDesc"] = desc
	}
	if e.BreakGlass() {
		ae["purposeOfEvent"] = []any{concept(SystemActReason, PurposeBreakGlass, "break the glass")}
		ae["meta"].(map[string]any)["tag"] = []any{markBreakGlass.coding()}
	}
	if ents := entities(e); len(ents) > 0 {
		ae["entity"] = ents
	}
	return ae
}

func outcomeDesc(e Event) string {
	desc := string(e.Outcome)
	if e.Status != 0 {
		desc += fmt.Sprintf(" (HTTP %d %s)", e.Status, http.StatusText(e.Status))
	}
	if e.Detail != "" {
		desc += ": " + e.Detail
	}
	return desc
}

// agents returns the requesting client (with its purpose of use and network address) and,
// when known, the agency it acts for, identified by ODS code. R4 has no onBehalfOf on
// AuditEvent.agent, so the agency is an agent of its own.
func agents(e Event) []any {
	client := map[string]any{
		"type":      concept(SystemDICOM, "110150", "Application"),
		"requestor": true,
	}
	if e.ClientID != "" {
		client["who"] = map[string]any{
			"identifier": map[string]any{"system": SystemClientID, "value": e.ClientID},
			"display":    e.ClientID,
		}
	} else {
		client["name"] = "unauthenticated client"
	}
	if e.Purpose != "" {
		client["purposeOfUse"] = []any{concept(SystemActReason, e.Purpose, "")}
	}
	if e.Source != "" {
		host := sourceHost(e.Source)
		typ := "1" // machine name
		if net.ParseIP(host) != nil {
			typ = "2" // IP address
		}
		client["network"] = map[string]any{"address": host, "type": typ}
	}
	out := []any{client}
	if e.AgencyODS != "" || e.AgencyID != "" {
		org := map[string]any{
			"type":      concept(SystemParticipation, "RESP", "responsible party"),
			"requestor": false,
		}
		who := map[string]any{"type": "Organization"}
		if e.AgencyODS != "" {
			who["identifier"] = map[string]any{"system": SystemODS, "value": e.AgencyODS}
		}
		if e.AgencyID != "" {
			// name carries the configured agency id, which the trail is indexed by.
			org["name"] = e.AgencyID
			who["display"] = e.AgencyID
		}
		org["who"] = who
		out = append(out, org)
	}
	return out
}

// source names the broker as observer; security-source-type 4 is Application Server.
func source(e Event) map[string]any {
	observer := map[string]any{"type": "Device", "display": "hjbroker"}
	if e.Node != "" {
		observer["identifier"] = map[string]any{"system": SystemNode, "value": e.Node}
		observer["display"] = "hjbroker " + e.Node
	}
	return map[string]any{
		"observer": observer,
		"type":     []any{coding(SystemSourceType, "4", "Application Server")},
	}
}

func entities(e Event) []any {
	var out []any
	for _, p := range patientRefs(e.Patients) {
		out = append(out, map[string]any{
			"what": map[string]any{"reference": p},
			"type": coding(SystemEntityType, "1", "Person"),
			"role": coding(SystemObjectRole, "1", "Patient"),
		})
	}
	for _, r := range e.Resources {
		if r.Type == "Patient" && r.Version == "" {
			continue // already listed as a patient entity
		}
		out = append(out, map[string]any{
			"what": map[string]any{"reference": r.String()},
			"type": coding(SystemEntityType, "2", "System Object"),
			"role": coding(SystemObjectRole, "4", "Domain Resource"),
		})
	}
	if e.Query != "" {
		out = append(out, map[string]any{
			"type":  coding(SystemEntityType, "2", "System Object"),
			"role":  coding(SystemObjectRole, "24", "Query"),
			"query": base64.StdEncoding.EncodeToString([]byte(e.Query)),
		})
	}
	if e.BreakGlass() {
		reason := e.BreakGlassReason
		if reason == "" {
			reason = "(no reason stated)"
		}
		out = append(out, map[string]any{
			"type":        coding(SystemEntityType, "4", "Other"),
			"name":        "break-glass reason",
			"description": reason,
		})
	}
	if e.RequestID != "" {
		out = append(out, map[string]any{
			"what": map[string]any{"identifier": map[string]any{"system": SystemRequestID, "value": e.RequestID}},
			"type": coding(SystemEntityType, "4", "Other"),
			"name": "X-Request-ID",
		})
	}
	return out
}

// ProvenanceFor builds a UK Core (R4) Provenance for resources the broker derived or
// normalised: who supplied the data (the agency, by ODS code, and its source system), the
// broker as the assembler, and the mapping used (as policy, the mapping's canonical URL).
// activity is an ISO 21089 lifecycle code: "transform" for normalisation, "originate" for
// resources the broker creates, "receive" for data taken in unchanged.
func ProvenanceFor(targets []string, sourceSystem, agencyODS, mapping, activity string, recorded time.Time) map[string]any {
	tg := make([]any, 0, len(targets))
	for _, t := range targets {
		tg = append(tg, map[string]any{"reference": t})
	}
	agentList := []any{map[string]any{
		"type": concept(SystemProvAgentType, "assembler", "Assembler"),
		"who":  map[string]any{"type": "Device", "display": "hjbroker"},
	}}
	if agencyODS != "" {
		agentList = append(agentList, map[string]any{
			"type": concept(SystemProvAgentType, "author", "Author"),
			"who": map[string]any{
				"type":       "Organization",
				"identifier": map[string]any{"system": SystemODS, "value": agencyODS},
			},
		})
	}
	p := map[string]any{
		"resourceType": "Provenance",
		"meta": map[string]any{
			"profile": []any{"https://fhir.hl7.org.uk/StructureDefinition/UKCore-Provenance"},
		},
		"target":   tg,
		"recorded": fhirInstant(recorded),
		"agent":    agentList,
	}
	if activity != "" {
		p["activity"] = concept(SystemLifecycle, activity, lifecycleDisplay[activity])
	}
	if mapping != "" {
		p["policy"] = []any{MappingBase + mapping}
	}
	if sourceSystem != "" {
		p["entity"] = []any{map[string]any{
			"role": "source",
			"what": map[string]any{
				"identifier": map[string]any{"system": SystemSource, "value": sourceSystem},
				"display":    "source system " + sourceSystem,
			},
		}}
	}
	return p
}

var lifecycleDisplay = map[string]string{
	"transform": "Transform/Translate Record Lifecycle Event",
	"originate": "Originate/Retain Record Lifecycle Event",
	"receive":   "Receive/Retain Record Lifecycle Event",
	"merge":     "Merge Record Lifecycle Event",
	"extract":   "Extract Record Lifecycle Event",
}

// indexFields are the searchable columns of a stored event. They are derived from the hashed
// AuditEvent, so Verify can re-derive them and catch edits of the index columns too.
type indexFields struct {
	id       string // the AuditEvent id
	recorded int64  // Unix microseconds
	action   string
	outcome  string
	client   string
	agency   string
	patients []string
}

// indexOf reads the searchable fields from an AuditEvent as built by ToAuditEvent (decoded
// from JSON, so nested values are []any and map[string]any).
func indexOf(ae map[string]any) (indexFields, error) {
	var f indexFields
	f.id, _ = ae["id"].(string)
	rec, _ := ae["recorded"].(string)
	t, err := time.Parse(time.RFC3339Nano, rec)
	if err != nil {
		return f, fmt.Errorf("recorded %q: %w", rec, err)
	}
	f.recorded = t.UnixMicro()
	f.outcome, _ = ae["outcome"].(string)
	for _, s := range list(ae["subtype"]) {
		if c := obj(s); c["system"] == SystemAction {
			f.action, _ = c["code"].(string)
		}
	}
	for _, a := range list(ae["agent"]) {
		ag := obj(a)
		if ag["requestor"] == true {
			f.client, _ = obj(obj(ag["who"])["identifier"])["value"].(string)
		} else if obj(ag["who"])["type"] == "Organization" {
			f.agency, _ = ag["name"].(string)
		}
	}
	for _, en := range list(ae["entity"]) {
		ent := obj(en)
		if obj(ent["role"])["system"] == SystemObjectRole && obj(ent["role"])["code"] == "1" {
			if ref, _ := obj(ent["what"])["reference"].(string); ref != "" {
				f.patients = append(f.patients, ref)
			}
		}
	}
	if f.action == "" {
		return f, fmt.Errorf("no %s subtype", SystemAction)
	}
	return f, nil
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

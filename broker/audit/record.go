package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hjbroker/hjbroker/broker/resource"
)

// recordFormat marks a stored body as a compact event record. Bodies without it are
// AuditEvent JSON written by earlier versions, served as they are.
const recordFormat = "hjbroker-audit/1"

// recordPrefix is how every compact record starts: encoding/json writes struct fields in
// declaration order, and F is first.
var recordPrefix = []byte(`{"f":"` + recordFormat + `"`)

// record is what the chain stores and hashes for each event: every field of the Event, so the
// UK Core AuditEvent is rendered from it deterministically when the trail is read. Keeping
// the record small (a few hundred bytes rather than a 2 KB AuditEvent) is what makes auditing
// every read affordable; the hash still covers everything the AuditEvent says.
type record struct {
	F         string   `json:"f"`
	ID        string   `json:"id"`
	Time      int64    `json:"t"` // Unix microseconds, UTC
	Action    string   `json:"action"`
	Outcome   string   `json:"outcome"`
	Status    int      `json:"status,omitempty"`
	Detail    string   `json:"detail,omitempty"`
	Client    string   `json:"client,omitempty"`
	Agency    string   `json:"agency,omitempty"`
	ODS       string   `json:"ods,omitempty"`
	Purpose   string   `json:"purpose,omitempty"`
	BTGReason string   `json:"btg,omitempty"`
	Patients  []string `json:"patients,omitempty"`
	Resources []string `json:"resources,omitempty"`
	Query     string   `json:"query,omitempty"`
	RequestID string   `json:"request,omitempty"`
	Source    string   `json:"source,omitempty"`
	Node      string   `json:"node,omitempty"`
}

// encodeRecord renders a checked event, whose Time is set, as its stored record.
func encodeRecord(id string, e Event) ([]byte, error) {
	r := record{
		F: recordFormat, ID: id, Time: e.Time.UTC().Truncate(time.Microsecond).UnixMicro(),
		Action: string(e.Action), Outcome: string(e.Outcome), Status: e.Status, Detail: e.Detail,
		Client: e.ClientID, Agency: e.AgencyID, ODS: e.AgencyODS, Purpose: e.Purpose, BTGReason: e.BreakGlassReason,
		Patients: patientRefs(e.Patients), Query: e.Query, RequestID: e.RequestID, Source: e.Source, Node: e.Node,
	}
	for _, ref := range e.Resources {
		r.Resources = append(r.Resources, ref.String())
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("audit: encoding event: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// isRecord tells a compact record from a legacy AuditEvent body.
func isRecord(body []byte) bool { return bytes.HasPrefix(body, recordPrefix) }

// decodeRecord reads a stored record back into its id and Event.
func decodeRecord(body []byte) (string, Event, error) {
	var r record
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return "", Event{}, fmt.Errorf("audit record: %w", err)
	}
	if r.F != recordFormat || r.ID == "" {
		return "", Event{}, fmt.Errorf("audit record: format %q, id %q", r.F, r.ID)
	}
	e := Event{
		Time: time.UnixMicro(r.Time).UTC(), Action: Action(r.Action), Outcome: Outcome(r.Outcome), Status: r.Status,
		Detail: r.Detail, ClientID: r.Client, AgencyID: r.Agency, AgencyODS: r.ODS, Purpose: r.Purpose,
		BreakGlassReason: r.BTGReason, Patients: r.Patients, Query: r.Query, RequestID: r.RequestID,
		Source: r.Source, Node: r.Node,
	}
	for _, s := range r.Resources {
		ref, ok := parseRef(s)
		if !ok {
			return "", Event{}, fmt.Errorf("audit record: resource %q is not Type/id[/_history/v]", s)
		}
		e.Resources = append(e.Resources, ref)
	}
	if err := e.check(); err != nil {
		return "", Event{}, err
	}
	return r.ID, e, nil
}

// parseRef reads what Ref.String wrote.
func parseRef(s string) (Ref, bool) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return Ref{Type: parts[0], ID: parts[1]}, true
	case len(parts) == 4 && parts[0] != "" && parts[1] != "" && parts[2] == "_history" && parts[3] != "":
		return Ref{Type: parts[0], ID: parts[1], Version: parts[3]}, true
	}
	return Ref{}, false
}

// renderBody gives the AuditEvent JSON of a stored body: rendered from a compact record, or a
// legacy body unchanged.
func renderBody(body []byte) ([]byte, error) {
	if !isRecord(body) {
		return body, nil
	}
	id, e, err := decodeRecord(body)
	if err != nil {
		return nil, err
	}
	ae := ToAuditEvent(e)
	ae["id"] = id
	return resource.Encode(ae), nil
}

// recordIndex derives the searchable columns from an event, as prepare does (the id apart).
func recordIndex(e Event) indexFields {
	return indexFields{
		recorded: e.Time.UTC().Truncate(time.Microsecond).UnixMicro(),
		action:   string(e.Action),
		outcome:  outcomeCode(e),
		client:   e.ClientID,
		agency:   e.AgencyID,
		patients: patientRefs(e.Patients),
	}
}

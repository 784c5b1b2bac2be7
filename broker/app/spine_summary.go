package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hjbroker/hjbroker/adapters/spine"
	"github.com/hjbroker/hjbroker/broker/audit"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/mappings/scr"
)

// Emergency purposes of use under which an SCR marked Ask may be viewed without recorded
// permission, with a privacy alert.
const purposeEmergency = "ETREAT"

// summary serves GET /fhir/Patient/{id}/$summary: the person's Summary Care Record from the
// Spine, normalised to a UK Core document Bundle (mappings/scr). It is not stored: the SCR is
// the Spine's record, read afresh under the patient's current permission each time, and a
// copy would go stale and be shared on without that permission.
//
// Access, in order: the engine's scope check (Patient read), plus Composition read; the
// patient's disclosure to the requester (as $access-check decides it, else 404); restricted
// (R, V) patients have no SCR (404, the Spine is not asked); SCR permission No is an opt-out
// (403); Ask and Yes need an active Consent of the patient permitting the requester, or an
// emergency (purpose ETREAT, or BTG with a reason), which sends an SCR privacy alert and
// records it in the audit trail.
func (sp *spineParts) summary(ctx context.Context, req *engine.Request, typ, id string) (*engine.Response, error) {
	if req.Method != http.MethodGet {
		return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$summary is read-only: use GET")
	}
	if a := req.Access; a != nil && (a.Scopes == nil || !a.Scopes.Allows("Composition", 'r')) {
		return nil, outcome.New(http.StatusForbidden, "forbidden", "the client's scopes do not allow reading the summary document (needs system/Composition.r)")
	}
	st := sp.node.Store
	pat, err := currentPatient(ctx, st, id)
	if err != nil {
		return nil, err
	}
	consents, err := patientConsents(ctx, st, id)
	if err != nil {
		return nil, err
	}
	shown := pat
	if a := req.Access; a != nil {
		d := sp.pol.Decide(policyRequest(a), pat, consents)
		if !d.Permit {
			return nil, outcome.New(http.StatusNotFound, "not-found", "Patient/%s is not known", id)
		}
		shown = d.Resource
	}
	ref := "Patient/" + id
	if policy.Restricted(pat) {
		return nil, outcome.New(http.StatusNotFound, "not-found",
			"no Summary Care Record is available for Patient/%s: the record is restricted (sensitive), and the SCR is disabled for restricted patients", id)
	}
	nhs := nhsNumberOf(pat)
	if nhs == "" {
		return nil, outcome.At(http.StatusUnprocessableEntity, "business-rule", "Patient.identifier",
			"Patient/%s has no NHS number; the Summary Care Record is found by NHS number", id)
	}
	sctx := spineContext(ctx, req)
	ptr, err := sp.client.SCRPointer(sctx, nhs)
	if err != nil {
		return sp.spineFailure(ctx, req, ref, err)
	}
	if ptr == nil {
		return nil, outcome.New(http.StatusNotFound, "not-found", "Patient/%s (NHS number %s) has no Summary Care Record", id, nhs)
	}
	var emergency bool
	switch ptr.Permission {
	case spine.PermissionNo:
		return nil, outcome.New(http.StatusForbidden, "forbidden",
			"Patient/%s has opted out of the Summary Care Record (SCR permission No); it may not be viewed", id)
	default: // Ask, and Yes, which the SCR service says to treat exactly like Ask
		if req.Access != nil && !sp.consentPermits(req.Access, id, consents) {
			if !isEmergency(req.Access) {
				return nil, outcome.New(http.StatusForbidden, "forbidden",
					"the Summary Care Record of Patient/%s needs the patient's permission to view (SCR permission %s): record an active Consent "+
						"permitting %s, or state an emergency (purpose ETREAT, or BTG with a reason)", id, ptr.Permission, req.Access.AgencyID)
			}
			emergency = true
		}
	}
	if emergency {
		if err := sp.privacyAlert(sctx, req, ref, nhs, ptr); err != nil {
			return sp.spineFailure(ctx, req, ref, err)
		}
	}
	b, err := sp.client.SCRBundle(sctx, ptr, nhs)
	if err != nil {
		return sp.spineFailure(ctx, req, ref, err)
	}
	doc, err := scr.Summary(scr.Input{Bundle: b, DocumentID: ptr.UUID, Patient: shown, Base: req.Base, Retrieved: sp.now()})
	if errors.Is(err, scr.ErrNoRecord) {
		return nil, outcome.New(http.StatusNotFound, "not-found", "the Summary Care Record of Patient/%s is no longer current; try again", id)
	}
	if err != nil {
		return nil, outcome.New(http.StatusBadGateway, "exception", "the Summary Care Record of Patient/%s cannot be read: %v", id, err)
	}
	resp := &engine.Response{Status: http.StatusOK, Resource: doc, Patients: []string{ref}}
	resp.BreakGlass = emergency && req.Access.Purpose == policy.PurposeBreakGlass
	return resp, nil
}

// spineFailure answers with the Spine failure's OperationOutcome (which keeps the Spine's
// code) and records it.
func (sp *spineParts) spineFailure(ctx context.Context, req *engine.Request, patient string, err error) (*engine.Response, error) {
	sp.auditSpineFailure(ctx, req, patient, err)
	var se *spine.Error
	if errors.As(err, &se) {
		return &engine.Response{Status: se.Status, Resource: se.OperationOutcome()}, nil
	}
	return nil, err
}

// isEmergency reports an emergency purpose: ETREAT, or BTG with a stated reason.
func isEmergency(a *engine.Access) bool {
	return a.Purpose == purposeEmergency || a.Purpose == policy.PurposeBreakGlass && strings.TrimSpace(a.BreakGlass) != ""
}

// consentPermits reports whether an active Consent of the patient permits the requester to
// see the summary: the policy permits a Composition about the patient on the strength of a
// Consent, not of a consent default or a break-glass rule. Operators are no exception: the
// SCR is for the patient's care, not for administering the service.
func (sp *spineParts) consentPermits(a *engine.Access, patientID string, consents []map[string]any) bool {
	probe := map[string]any{"resourceType": "Composition", "subject": map[string]any{"reference": "Patient/" + patientID}}
	r := policyRequest(a)
	if r.Purpose == policy.PurposeBreakGlass {
		return false
	}
	d := sp.pol.Decide(r, probe, consents)
	if !d.Permit || d.BreakGlass {
		return false
	}
	byConsent := false
	for _, why := range d.Reasons {
		switch why.Kind {
		case policy.KindDefault:
			return false
		case policy.KindConsent:
			byConsent = byConsent || strings.HasPrefix(why.ID, "Consent/")
		}
	}
	return byConsent
}

// privacyAlert sends the SCR privacy alert for an emergency access (type 2 Access Alert,
// reason 5 emergency access) and records it in the broker's audit trail.
func (sp *spineParts) privacyAlert(ctx context.Context, req *engine.Request, patient, nhs string, ptr *spine.SCRPointer) error {
	a := req.Access
	why := a.BreakGlass
	if why == "" {
		why = "emergency treatment (purpose " + a.Purpose + ")"
	}
	now := sp.now().UTC()
	ev := map[string]any{
		"resourceType": "AuditEvent",
		"extension": []any{map[string]any{"url": "https://fhir.nhs.uk/StructureDefinition/Extension-SCR-NotificationMessage",
			"valueString": fmt.Sprintf("Emergency access to the Summary Care Record by %s (%s): %s", a.AgencyID, a.ClientID, why)}},
		"type":     map[string]any{"system": spine.SystemAlertType, "code": "2", "display": "Access Alert"},
		"subtype":  []any{map[string]any{"system": spine.SystemAlertReason, "code": "5", "display": "Emergency access"}},
		"recorded": now.Format("2006-01-02T15:04:05.000Z"),
		"agent": []any{
			map[string]any{"requestor": true, "who": map[string]any{"identifier": map[string]any{"system": spine.SystemODS, "value": a.AgencyODS}},
				"name": a.ClientID},
			map[string]any{"requestor": false, "who": map[string]any{"identifier": map[string]any{"system": spine.SystemNHSNumber, "value": nhs}}},
		},
		"source": map[string]any{"observer": map[string]any{"identifier": map[string]any{"system": spine.SystemSpineASID, "value": sp.asid}}},
		"entity": []any{map[string]any{"what": map[string]any{"identifier": map[string]any{"system": spine.SystemSCRUUID, "value": ptr.UUID}}}},
	}
	if sp.asid == "" {
		delete(ev, "source")
	}
	alertID, err := sp.client.PrivacyAlert(ctx, ev)
	if err != nil {
		return err
	}
	if sp.node.recorder == nil {
		return nil
	}
	return sp.node.recorder.RecordWait(context.WithoutCancel(ctx), audit.Event{
		Action: audit.ActionBreakGlass, Outcome: audit.OutcomeSuccess, Status: http.StatusOK,
		Detail:   fmt.Sprintf("SCR privacy alert %s sent to the Spine (SCR-AlertType 2 Access Alert, SCR-AlertReason 5 Emergency access): %s", alertID, why),
		ClientID: a.ClientID, AgencyID: a.AgencyID, AgencyODS: a.AgencyODS, Purpose: a.Purpose, BreakGlassReason: a.BreakGlass,
		Patients: []string{patient}, RequestID: req.Header.Get("X-Request-ID"),
	})
}

// patientConsents loads the Consents about a patient.
func patientConsents(ctx context.Context, st store.Store, id string) ([]map[string]any, error) {
	related, _, err := st.Referencing(ctx, []store.Key{{Type: "Patient", ID: id}}, "Consent", "")
	if err != nil {
		return nil, fmt.Errorf("reading the Consents of Patient/%s: %w", id, err)
	}
	var out []map[string]any
	for _, r := range related {
		if m, err := decodeJSON(r.Body); err == nil && r.Type == "Consent" {
			out = append(out, m)
		}
	}
	return out, nil
}

package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hjbroker/hjbroker/broker/access"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/delivery"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/broker/store"
	"github.com/hjbroker/hjbroker/mappings/documents"
)

// Hand-back Tasks: when a hand-back cannot go to a GP electronically, the custody team gets
// a Task asking for a manual transfer.
const (
	// ManualTransferPrefix starts the reason of a withheld hand-back that needs a manual
	// transfer (a restricted person, or no registered GP the broker can reach).
	ManualTransferPrefix = "manual GP transfer needed: "
	// SystemTaskCode codes the Tasks the broker raises.
	SystemTaskCode = "https://hjbroker.dev/fhir/CodeSystem/task-code"
	// TaskManualGPTransfer is the Task code of a hand-back to transfer by hand.
	TaskManualGPTransfer = "manual-gp-transfer"
	// SystemHandbackID identifies a manual-transfer Task by the Encounter version it is for.
	SystemHandbackID = "https://hjbroker.dev/fhir/Id/handback"
)

// handbackTypes are the resource types a hand-back carries besides the Patient and the
// Encounter.
var handbackTypes = []string{"Observation", "MedicationStatement", "Condition", "AllergyIntolerance", "QuestionnaireResponse", "Flag", "ServiceRequest"}

// handbackTransform is the gp-handback route transform: at delivery time it turns the
// finished custody Encounter into the hand-back document for the person's registered GP. The
// record is read as it stood when the delivery was created, and ids and timestamp derive from
// the delivery, so every attempt sends the same document. It withholds the delivery (with
// the reason) for a restricted person, a person with no GP, and a GP agency that is not the
// person's practice; every resource in it passed the sharing rules and the person's Consents
// for the receiving GP agency.
func (d *documentOps) handbackTransform(in routing.TransformInput) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	enc := in.Resource
	if str(enc, "resourceType") != "Encounter" {
		return nil, fmt.Errorf("gp-handback takes an Encounter, not %s", str(enc, "resourceType"))
	}
	if st := str(enc, "status"); st != "finished" {
		return nil, &routing.WithheldError{Reason: fmt.Sprintf("Encounter/%s is %s, not finished: there is nothing to hand back yet", str(enc, "id"), st)}
	}
	pref := in.Delivery.Patient
	if pref == "" {
		pref = access.PatientOf(enc)
	}
	pid, ok := strings.CutPrefix(pref, "Patient/")
	if !ok || pid == "" {
		return nil, &routing.WithheldError{Reason: ManualTransferPrefix + fmt.Sprintf("Encounter/%s names no patient", str(enc, "id"))}
	}
	at := in.Delivery.CreatedAt
	if at.IsZero() {
		at = time.Now()
	}
	patient, err := d.asOf(ctx, "Patient", pid, at)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", pref, err)
	}
	if patient == nil {
		return nil, &routing.WithheldError{Reason: ManualTransferPrefix + pref + " is not known"}
	}
	resolve := func(ref string) map[string]any {
		typ, id, _ := strings.Cut(ref, "/")
		if typ != "Organization" {
			return nil
		}
		r, _ := d.asOf(ctx, typ, id, at)
		return r
	}
	ods, reason := documents.HandbackBlock(patient, resolve)
	if reason != "" {
		return nil, &routing.WithheldError{Reason: ManualTransferPrefix + reason}
	}
	if ods != in.Agency.ODS {
		if gpAgency(d.n.Config, ods) == nil {
			return nil, &routing.WithheldError{Reason: ManualTransferPrefix + fmt.Sprintf("%s is registered with practice %s, which is not connected to the broker", pref, ods)}
		}
		return nil, &routing.WithheldError{Reason: fmt.Sprintf("%s is registered with practice %s, not with %s (%s)", pref, ods, in.Agency.Name, in.Agency.ODS)}
	}
	consents, err := d.consents.Consents(ctx, pref)
	if err != nil {
		return nil, fmt.Errorf("reading the patient's Consents: %w", err)
	}
	gp := policy.Request{Agency: policy.Agency{ID: in.Agency.ID, Kind: in.Agency.Kind, ODS: in.Agency.ODS}, Purpose: in.Delivery.Purpose}
	disclose := func(r map[string]any) map[string]any {
		if dec := d.pol.Decide(gp, r, consents); dec.Permit {
			return dec.Resource
		}
		return nil
	}
	if patient = disclose(patient); patient == nil {
		return nil, &routing.WithheldError{Reason: fmt.Sprintf("the sharing rules or the person's Consents do not let %s see %s", in.Agency.ID, pref)}
	}
	episode, err := d.episode(ctx, pref, enc, at)
	if err != nil {
		return nil, err
	}
	hb := documents.HandbackInput{
		ID: derivedID("handback", in.Delivery.ID, "composition"), BundleID: derivedID("handback", in.Delivery.ID, "bundle"),
		Date: at.UTC().Truncate(time.Second), Base: in.BaseURL,
		GP:      documents.Organization{ODS: in.Agency.ODS, Name: in.Agency.Name},
		Patient: patient, Encounter: enc,
	}
	if in.Source != nil {
		hb.Author = documents.Organization{ODS: in.Source.ODS, Name: in.Source.Name}
	}
	lists := map[string]*[]map[string]any{
		"Observation": &hb.Observations, "MedicationStatement": &hb.Medications, "Condition": &hb.Conditions,
		"AllergyIntolerance": &hb.Allergies, "QuestionnaireResponse": &hb.Assessments, "Flag": &hb.Flags, "ServiceRequest": &hb.Referrals,
	}
	for _, r := range episode {
		if shown := disclose(r); shown != nil {
			*lists[str(r, "resourceType")] = append(*lists[str(r, "resourceType")], shown)
		}
	}
	doc, err := documents.Handback(hb)
	if err != nil {
		return nil, fmt.Errorf("assembling the hand-back: %w", err)
	}
	return doc, nil
}

func gpAgency(cfg *config.Config, ods string) *config.Agency {
	for i := range cfg.Agencies {
		if a := &cfg.Agencies[i]; a.Kind == config.KindGP && a.ODS == ods {
			return a
		}
	}
	return nil
}

// asOf is a resource as it stood at t: its current version, or the version current then
// when it changed since. Nil when it did not exist (or was deleted) then.
func (d *documentOps) asOf(ctx context.Context, typ, id string, t time.Time) (map[string]any, error) {
	cur, err := d.n.Store.Current(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d.versionAt(ctx, cur, t)
}

func (d *documentOps) versionAt(ctx context.Context, cur *store.Resource, t time.Time) (map[string]any, error) {
	v := cur
	if cur.LastUpdated.After(t) {
		var err error
		if v, err = d.versionBefore(ctx, cur.Type, cur.ID, t); err != nil || v == nil {
			return nil, err
		}
	}
	if v.Deleted || len(v.Body) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(v.Body, &m); err != nil {
		return nil, fmt.Errorf("%s/%s is not JSON: %w", v.Type, v.ID, err)
	}
	return m, nil
}

// versionBefore reads the version of an instance current at t: the latest recorded at or
// before t (nil when none).
func (d *documentOps) versionBefore(ctx context.Context, typ, id string, t time.Time) (*store.Resource, error) {
	page, err := d.n.Store.History(ctx, store.HistoryQuery{Type: typ, ID: id, At: t, Count: 1})
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s as it stood at %s: %w", typ, id, t.UTC().Format(time.RFC3339), err)
	}
	if len(page.Entries) == 0 {
		return nil, nil
	}
	return page.Entries[0], nil
}

// episode is the record of one custody episode: the patient's resources of the hand-back
// types that refer to the Encounter, or that refer to no encounter and were recorded during
// it (from its start until it ended or until t), as they stood at t.
func (d *documentOps) episode(ctx context.Context, patient string, enc map[string]any, t time.Time) ([]map[string]any, error) {
	typ, id, _ := strings.Cut(patient, "/")
	related, _, err := d.n.Store.Referencing(ctx, []store.Key{{Type: typ, ID: id}}, "", "")
	if err != nil {
		return nil, fmt.Errorf("reading %s's record: %w", patient, err)
	}
	encRef := "Encounter/" + str(enc, "id")
	start, _ := time.Parse(time.RFC3339, str(obj(enc["period"]), "start"))
	end, err := time.Parse(time.RFC3339, str(obj(enc["period"]), "end"))
	if err != nil || end.After(t) {
		end = t
	}
	var out []map[string]any
	for _, r := range related {
		if !slices.Contains(handbackTypes, r.Type) {
			continue
		}
		m, err := d.versionAt(ctx, r, t)
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		switch own := encounterOf(m); {
		case own == encRef:
		case own != "":
			continue // another episode's
		default:
			recorded, err := time.Parse(time.RFC3339Nano, str(obj(m["meta"]), "lastUpdated"))
			if err != nil || start.IsZero() || recorded.Before(start) || recorded.After(end) {
				continue
			}
		}
		out = append(out, m)
	}
	slices.SortStableFunc(out, func(a, b map[string]any) int {
		return strings.Compare(str(a, "resourceType")+"/"+str(a, "id"), str(b, "resourceType")+"/"+str(b, "id"))
	})
	return out, nil
}

// encounterOf is the Encounter a resource was recorded in (encounter or context).
func encounterOf(r map[string]any) string {
	for _, k := range []string{"encounter", "context"} {
		if s := refOf(r, k); strings.HasPrefix(s, "Encounter/") {
			return s
		}
	}
	return ""
}

// handback serves POST Encounter/{id}/$handback: the custody episode ends. An Encounter not
// yet finished is updated to finished (period.end set to now when absent) with the caller's
// access, which routes it (route custody-discharge-to-gp, transform gp-handback). The answer
// (Parameters) says what happens to the hand-back: outcome queued (with the GP's ODS code),
// withheld (with the reason; the custody team gets a manual-transfer Task when the delivery
// is withheld) or not-routed (no route takes it to a GP).
func (d *documentOps) handback(ctx context.Context, req *engine.Request, _, id string) (*engine.Response, error) {
	if req.Method != http.MethodPost {
		return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$handback ends the custody episode: use POST")
	}
	if len(strings.TrimSpace(string(req.Body))) > 0 {
		return nil, outcome.New(http.StatusBadRequest, "not-supported", "$handback takes no parameters")
	}
	// Ending an episode is an update, whether or not this call makes it.
	if a := req.Access; a != nil && a.Scopes != nil && !a.Scopes.Allows("Encounter", 'u') {
		return nil, outcome.New(http.StatusForbidden, "forbidden", "$handback needs the scope to update Encounters (system/Encounter.u)")
	}
	cur, err := d.n.Store.Current(ctx, "Encounter", id)
	if err != nil || cur.Deleted {
		return nil, outcome.New(http.StatusNotFound, "not-found", "Encounter/%s is not known", id)
	}
	enc, err := d.readAs(ctx, req, "Encounter", id)
	if err != nil {
		return nil, err
	}
	pref := access.PatientOf(enc)
	if !strings.HasPrefix(pref, "Patient/") {
		return nil, outcome.At(http.StatusUnprocessableEntity, "processing", "Encounter.subject", "Encounter/%s is not about a Patient", id)
	}
	state := "already-finished"
	if str(enc, "status") != "finished" {
		enc["status"] = "finished"
		per := obj(enc["period"])
		if per == nil {
			per = map[string]any{}
			enc["period"] = per
		}
		if str(per, "end") == "" {
			per["end"] = time.Now().UTC().Format(time.RFC3339)
		}
		delete(enc, "meta")
		body, _ := json.Marshal(enc)
		resp := d.n.Engine.Handle(ctx, &engine.Request{Method: http.MethodPut, Path: "Encounter/" + id, Body: body, Base: req.Base, Access: req.Access,
			Header: http.Header{"Content-Type": {"application/fhir+json"}, "If-Match": {fmt.Sprintf(`W/"%d"`, cur.Version)}}})
		if resp.Status >= 300 {
			return nil, passOn(resp)
		}
		state = "finished"
	}
	params := []any{
		map[string]any{"name": "encounter", "valueReference": map[string]any{"reference": "Encounter/" + id}},
		map[string]any{"name": "episode", "valueCode": state},
	}
	add := func(name, key string, v any) { params = append(params, map[string]any{"name": name, key: v}) }
	patient, err := d.asOf(ctx, "Patient", strings.TrimPrefix(pref, "Patient/"), time.Now())
	if err != nil {
		return nil, err
	}
	resolve := func(ref string) map[string]any {
		typ, rid, _ := strings.Cut(ref, "/")
		if typ != "Organization" {
			return nil
		}
		r, _ := d.asOf(ctx, typ, rid, time.Now())
		return r
	}
	ods, reason := "", pref+" is not known"
	if patient != nil {
		ods, reason = documents.HandbackBlock(patient, resolve)
	}
	switch {
	case reason != "":
		add("outcome", "valueCode", "withheld")
		add("reason", "valueString", reason)
	case !d.handbackRouted():
		add("outcome", "valueCode", "not-routed")
		add("reason", "valueString", "no route sends finished custody Encounters to a GP with the gp-handback transform")
	case gpAgency(d.n.Config, ods) == nil:
		add("outcome", "valueCode", "withheld")
		add("reason", "valueString", fmt.Sprintf("%s is registered with practice %s, which is not connected to the broker", pref, ods))
	default:
		add("outcome", "valueCode", "queued")
		add("gp", "valueIdentifier", map[string]any{"system": documents.SystemODS, "value": ods})
	}
	// Only this agency's view of the patient's GP is named; a restricted one was never read.
	return &engine.Response{Status: http.StatusOK, Resource: map[string]any{"resourceType": "Parameters", "parameter": params}, Patients: []string{pref}}, nil
}

// handbackRouted reports whether a configured route applies gp-handback to Encounters.
func (d *documentOps) handbackRouted() bool {
	for _, r := range d.n.Config.Routes {
		if r.Transform == routing.TransformGPHandback && slices.Contains(r.On.Resource, "Encounter") {
			return true
		}
	}
	return false
}

// raiseManualTransfer records, for a hand-back withheld because it needs a manual transfer,
// a Task for the custody team that recorded the Encounter: what to do and why. One Task per
// Encounter version, however many GP endpoints withheld it.
func (d *documentOps) raiseManualTransfer(e delivery.Entry) {
	if e.State != routing.Withheld || !strings.HasPrefix(e.Reason, ManualTransferPrefix) {
		return
	}
	parts := strings.Split(e.Resource, "/") // Encounter/{id}/_history/{v}
	if len(parts) != 4 || parts[0] != "Encounter" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	task := map[string]any{
		"resourceType": "Task",
		"identifier":   []any{map[string]any{"system": SystemHandbackID, "value": e.Resource}},
		"status":       "requested",
		"intent":       "order",
		"priority":     "urgent",
		"code": map[string]any{"coding": []any{map[string]any{"system": SystemTaskCode, "code": TaskManualGPTransfer,
			"display": "Transfer the custody hand-back to the GP by hand"}}},
		"description":  "The custody hand-back was not sent to a GP electronically. " + strings.TrimPrefix(e.Reason, ManualTransferPrefix) + ".",
		"statusReason": map[string]any{"text": e.Reason},
		"focus":        map[string]any{"reference": "Encounter/" + parts[1]},
		"authoredOn":   time.Now().UTC().Format(time.RFC3339),
	}
	if e.Patient != "" {
		task["for"] = map[string]any{"reference": e.Patient}
	}
	var v int64
	fmt.Sscan(parts[3], &v) //nolint:errcheck // a bad version leaves 0: the owner is then unknown
	if res, err := d.n.Store.VRead(ctx, "Encounter", parts[1], v); err == nil {
		if ag, ok := d.n.Config.Agency(sourceAgency(res.Body)); ok {
			task["owner"] = map[string]any{"identifier": map[string]any{"system": documents.SystemODS, "value": ag.ODS}, "display": ag.Name}
		}
	}
	body, _ := json.Marshal(task)
	resp := d.n.Engine.Handle(ctx, &engine.Request{Method: http.MethodPost, Path: "Task", Body: body,
		Header: http.Header{"Content-Type": {"application/fhir+json"}, "If-None-Exist": {"identifier=" + SystemHandbackID + "|" + e.Resource}}})
	if resp.Status >= 300 && d.n.cfg.Logger != nil {
		d.n.cfg.Logger.Error("raising the manual GP transfer Task failed", zap.String("delivery", e.ID), zap.Int("status", resp.Status),
			zap.ByteString("body", resp.Body))
	}
}

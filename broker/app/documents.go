package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/delivery"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/outcome"
	"github.com/hjbroker/hjbroker/broker/policy"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/routing"
	"github.com/hjbroker/hjbroker/mappings/documents"
	"github.com/hjbroker/hjbroker/mappings/documents/render"
)

// The document operations (docs/court-reports-and-handback.md).
const (
	opCourtReport = "court-report"
	opDocument    = "document"
	opHandback    = "handback"
)

// renderingOps negotiate HTML and PDF themselves (httpapi.Config.Renderings).
var renderingOps = []string{"$" + opCourtReport, "$" + opDocument}

// documentOps serves court reports and GP hand-backs: their operations, the gp-handback
// route transform and the manual-transfer Task raised when a hand-back is withheld.
type documentOps struct {
	n   *Node
	pol *policy.Engine
	// consents reads a patient's Consents for the broker's own decisions.
	consents delivery.Store
}

func newDocumentOps(n *Node, pol *policy.Engine, consents delivery.Store) *documentOps {
	return &documentOps{n: n, pol: pol, consents: consents}
}

// operations are the document operations, for the engine's Operations map.
func (d *documentOps) operations() map[string]engine.Operation {
	return map[string]engine.Operation{
		engine.OperationKey("QuestionnaireResponse", true, opCourtReport): d.courtReport,
		engine.OperationKey("Composition", true, opDocument):              d.document,
		engine.OperationKey("Encounter", true, opHandback):                d.handback,
	}
}

// register provides the gp-handback transform to a registry.
func (d *documentOps) register(t *routing.Transforms) error {
	return t.Register(routing.TransformGPHandback, d.handbackTransform)
}

// onDeliveryState audits a delivery state and raises the manual-transfer Task of a
// withheld hand-back.
func (n *Node) onDeliveryState(e delivery.Entry) {
	n.auditDelivery(e)
	if n.docs != nil {
		n.docs.raiseManualTransfer(e)
	}
}

// namespace derives stable ids: the report of one assessment is always the same Composition.
var namespace = uuid.MustParse("5f1c7a2e-8d3b-4e6a-9b0c-2a4d6e8f1b3c")

func derivedID(parts ...string) string {
	return uuid.NewSHA1(namespace, []byte(strings.Join(parts, "#"))).String()
}

// courtReport serves POST QuestionnaireResponse/{id}/$court-report: the L&D court report of
// an assessment. The optional Parameters body gives recommendation (valueCoding, or valueCode
// of the court-recommendation code system), summary (valueString) and court (valueString:
// the court agency's id, needed only when several are configured). The Composition (final
// when an active Consent or recorded legal basis permits disclosure to the court, else
// preliminary and so never routed) and a DocumentReference holding its PDF and HTML are stored
// with the caller's access; the answer is the document Bundle, or its rendering (Accept or
// _format: text/html, application/pdf).
func (d *documentOps) courtReport(ctx context.Context, req *engine.Request, _, id string) (*engine.Response, error) {
	if req.Method != http.MethodPost {
		return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$court-report creates a report: use POST")
	}
	format, err := negotiate(req)
	if err != nil {
		return nil, err
	}
	params, err := courtParams(req.Body)
	if err != nil {
		return nil, err
	}
	cfg := d.n.Config
	court, err := courtAgency(cfg, params.court)
	if err != nil {
		return nil, err
	}
	author := authorAgency(cfg, req.Access, config.KindLiaisonDiversion)
	qr, err := d.readAs(ctx, req, "QuestionnaireResponse", id)
	if err != nil {
		return nil, err
	}
	if str(qr, "status") == "entered-in-error" {
		return nil, outcome.At(http.StatusUnprocessableEntity, "business-rule", "QuestionnaireResponse.status", "QuestionnaireResponse/%s was entered in error", id)
	}
	pref := refOf(qr, "subject")
	pid, ok := strings.CutPrefix(pref, "Patient/")
	if !ok || pid == "" {
		return nil, outcome.At(http.StatusUnprocessableEntity, "processing", "QuestionnaireResponse.subject", "QuestionnaireResponse/%s is not about a Patient", id)
	}
	patient, err := d.readAs(ctx, req, "Patient", pid)
	if err != nil {
		return nil, err
	}
	var flags, conditions, referrals []map[string]any
	for _, s := range []struct {
		typ string
		dst *[]map[string]any
	}{{"Flag", &flags}, {"Condition", &conditions}, {"ServiceRequest", &referrals}} {
		if *s.dst, err = d.searchAs(ctx, req, s.typ, url.Values{"patient": {pref}}); err != nil {
			return nil, err
		}
	}
	cid := derivedID("court-report", "QuestionnaireResponse/"+id)
	consent, err := d.courtConsent(ctx, cid, pref, author, court)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	doc, err := documents.CourtReport(documents.CourtReportInput{
		ID: cid, BundleID: uuid.NewString(), Date: now, Base: req.Base,
		Author:  documents.Organization{ODS: author.ODS, Name: author.Name},
		Court:   documents.Organization{ODS: court.ODS, Name: court.Name},
		Patient: patient, Assessment: qr, Flags: flags, Conditions: conditions, Referrals: referrals,
		Recommendation: params.recommendation, Summary: params.summary, Consent: consent,
	})
	if err != nil {
		return nil, inputError(err)
	}
	stored, err := d.storeReport(ctx, req, doc)
	if err != nil {
		return nil, err
	}
	resp, err := respond(format, doc)
	if err != nil {
		return nil, err
	}
	resp.Status = stored.status
	resp.setLocation(stored.location)
	resp.Patients = []string{pref}
	return resp.Response, nil
}

type courtParameters struct {
	recommendation map[string]any
	summary, court string
}

// courtParams reads the operation's optional Parameters body.
func courtParams(body []byte) (courtParameters, error) {
	var out courtParameters
	if len(strings.TrimSpace(string(body))) == 0 {
		return out, nil
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		return out, outcome.New(http.StatusBadRequest, "structure", "the body is not JSON: %v", err)
	}
	if p["resourceType"] != "Parameters" {
		return out, outcome.At(http.StatusBadRequest, "invalid", "Parameters", "$court-report takes a Parameters resource (or no body)")
	}
	for i, x := range list(p["parameter"]) {
		prm := obj(x)
		at := fmt.Sprintf("Parameters.parameter[%d]", i)
		switch name := str(prm, "name"); name {
		case "recommendation":
			switch {
			case obj(prm["valueCoding"]) != nil:
				out.recommendation = obj(prm["valueCoding"])
			case str(prm, "valueCode") != "":
				out.recommendation = map[string]any{"system": documents.SystemCourtRecommendation, "code": str(prm, "valueCode")}
			default:
				return out, outcome.At(http.StatusBadRequest, "invalid", at+".value[x]", "recommendation takes valueCoding or valueCode (divert, no-divert, further-assessment)")
			}
			if _, ok := documents.Recommendations[str(out.recommendation, "code")]; !ok {
				return out, outcome.At(http.StatusBadRequest, "code-invalid", at+".value[x]", "recommendation %q is not one of divert, no-divert, further-assessment", str(out.recommendation, "code"))
			}
		case "summary":
			if out.summary = str(prm, "valueString"); strings.TrimSpace(out.summary) == "" {
				return out, outcome.At(http.StatusBadRequest, "invalid", at+".valueString", "summary takes a non-empty valueString")
			}
		case "court":
			if out.court = str(prm, "valueString"); out.court == "" {
				return out, outcome.At(http.StatusBadRequest, "invalid", at+".valueString", "court takes the court agency's id as valueString")
			}
		default:
			return out, outcome.At(http.StatusBadRequest, "not-supported", at+".name", "$court-report has no parameter %q (recommendation, summary, court)", name)
		}
	}
	return out, nil
}

// courtAgency is the named court agency, or the only one configured.
func courtAgency(cfg *config.Config, id string) (*config.Agency, error) {
	var courts []*config.Agency
	for i := range cfg.Agencies {
		if a := &cfg.Agencies[i]; a.Kind == config.KindCourt && (id == "" || a.ID == id) {
			courts = append(courts, a)
		}
	}
	switch {
	case len(courts) == 1:
		return courts[0], nil
	case id != "":
		return nil, outcome.At(http.StatusBadRequest, "value", "Parameters.parameter.where(name='court')", "no court agency has id %q", id)
	case len(courts) == 0:
		return nil, outcome.New(http.StatusUnprocessableEntity, "processing", "no court agency is configured")
	}
	return nil, outcome.At(http.StatusBadRequest, "required", "Parameters.parameter.where(name='court')", "several courts are configured: name one with the court parameter")
}

// authorAgency is the agency of the caller, or for the broker's own requests the first
// agency of the kind.
func authorAgency(cfg *config.Config, a *engine.Access, kind string) *config.Agency {
	if a != nil {
		if ag, ok := cfg.Agency(a.AgencyID); ok {
			return ag
		}
	}
	for i := range cfg.Agencies {
		if cfg.Agencies[i].Kind == kind {
			return &cfg.Agencies[i]
		}
	}
	return &config.Agency{ID: "hjbroker", Name: "hjbroker"}
}

// courtPurpose is the purpose of the routes that take Compositions to the court (HLEGAL
// when none says).
func courtPurpose(cfg *config.Config, court *config.Agency) string {
	for _, r := range cfg.Routes {
		if slices.Contains(r.On.Resource, "Composition") && (slices.Contains(r.To, court.ID) || slices.Contains(r.To, court.Kind)) && r.Purpose != "" {
			return r.Purpose
		}
	}
	return "HLEGAL"
}

// courtConsent is the patient's Consent (or recorded legal basis) that lets the court see
// the report, decided by the same policy the delivery re-check applies; nil when none does.
func (d *documentOps) courtConsent(ctx context.Context, cid, patient string, author, court *config.Agency) (map[string]any, error) {
	consents, err := d.consents.Consents(ctx, patient)
	if err != nil {
		return nil, fmt.Errorf("reading the patient's Consents: %w", err)
	}
	draft := map[string]any{
		"resourceType": "Composition", "id": cid, "status": "final",
		"meta":    map[string]any{"source": engine.SourcePrefix + author.ID},
		"type":    map[string]any{"coding": []any{map[string]any{"system": documents.SystemDocumentType, "code": documents.CodeCourtReport}}},
		"subject": map[string]any{"reference": patient},
	}
	dec := d.pol.Decide(policy.Request{Agency: policy.Agency{ID: court.ID, Kind: court.Kind, ODS: court.ODS}, Purpose: courtPurpose(d.n.Config, court)}, draft, consents)
	if !dec.Permit {
		return nil, nil
	}
	for _, r := range dec.Reasons {
		id, ok := strings.CutPrefix(r.ID, "Consent/")
		if r.Kind != policy.KindConsent || !ok || !(strings.Contains(r.Text, " permits ") || strings.Contains(r.Text, "legal basis")) {
			continue
		}
		for _, c := range consents {
			if str(c, "id") == id {
				return c, nil
			}
		}
	}
	return nil, nil // permitted by configuration alone: the report names no Consent, so stays a draft
}

type storedReport struct {
	status   int
	location string
}

// storeReport writes the report's Composition and a DocumentReference with its renderings in
// one transaction, with the caller's access (scopes checked per entry).
func (d *documentOps) storeReport(ctx context.Context, req *engine.Request, doc map[string]any) (storedReport, error) {
	comp := obj(obj(list(doc["entry"])[0])["resource"])
	cid := str(comp, "id")
	pdf, err := render.PDF(doc)
	if err != nil {
		return storedReport{}, fmt.Errorf("rendering the report as PDF: %w", err)
	}
	page, err := render.HTML(doc)
	if err != nil {
		return storedReport{}, fmt.Errorf("rendering the report as HTML: %w", err)
	}
	title := str(comp, "title")
	attach := func(ct string, data []byte, name string) map[string]any {
		return map[string]any{"attachment": map[string]any{"contentType": ct, "language": "en-GB", "data": base64.StdEncoding.EncodeToString(data),
			"title": name, "creation": str(comp, "date"), "size": len(data)}}
	}
	docRef := map[string]any{
		"resourceType": "DocumentReference",
		"id":           derivedID("rendering", "Composition/"+cid),
		"status":       "current",
		"docStatus":    str(comp, "status"),
		"type":         comp["type"],
		"subject":      comp["subject"],
		"date":         comp["date"],
		"author":       comp["author"],
		"custodian":    comp["custodian"],
		"description":  title,
		"content": []any{
			attach("application/pdf", pdf, title+" (PDF)"),
			attach("text/html", page, title+" (HTML)"),
		},
		"context": map[string]any{"related": []any{map[string]any{"reference": "Composition/" + cid}}},
	}
	tx := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"resource": comp, "request": map[string]any{"method": http.MethodPut, "url": "Composition/" + cid}},
		map[string]any{"resource": docRef, "request": map[string]any{"method": http.MethodPut, "url": "DocumentReference/" + str(docRef, "id")}},
	}}
	body, err := json.Marshal(tx)
	if err != nil {
		return storedReport{}, err
	}
	resp := d.n.Engine.Handle(ctx, &engine.Request{Method: http.MethodPost, Body: body, Base: req.Base, Access: req.Access,
		Header: http.Header{"Content-Type": {"application/fhir+json"}}})
	if resp.Status >= 300 {
		return storedReport{}, passOn(resp)
	}
	out := decoded(resp)
	first := obj(obj(list(out["entry"])[0])["response"])
	st := http.StatusOK
	if strings.HasPrefix(str(first, "status"), "201") {
		st = http.StatusCreated
	}
	return storedReport{status: st, location: str(first, "location")}, nil
}

// document serves GET Composition/{id}/$document: the document Bundle of a stored
// Composition with the resources it refers to that the caller may see (a court sees the
// report, the person and the Consent, never the clinical record it summarises), or its
// rendering (Accept or _format: text/html, application/pdf).
func (d *documentOps) document(ctx context.Context, req *engine.Request, _, id string) (*engine.Response, error) {
	if req.Method != http.MethodGet {
		return nil, outcome.New(http.StatusMethodNotAllowed, "not-supported", "$document is read-only: use GET")
	}
	format, err := negotiate(req)
	if err != nil {
		return nil, err
	}
	comp, err := d.readAs(ctx, req, "Composition", id)
	if err != nil {
		return nil, err
	}
	var res []map[string]any
	for _, r := range documents.References(comp) {
		typ, rid, _ := strings.Cut(r, "/")
		if x, err := d.readAs(ctx, req, typ, rid); err == nil {
			res = append(res, x)
		}
	}
	meta := obj(comp["meta"])
	at, err := time.Parse(time.RFC3339Nano, str(meta, "lastUpdated"))
	if err != nil {
		at = time.Now().UTC()
	}
	doc, err := documents.Document(comp, res, derivedID("document", "Composition/"+id+"/_history/"+str(meta, "versionId")), req.Base, at)
	if err != nil {
		return nil, inputError(err)
	}
	resp, err := respond(format, doc)
	if err != nil {
		return nil, err
	}
	if p := refOf(comp, "subject"); strings.HasPrefix(p, "Patient/") {
		resp.Patients = []string{p}
	}
	return resp.Response, nil
}

// readAs reads a resource as the caller: what the caller may not see is not found.
func (d *documentOps) readAs(ctx context.Context, req *engine.Request, typ, id string) (map[string]any, error) {
	resp := d.n.Engine.Handle(ctx, &engine.Request{Method: http.MethodGet, Path: typ + "/" + id, Base: req.Base, Access: req.Access})
	switch resp.Status {
	case http.StatusOK:
		return decoded(resp), nil
	case http.StatusNotFound, http.StatusGone:
		return nil, outcome.New(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
	}
	return nil, passOn(resp)
}

// maxDocumentEntries bounds each search a document is assembled from.
const maxDocumentEntries = 1000

// searchAs searches as the caller and returns the matches it may see.
func (d *documentOps) searchAs(ctx context.Context, req *engine.Request, typ string, q url.Values) ([]map[string]any, error) {
	q.Set("_count", strconv.Itoa(maxDocumentEntries))
	resp := d.n.Engine.Handle(ctx, &engine.Request{Method: http.MethodGet, Path: typ, Query: q, Base: req.Base, Access: req.Access})
	if resp.Status != http.StatusOK {
		return nil, passOn(resp)
	}
	var out []map[string]any
	for _, e := range list(decoded(resp)["entry"]) {
		if str(obj(obj(e)["search"]), "mode") == "match" {
			out = append(out, obj(obj(e)["resource"]))
		}
	}
	return out, nil
}

// decoded is a response's resource, decoded when it came as stored bytes.
func decoded(resp *engine.Response) map[string]any {
	body := resp.Body
	if resp.Resource != nil {
		// Bundles carry their entries as stored bytes: decode them all alike.
		body = resource.Encode(resp.Resource)
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return m
}

// passOn returns an inner interaction's error answer as the operation's own.
func passOn(resp *engine.Response) error {
	var issues []outcome.Issue
	raw, _ := json.Marshal(decoded(resp)["issue"])
	_ = json.Unmarshal(raw, &issues)
	if len(issues) == 0 {
		issues = []outcome.Issue{{Severity: "error", Code: "exception", Diagnostics: fmt.Sprintf("HTTP %d", resp.Status)}}
	}
	return &outcome.Error{Status: resp.Status, Issues: issues}
}

// inputError turns a document builder's input error into a 422 naming the element.
func inputError(err error) error {
	var ie *documents.InputError
	if errors.As(err, &ie) {
		return outcome.At(http.StatusUnprocessableEntity, "processing", ie.Expression, "%s", ie.Message)
	}
	return err
}

func refOf(res map[string]any, key string) string { return str(obj(res[key]), "reference") }

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// Media types a document operation can answer with.
type docFormat int

const (
	formatJSON docFormat = iota
	formatHTML
	formatPDF
)

// negotiate picks the answer's media type from _format (which wins) or Accept.
func negotiate(req *engine.Request) (docFormat, error) {
	pick := func(v string) (docFormat, bool) {
		mt, _, err := mime.ParseMediaType(strings.ReplaceAll(strings.TrimSpace(v), " ", "+"))
		if err != nil {
			mt = strings.TrimSpace(v)
		}
		switch mt {
		case "html", "text/html", "application/xhtml+xml":
			return formatHTML, true
		case "pdf", "application/pdf":
			return formatPDF, true
		case "json", "application/json", "application/fhir+json", "application/json+fhir", "*/*", "application/*":
			return formatJSON, true
		}
		return 0, false
	}
	if f := req.Query.Get("_format"); f != "" {
		if got, ok := pick(f); ok {
			return got, nil
		}
		return 0, outcome.At(http.StatusNotAcceptable, "not-supported", "_format", "_format %q: this operation answers FHIR JSON, text/html or application/pdf", f)
	}
	acc := req.Header.Get("Accept")
	if acc == "" {
		return formatJSON, nil
	}
	for _, part := range strings.Split(acc, ",") {
		if got, ok := pick(part); ok {
			return got, nil
		}
	}
	return 0, outcome.New(http.StatusNotAcceptable, "not-supported", "Accept %q: this operation answers application/fhir+json, text/html or application/pdf", acc)
}

type docResponse struct{ *engine.Response }

func (r docResponse) setLocation(loc string) {
	if loc == "" {
		return
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set("Location", loc)
}

// respond answers with the document in the negotiated media type.
func respond(f docFormat, doc map[string]any) (docResponse, error) {
	var body []byte
	var err error
	ct := ""
	switch f {
	case formatHTML:
		body, err = render.HTML(doc)
		ct = "text/html; charset=utf-8"
	case formatPDF:
		body, err = render.PDF(doc)
		ct = "application/pdf"
	default:
		return docResponse{&engine.Response{Status: http.StatusOK, Resource: doc}}, nil
	}
	if err != nil {
		return docResponse{}, fmt.Errorf("rendering the document: %w", err)
	}
	return docResponse{&engine.Response{Status: http.StatusOK, Body: body, Header: http.Header{"Content-Type": {ct}}}}, nil
}

// mergeOps adds more operations to ops.
func mergeOps(ops, more map[string]engine.Operation) map[string]engine.Operation {
	for k, v := range more {
		ops[k] = v
	}
	return ops
}

package app_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/broker/engine"
	"github.com/hjbroker/hjbroker/broker/engine/opdefs"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
	"github.com/hjbroker/hjbroker/profiles/validate"
)

func startNode(t *testing.T) *apptest.Server {
	t.Helper()
	return apptest.Start(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()}, app.Config{})
}

func list(v any) []any { l, _ := v.([]any); return l }

func str(v any, path string) string { s, _ := apptest.Get(v, path).(string); return s }

// resourcesByType indexes CapabilityStatement.rest[0].resource by type.
func resourcesByType(cs map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range list(apptest.Get(cs, "rest.0.resource")) {
		m, _ := r.(map[string]any)
		out[str(m, "type")] = m
	}
	return out
}

func codes(v any, field string) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, str(x, field))
	}
	return out
}

// TestEveryOperationHasADefinition fails while any operation the broker serves (the
// engine's own and every one registered in app.New) has no OperationDefinition in
// broker/engine/opdefs.
func TestEveryOperationHasADefinition(t *testing.T) {
	// With the Spine connected, so that its operations are served too.
	s, _ := startWithSpine(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()})
	ops := s.Node.Engine.Operations()
	if len(ops) < 4 {
		t.Fatalf("only %d operations served: %+v", len(ops), ops)
	}
	for _, op := range ops {
		if op.Definition == "" {
			t.Errorf("operation %s has no OperationDefinition: add broker/engine/opdefs/<id>.json with code %q "+
				"(system, type or instance set to match, resource naming its type)", op.Key(), op.Name)
		}
	}
	// And no definition describes an operation the broker does not serve.
	defs, err := opdefs.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defs {
		if !slices.ContainsFunc(ops, func(o engine.OperationInfo) bool { return o.Definition == d["url"] }) {
			t.Errorf("OperationDefinition %s defines no operation the broker serves", d["id"])
		}
	}
}

// TestOperationDefinitionsValid: every definition file is a valid R4 OperationDefinition.
func TestOperationDefinitionsValid(t *testing.T) {
	defs, err := opdefs.All()
	if err != nil {
		t.Fatal(err)
	}
	val, err := app.NewValidator(fhirpath.NewEngine(r4model.Load()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defs {
		res := val.Validate(d, validate.Options{BaseOnly: true})
		for _, is := range res.Issues {
			if is.Severity == "error" || is.Severity == "fatal" {
				t.Errorf("%s: %s at %v", d["id"], is.Diagnostics, is.Expression)
			}
		}
	}
}

func TestServerCapabilityStatement(t *testing.T) {
	s, _ := startWithSpine(t, storetest.Backend{Name: "sqlite", DataDir: t.TempDir()})
	cs := s.Do("GET", "metadata", nil, "Authorization:").Want(t, 200).JSON
	if cs["id"] != "hjbroker" || cs["kind"] != "instance" {
		t.Fatalf("id %v kind %v", cs["id"], cs["kind"])
	}
	byType := resourcesByType(cs)
	if len(byType) < 140 {
		t.Fatalf("only %d resource types", len(byType))
	}
	for typ, r := range byType {
		if len(list(r["interaction"])) == 0 {
			t.Errorf("%s lists no interaction", typ)
		}
		if str(r, "profile") == "" {
			t.Errorf("%s has no profile", typ)
		}
		for _, p := range list(r["searchParam"]) {
			if str(p, "name") == "" || str(p, "type") == "" || str(p, "documentation") == "" {
				t.Errorf("%s searchParam %v lacks name, type or documentation", typ, p)
			}
		}
	}
	if got := str(byType["Patient"], "profile"); got != "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient" {
		t.Errorf("Patient profile %s, want UK Core", got)
	}
	if got := str(byType["Basic"], "profile"); got != "http://hl7.org/fhir/StructureDefinition/Basic" {
		t.Errorf("Basic profile %s, want the base definition", got)
	}
	for typ, want := range map[string]string{
		"Patient":     "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient",
		"Observation": "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation-VitalSigns",
		"Task":        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Task",
	} {
		if sp := codesOf(byType[typ]["supportedProfile"]); !slices.Contains(sp, want) {
			t.Errorf("%s supportedProfile %v lacks %s", typ, sp, want)
		}
	}
	if got := codes(byType["OperationDefinition"]["interaction"], "code"); !slices.Equal(got, []string{"read", "search-type"}) {
		t.Errorf("OperationDefinition interactions %v, want read and search-type", got)
	}
	// AuditEvent is searched in the audit trail, by its own parameters, and never included.
	if got := codes(byType["AuditEvent"]["searchParam"], "name"); !slices.Equal(got, []string{"patient", "agency", "client", "action", "date"}) {
		t.Errorf("AuditEvent search parameters %v", got)
	}
	for _, q := range []string{"patient=Patient/x", "agency=court", "client=court", "action=read", "date=ge2026-01-01"} {
		s.Do("GET", "AuditEvent?"+q, nil).Want(t, 200)
	}
	s.Do("GET", "AuditEvent?entity=x", nil).Want(t, 400) // an R4 parameter the statement rightly leaves out
	for typ, r := range byType {
		for _, inc := range codesOf(r["searchRevInclude"]) {
			if strings.HasPrefix(inc, "AuditEvent:") {
				t.Errorf("%s lists _revinclude %s", typ, inc)
			}
		}
	}
	if got := str(cs, "rest.0.security.service.0.coding.0.code"); got != "SMART-on-FHIR" {
		t.Errorf("SMART security lost: %v", apptest.Get(cs, "rest.0.security"))
	}
	if doc := str(cs, "rest.0.documentation"); !strings.Contains(doc, "CapabilityStatement/agency-{id}") {
		t.Errorf("rest.documentation does not point to the per-agency statements: %q", doc)
	}

	// Every operation named resolves, by url search and by read, to a definition of it.
	type named struct{ where, name, def string }
	var all []named
	for typ, r := range byType {
		for _, op := range list(r["operation"]) {
			all = append(all, named{typ, str(op, "name"), str(op, "definition")})
		}
	}
	for _, op := range list(apptest.Get(cs, "rest.0.operation")) {
		all = append(all, named{"system", str(op, "name"), str(op, "definition")})
	}
	want := map[string]bool{"Patient/everything": false, "Patient/validate": false, "Patient/access-check": false,
		"Patient/summary": false, "system/process-message": false, "Observation/validate": false}
	checked := map[string]bool{}
	for _, op := range all {
		if _, ok := want[op.where+"/"+op.name]; ok {
			want[op.where+"/"+op.name] = true
		}
		if checked[op.def] {
			continue
		}
		checked[op.def] = true
		r := s.DoAs("court", "GET", "OperationDefinition?url="+url.QueryEscape(op.def), nil).Want(t, 200)
		if r.Total() != 1 || str(r.JSON, "entry.0.resource.url") != op.def || str(r.JSON, "entry.0.resource.code") != op.name {
			t.Errorf("%s $%s: definition %s does not resolve: %s", op.where, op.name, op.def, r.Raw)
			continue
		}
		id := op.def[strings.LastIndex(op.def, "/")+1:]
		if got := s.DoAs("court", "GET", "OperationDefinition/"+id, nil).Want(t, 200); got.Str("url") != op.def {
			t.Errorf("OperationDefinition/%s has url %s, want %s", id, got.Str("url"), op.def)
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("operation %s is not in the CapabilityStatement", k)
		}
	}
}

func codesOf(v any) []string {
	var out []string
	for _, x := range list(v) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func TestOperationDefinitionEndpoints(t *testing.T) {
	s := startNode(t)
	defs, err := opdefs.All()
	if err != nil {
		t.Fatal(err)
	}
	all := s.DoAs("probation", "GET", "OperationDefinition", nil).Want(t, 200)
	if all.Total() != len(defs) || len(all.Entries()) != len(defs) {
		t.Errorf("total %d, %d entries, for %d definitions", all.Total(), len(all.Entries()), len(defs))
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"code=everything", []string{"Patient-everything"}},
		{"code=validate,process-message", []string{"Resource-validate", "process-message"}},
		{"_id=Patient-access-check", []string{"Patient-access-check"}},
		{"url=https://hjbroker.dev/fhir/OperationDefinition/Patient-everything|0.1.0", []string{"Patient-everything"}},
		{"url=https://hjbroker.dev/fhir/OperationDefinition/Patient-everything|9", nil},
		{"base=http://hl7.org/fhir/OperationDefinition/Patient-everything", []string{"Patient-everything"}},
		{"name=patient", []string{"Patient-access-check", "Patient-everything", "Patient-summary"}},
		{"code=nope", nil},
	} {
		r := s.DoAs("gp", "GET", "OperationDefinition?"+tc.query, nil).Want(t, 200)
		var ids []string
		for _, e := range r.Entries() {
			ids = append(ids, str(e, "resource.id"))
		}
		if !slices.Equal(ids, tc.want) || r.Total() != len(tc.want) {
			t.Errorf("%s: got %v (total %d), want %v", tc.query, ids, r.Total(), tc.want)
		}
	}
	// An unknown parameter is a warning, or with handling=strict an error.
	r := s.DoAs("gp", "GET", "OperationDefinition?status=active", nil).Want(t, 200)
	entries := r.Entries()
	if len(entries) == 0 || str(entries[len(entries)-1], "resource.issue.0.expression.0") != "status" {
		t.Errorf("no warning about status: %s", r.Raw)
	}
	strict := s.DoAs("gp", "GET", "OperationDefinition?status=active", nil, "Prefer: handling=strict").Want(t, 400)
	if !slices.Contains(strict.IssueExpressions(), "status") {
		t.Errorf("strict: %s", strict.Raw)
	}
	s.DoAs("gp", "GET", "OperationDefinition/nope", nil).Want(t, 404)
	for _, m := range []string{"PUT", "DELETE"} {
		r := s.Do(m, "OperationDefinition/Patient-everything", map[string]any{"resourceType": "OperationDefinition", "id": "Patient-everything"}).Want(t, 405)
		if str(r.JSON, "issue.0.code") != "not-supported" {
			t.Errorf("%s: %s", m, r.Raw)
		}
	}
	s.Do("POST", "OperationDefinition", map[string]any{"resourceType": "OperationDefinition"}).Want(t, 405)
	s.Do("GET", "OperationDefinition/Patient-everything", nil, "Authorization:").Want(t, 401)
}

// agencyStatement reads an agency's statement as its first client and returns interaction
// codes by type and system interaction codes.
func agencyStatement(t *testing.T, s *apptest.Server, ag config.Agency) (map[string][]string, []string, map[string]any) {
	t.Helper()
	r := s.DoAs(ag.Clients[0].ID, "GET", "CapabilityStatement/agency-"+ag.ID, nil).Want(t, 200)
	byType := map[string][]string{}
	for typ, res := range resourcesByType(r.JSON) {
		byType[typ] = codes(res["interaction"], "code")
	}
	return byType, codes(apptest.Get(r.JSON, "rest.0.interaction"), "code"), r.JSON
}

// TestAgencyCapabilityAgreesWithEnforcement: for every demo agency, each interaction its
// CapabilityStatement lists is not refused for want of scope, and each it omits is (403).
func TestAgencyCapabilityAgreesWithEnforcement(t *testing.T) {
	s := startNode(t)
	types := []string{"Patient", "Observation", "Task", "ServiceRequest", "Composition", "Flag"}
	for _, ag := range s.Node.Config.Agencies {
		t.Run(ag.ID, func(t *testing.T) {
			client := ag.Clients[0].ID
			byType, sys, cs := agencyStatement(t, s, ag)
			listedSomething := false
			for _, typ := range types {
				id := "cap-" + client + "-" + strings.ToLower(typ)
				body := map[string]any{"resourceType": typ, "id": id}
				for _, in := range []struct {
					code, method, path string
					body               any
					header             []string
				}{
					{"create", "POST", typ, map[string]any{"resourceType": typ}, nil},
					{"read", "GET", typ + "/" + id, nil, nil},
					{"vread", "GET", typ + "/" + id + "/_history/1", nil, nil},
					{"update", "PUT", typ + "/" + id, body, nil},
					{"patch", "PATCH", typ + "/" + id, `[{"op":"add","path":"/language","value":"en"}]`, []string{"Content-Type: application/json-patch+json"}},
					{"delete", "DELETE", typ + "/" + id, nil, nil},
					{"history-instance", "GET", typ + "/" + id + "/_history", nil, nil},
					{"history-type", "GET", typ + "/_history", nil, nil},
					{"search-type", "GET", typ + "?_id=" + id, nil, nil},
				} {
					listed := slices.Contains(byType[typ], in.code)
					listedSomething = listedSomething || listed
					r := s.DoAs(client, in.method, in.path, in.body, in.header...)
					switch {
					case listed && r.Status == http.StatusForbidden:
						t.Errorf("%s %s is listed but refused: %s", in.code, typ, r.Raw)
					case !listed && r.Status != http.StatusForbidden:
						t.Errorf("%s %s is not listed but answered %d: %.200s", in.code, typ, r.Status, r.Raw)
					}
				}
			}
			if !listedSomething {
				t.Errorf("no interaction listed for any of %v", types)
			}
			for _, in := range []struct{ code, path string }{{"search-system", "?_id=x"}, {"history-system", "_history"}} {
				listed := slices.Contains(sys, in.code)
				r := s.DoAs(client, "GET", in.path, nil)
				if listed == (r.Status == http.StatusForbidden) {
					t.Errorf("%s listed=%v answered %d", in.code, listed, r.Status)
				}
			}
			// The purposes of use it may claim are stated, as codes.
			var purposes []string
			for _, e := range list(apptest.Get(cs, "rest.0.security.extension")) {
				if str(e, "url") == "https://hjbroker.dev/fhir/StructureDefinition/purpose-of-use" {
					purposes = append(purposes, str(e, "valueCoding.code"))
				}
			}
			c, _ := s.Node.Auth.Registry().Client(client)
			if !slices.Equal(purposes, c.Purposes) {
				t.Errorf("purposes %v, want %v", purposes, c.Purposes)
			}
		})
	}
}

func TestAgencyCapabilityAccess(t *testing.T) {
	s := startNode(t)
	// A client reads its own agency's and its own statement, not another's.
	s.DoAs("court", "GET", "CapabilityStatement/agency-court", nil).Want(t, 200)
	s.DoAs("court", "GET", "CapabilityStatement/client-court", nil).Want(t, 200)
	s.DoAs("court", "GET", "CapabilityStatement/hjbroker", nil).Want(t, 200)
	s.DoAs("court", "GET", "CapabilityStatement/agency-probation", nil).Want(t, 403)
	s.DoAs("court", "GET", "CapabilityStatement/client-gp", nil).Want(t, 403)
	s.DoAs("court", "GET", "CapabilityStatement/agency-nowhere", nil).Want(t, 404)
	s.DoAs("operator", "GET", "CapabilityStatement/agency-probation", nil).Want(t, 200)
	s.Do("PUT", "CapabilityStatement/agency-court", map[string]any{"resourceType": "CapabilityStatement", "id": "agency-court"}).Want(t, 405)

	ids := func(r *apptest.Result) []string {
		var out []string
		for _, e := range r.Entries() {
			out = append(out, str(e, "resource.id"))
		}
		return out
	}
	if got := ids(s.DoAs("court", "GET", "CapabilityStatement", nil).Want(t, 200)); !slices.Equal(got, []string{"hjbroker", "agency-court", "client-court"}) {
		t.Errorf("court lists %v", got)
	}
	all := ids(s.DoAs("operator", "GET", "CapabilityStatement", nil).Want(t, 200))
	if len(all) != 1+2*len(s.Node.Config.Agencies) {
		t.Errorf("operator lists %v", all)
	}
	if got := ids(s.DoAs("operator", "GET", "CapabilityStatement?url="+url.QueryEscape("https://hjbroker.dev/fhir/CapabilityStatement/agency-gp"), nil).Want(t, 200)); !slices.Equal(got, []string{"agency-gp"}) {
		t.Errorf("url search: %v", got)
	}

	// What the court statement says: its types only, with what the sharing rules let it see.
	cs := s.DoAs("court", "GET", "CapabilityStatement/agency-court", nil).JSON
	byType := resourcesByType(cs)
	var typesListed []string
	for typ := range byType {
		typesListed = append(typesListed, typ)
	}
	slices.Sort(typesListed)
	if want := []string{"CapabilityStatement", "Composition", "DocumentReference", "OperationDefinition", "Patient"}; !slices.Equal(typesListed, want) {
		t.Errorf("court types %v, want %v", typesListed, want)
	}
	if got := codes(byType["Patient"]["interaction"], "code"); !slices.Equal(got, []string{"read", "vread", "history-instance", "history-type", "search-type"}) {
		t.Errorf("court Patient interactions %v", got)
	}
	doc := str(byType["Composition"], "documentation")
	for _, want := range []string{"court-reports", "HLEGAL, LEGAL", "except V", "explicit Consent"} {
		if !strings.Contains(doc, want) {
			t.Errorf("Composition documentation %q lacks %q", doc, want)
		}
	}
	if ops := codes(byType["Patient"]["operation"], "name"); !slices.Contains(ops, "everything") || !slices.Contains(ops, "validate") {
		t.Errorf("court Patient operations %v", ops)
	}
	if str(cs, "instantiates.0") != "https://hjbroker.dev/fhir/CapabilityStatement/hjbroker" {
		t.Errorf("instantiates %v", cs["instantiates"])
	}

	// Probation may see its types, but L&D's Observations are no sharing rule's for it.
	ld := resourcesByType(s.DoAs("ld-team", "GET", "CapabilityStatement/agency-ld-team", nil).JSON)
	if doc := str(ld["Observation"], "documentation"); !strings.Contains(doc, "direct-care") {
		t.Errorf("ld-team Observation: %q", doc)
	}

	// The statements are valid R4 CapabilityStatements.
	val, err := app.NewValidator(fhirpath.NewEngine(r4model.Load()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"agency-court", "client-custody-hcp", "agency-operators", "hjbroker"} {
		raw := s.Do("GET", "CapabilityStatement/"+id, nil).Want(t, 200).Raw
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for _, is := range val.Validate(m, validate.Options{BaseOnly: true}).Issues {
			if is.Severity == "error" || is.Severity == "fatal" {
				t.Errorf("%s: %s at %v", id, is.Diagnostics, is.Expression)
			}
		}
	}
}

package systest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/adapters/sink"
	"github.com/hjbroker/hjbroker/broker/app/deliverytest"
	"github.com/hjbroker/hjbroker/broker/app/demo"
	"github.com/hjbroker/hjbroker/broker/config"
)

// pathway is two broker processes on one PostgreSQL and one Redis, with the demo agency
// configuration pointed at receivers running in the test.
type pathway struct {
	s         *setup
	nodes     []*broker
	cfg       *config.Config
	receivers map[string]*sink.Sink
	spine     *demo.Spine
	tokens    map[string]string
}

func startPathway(t *testing.T) *pathway {
	t.Helper()
	pg := postgres(t)
	u := deliverytest.RedisURL(t)
	base, err := config.Demo()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := demo.StartSpine()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	demo.AlignGP(base)
	receivers, err := demo.StartReceivers(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range receivers {
			r.Close()
		}
	})
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "spine.key")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(sp.Key)})
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agencies.json")
	if err := demo.WriteConfig(path, base, receivers); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{config: path, dataDir: filepath.Join(dir, "data"), env: []string{
		"HJB_RETRY_BASE=100ms", "HJB_RETRY_MAX=500ms", "HJB_DELIVERY_LEASE=5s", "HJB_LOG_LEVEL=warn",
		"HJB_STORE_URL=" + pg, "HJB_REDIS_URL=" + u, "HJB_REDIS_PREFIX=" + deliverytest.RedisPrefix(t, u),
		"HJB_SPINE_URL=" + sp.URL, "HJB_SPINE_CLIENT_ID=" + sp.Options.ClientID, "HJB_SPINE_KEY_ID=" + sp.Options.KeyID,
		"HJB_SPINE_KEY_FILE=" + keyFile,
	}}
	p := &pathway{s: s, cfg: cfg, receivers: receivers, spine: sp, tokens: map[string]string{}}
	p.nodes = []*broker{s.start(t), s.start(t)}
	return p
}

func (p *pathway) token(t *testing.T, client string) string {
	t.Helper()
	if tok, ok := p.tokens[client]; ok {
		return tok
	}
	p.tokens[client] = p.s.token(t, client)
	return p.tokens[client]
}

// fhir sends a request to node i as client and decodes the JSON answer.
func (p *pathway) fhir(t *testing.T, i int, client, method, path string, body any) (int, map[string]any) {
	t.Helper()
	status, raw := do(t, method, "http://"+p.nodes[i].base+"/fhir/"+path, p.token(t, client), body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: not JSON (%d): %s", method, path, status, raw)
		}
	}
	return status, out
}

func (p *pathway) logs() string {
	var b strings.Builder
	for i, n := range p.nodes {
		fmt.Fprintf(&b, "--- node %d log:\n%s", i+1, n.logs())
	}
	return b.String()
}

// received lists what a receiver got as "Type:version:status" (status when the resource
// has one), in arrival order.
func received(r *sink.Sink) []string {
	var out []string
	for _, rec := range r.Received() {
		for _, res := range rec.Resources {
			v, _ := res["meta"].(map[string]any)["versionId"].(string)
			st, _ := res["status"].(string)
			out = append(out, fmt.Sprintf("%s:%s:%s", res["resourceType"], v, st))
		}
		for _, d := range rec.Deleted {
			out = append(out, "delete "+d)
		}
	}
	return out
}

func TestPathwayAcrossTwoBrokers(t *testing.T) {
	slow(t)
	p := startPathway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := demo.Env{
		Nodes:     []string{"http://" + p.nodes[0].base, "http://" + p.nodes[1].base},
		Token:     func(_ context.Context, client string) (string, error) { return p.token(t, client), nil },
		Config:    p.cfg,
		Receivers: p.receivers,
		Wait:      30 * time.Second,
		Spine:     p.spine.URL,
	}
	tl, err := demo.Story(ctx, env)
	if err != nil {
		t.Fatalf("the pathway did not run: %v\n%s", err, p.logs())
	}
	var text bytes.Buffer
	tl.WriteText(&text, true) //nolint:errcheck // a buffer
	if !tl.OK() {
		t.Fatalf("the pathway had problems:\n%s\n%s", text.String(), p.logs())
	}
	// Steps alternate between the nodes, so each stage's writes and reads crossed nodes.
	perNode := map[int]int{}
	for _, s := range tl.Steps {
		perNode[s.Node]++
	}
	if perNode[0] == 0 || perNode[1] == 0 {
		t.Fatalf("steps per node %v: both nodes must serve the pathway", perNode)
	}
	patient := tl.Patient

	t.Run("what each agency received", func(t *testing.T) {
		// Exactly the deliveries the timeline calls delivered, endpoint by endpoint.
		want := map[string]map[string]demo.Delivery{}
		for _, st := range tl.Steps {
			for _, d := range st.Deliveries {
				if d.State == "delivered" {
					if want[d.Endpoint] == nil {
						want[d.Endpoint] = map[string]demo.Delivery{}
					}
					want[d.Endpoint][d.ID] = d
				}
			}
		}
		for ep, r := range p.receivers {
			got := r.Received()
			if len(got) != len(want[ep]) {
				t.Errorf("%s received %d deliveries, the timeline delivered %d: %v", ep, len(got), len(want[ep]), received(r))
			}
			for _, rec := range got {
				d, ok := want[ep][rec.RequestID]
				if !ok {
					t.Errorf("%s received request %s (%v), which no step delivered", ep, rec.RequestID, rec.Refs())
					continue
				}
				if ep != demo.EndpointGP && (len(rec.Refs()) != 1 || !strings.HasPrefix(d.Resource, rec.Refs()[0]+"/_history/")) {
					t.Errorf("%s: delivery %s carried %v, the log says %s", ep, rec.RequestID, rec.Refs(), d.Resource)
				}
			}
		}
		// And what each must never get.
		never := map[string][]string{
			// L&D's own writes never come back to it (probation's changes to its referrals do).
			demo.EndpointLD: {"Flag", "QuestionnaireResponse", "ServiceRequest:1:", "Composition", "Consent", "DocumentReference", "Patient", "Task:1:"},
			// Probation gets referrals and flags, nothing clinical.
			demo.EndpointProbation: {"Observation", "Condition", "MedicationStatement", "MedicationAdministration", "AllergyIntolerance",
				"QuestionnaireResponse", "Encounter", "Composition", "Patient"},
			// The court gets the report and nothing else; never a draft.
			demo.EndpointCourt: {"Observation", "Condition", "MedicationStatement", "AllergyIntolerance", "QuestionnaireResponse",
				"Encounter", "Flag", "ServiceRequest", "Task", "Composition:1:preliminary", "Composition:2:preliminary"},
			// The GP gets the hand-back at release, never the open episode.
			demo.EndpointGP: {"Encounter:1:", "Encounter:2:", "Observation", "Flag", "ServiceRequest"},
		}
		for ep, prefixes := range never {
			for _, got := range received(p.receivers[ep]) {
				for _, prefix := range prefixes {
					if strings.HasPrefix(got, prefix) {
						t.Errorf("%s received %s", ep, got)
					}
				}
			}
		}
		prob := p.receivers[demo.EndpointProbation].Received()
		for _, rec := range prob {
			if rec.Kind != sink.KindMessage {
				t.Errorf("probation received a %s, want FHIR messages only", rec.Kind)
			}
		}
		if !slices.Contains(received(p.receivers[demo.EndpointProbation]), "ServiceRequest:1:active") {
			t.Errorf("probation did not receive the referral: %v", received(p.receivers[demo.EndpointProbation]))
		}
		ld := received(p.receivers[demo.EndpointLD])
		for _, w := range []string{"Task:2:accepted", "Task:3:in-progress", "Task:4:completed"} {
			if !slices.Contains(ld, w) {
				t.Errorf("L&D did not receive %s: %v", w, ld)
			}
		}
		if i, j := indexOf(ld, "Task:2:accepted"), indexOf(ld, "Task:4:completed"); i < 0 || j < i {
			t.Errorf("L&D received the Task's progress out of order: %v", ld)
		}
		if n := countPrefix(ld, "Observation:1:final"); n < 5 {
			t.Errorf("L&D received %d custody Observations, want the vital signs and NEWS2 (at least 5): %v", n, ld)
		}
	})

	t.Run("GP hand-back", func(t *testing.T) {
		got := p.receivers[demo.EndpointGP].Received()
		if len(got) != 1 || len(got[0].Resources) != 1 {
			t.Fatalf("the GP received %v, want one hand-back", received(p.receivers[demo.EndpointGP]))
		}
		doc := got[0].Resources[0]
		enc := stepResource(tl, "Encounter/")
		if doc["resourceType"] == "Bundle" {
			entries := doc["entry"].([]any)
			comp := entries[0].(map[string]any)["resource"].(map[string]any)
			raw, _ := json.Marshal(comp["type"])
			if doc["type"] != "document" || comp["resourceType"] != "Composition" || !strings.Contains(string(raw), "373942005") {
				t.Errorf("the hand-back is not a discharge-summary document: type %v, %s", doc["type"], raw)
			}
			if e, _ := comp["encounter"].(map[string]any); e == nil || e["reference"] != enc {
				t.Errorf("the hand-back's encounter %v, want %s", comp["encounter"], enc)
			}
		} else if doc["resourceType"] != "Encounter" || doc["status"] != "finished" {
			t.Errorf("the GP received %v", received(p.receivers[demo.EndpointGP]))
		}
	})

	t.Run("the Task workflow", func(t *testing.T) {
		task := stepResource(tl, "Task/")
		status, hist := p.fhir(t, 1, "operator", http.MethodGet, task+"/_history", nil)
		if status != http.StatusOK {
			t.Fatalf("Task history: %d %v", status, hist)
		}
		var statuses []string
		for _, e := range hist["entry"].([]any) {
			statuses = append(statuses, e.(map[string]any)["resource"].(map[string]any)["status"].(string))
		}
		if got := strings.Join(statuses, ","); got != "completed,in-progress,accepted,requested" {
			t.Errorf("Task versions (newest first): %s", got)
		}
		// Completing the Task closed its referral, in the same transaction, and L&D got that.
		status, task4 := p.fhir(t, 0, "operator", http.MethodGet, task, nil)
		if status != http.StatusOK {
			t.Fatalf("reading %s: %d %v", task, status, task4)
		}
		focus, _ := task4["focus"].(map[string]any)["reference"].(string)
		status, sr := p.fhir(t, 0, "operator", http.MethodGet, focus, nil)
		if status != http.StatusOK || sr["status"] != "completed" {
			t.Errorf("the referral %s after its Task completed: %d status %v", focus, status, sr["status"])
		}
		if !slices.Contains(received(p.receivers[demo.EndpointLD]), "ServiceRequest:2:completed") {
			t.Errorf("L&D did not receive the closed referral: %v", received(p.receivers[demo.EndpointLD]))
		}
		// Probation reads its Task, but not the clinical record; a write to a field it may not
		// change is refused on either node.
		if status, _ := p.fhir(t, 0, "probation", http.MethodGet, task, nil); status != http.StatusOK {
			t.Errorf("probation reading its Task: %d", status)
		}
		if status, _ := p.fhir(t, 1, "probation", http.MethodPost, "Task", map[string]any{"resourceType": "Task", "status": "requested", "intent": "order"}); status != http.StatusForbidden {
			t.Errorf("probation creating a Task: %d, want 403 (its scope is read, update, search)", status)
		}
	})

	t.Run("court delivery depends on consent", func(t *testing.T) {
		report := stepResource(tl, "Composition/")
		court := tl.Stage(demo.StageCourt)
		if len(court) != 2 {
			t.Fatalf("%d court-report steps, want 2", len(court))
		}
		// Before consent nothing reached the court: the report was a draft the route does not
		// send, or (written final by hand) withheld at delivery.
		for _, d := range court[0].Deliveries {
			if d.Endpoint == demo.EndpointCourt && d.State != "withheld" {
				t.Errorf("before consent: %+v", d)
			}
		}
		var after []demo.Delivery
		for _, d := range court[1].Deliveries {
			if d.Endpoint == demo.EndpointCourt {
				after = append(after, d)
			}
		}
		if len(after) != 1 || after[0].State != "delivered" || !strings.HasPrefix(after[0].Resource, report+"/_history/") {
			t.Errorf("after consent: %+v, want %s delivered once", after, report)
		}
		for _, d := range adminDeliveries(t, p, 0, "destination="+demo.EndpointCourt) {
			if d["state"] == "delivered" && d["resource"] != after[0].Resource {
				t.Errorf("the court was also sent %v", d)
			}
		}
		got := p.receivers[demo.EndpointCourt].Received()
		if len(got) == 1 && got[0].Resources[0]["status"] != "final" {
			t.Errorf("the court received a report with status %v", got[0].Resources[0]["status"])
		}
		// The court reads it on either node now, and still sees nothing clinical.
		for i := range p.nodes {
			if status, _ := p.fhir(t, i, "court", http.MethodGet, report, nil); status != http.StatusOK {
				t.Errorf("node %d: the court reading the report: %d", i+1, status)
			}
			if status, _ := p.fhir(t, i, "court", http.MethodGet, "Observation?patient="+patient, nil); status != http.StatusForbidden {
				t.Errorf("node %d: the court searching Observations: %d, want 403", i+1, status)
			}
		}
	})

	t.Run("restricted patient", func(t *testing.T) {
		restrictedPatient(t, p)
	})

	t.Run("nothing lost or duplicated", func(t *testing.T) {
		time.Sleep(500 * time.Millisecond) // let a duplicate show up, if there were one
		ds := adminDeliveries(t, p, 1, "")
		delivered := map[string]bool{}
		perVersion := map[string]int{}
		for _, d := range ds {
			switch d["state"] {
			case "delivered":
				delivered[d["id"].(string)] = true
				perVersion[d["resource"].(string)+" -> "+d["destination"].(string)]++
			case "withheld":
			default:
				t.Errorf("delivery not ended: %v", d)
			}
		}
		for k, n := range perVersion {
			if n > 1 {
				t.Errorf("%s delivered under %d delivery ids", k, n)
			}
		}
		got := 0
		for id, r := range p.receivers {
			for _, rec := range r.Received() {
				got++
				if !delivered[rec.RequestID] {
					t.Errorf("%s received request %s, which the delivery log does not call delivered", id, rec.RequestID)
				}
			}
			if r.Repeats() != 0 || r.Rejected() != 0 {
				t.Errorf("%s saw %d repeated and %d malformed deliveries, want none", id, r.Repeats(), r.Rejected())
			}
		}
		if got != len(delivered) {
			t.Errorf("receivers recorded %d deliveries, the log says %d were delivered", got, len(delivered))
		}
		// Each node counts what it delivered: together exactly once each.
		op := p.token(t, "operator")
		sum := 0
		for _, n := range p.nodes {
			for ep := range p.receivers {
				sum += deliveredTo(t, n, op, ep)
			}
		}
		if sum != len(delivered) {
			t.Errorf("the nodes' metrics count %d deliveries, the log %d", sum, len(delivered))
		}
	})
	if t.Failed() {
		t.Logf("timeline:\n%s", text.String())
	}
}

// restrictedPatient books in a patient whose record is restricted (confidentiality R) on
// node 1 and checks on node 2 that health agencies see them without address, telephone or
// GP, that their episode still reaches L&D for their care, that the GP hand-back is withheld
// for a manual transfer (custody gets a Task) without naming the practice, and that
// operators see the record whole.
func restrictedPatient(t *testing.T, p *pathway) {
	gpODS := ""
	for _, a := range p.cfg.Agencies {
		if a.Kind == config.KindGP {
			gpODS = a.ODS
		}
	}
	pat := map[string]any{
		"resourceType": "Patient",
		"meta":         map[string]any{"security": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}}},
		"identifier":   []any{map[string]any{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000017"}},
		"name":         []any{map[string]any{"family": "Hidden", "given": []any{"Ann"}}},
		"birthDate":    "1990-03-14",
		"address":      []any{map[string]any{"line": []any{"7 Hidden Lane"}, "city": "Anytown"}},
		"telecom":      []any{map[string]any{"system": "phone", "value": "07700 900123"}},
		"generalPractitioner": []any{map[string]any{"identifier": map[string]any{
			"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": gpODS}}},
	}
	status, created := p.fhir(t, 0, "custody-hcp", http.MethodPost, "Patient", pat)
	if status != http.StatusCreated {
		t.Fatalf("creating the restricted patient: %d %v", status, created)
	}
	id := created["id"].(string)
	enc := map[string]any{
		"resourceType": "Encounter", "status": "finished",
		"class":   map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
		"subject": map[string]any{"reference": "Patient/" + id},
		"period":  map[string]any{"start": "2026-01-01T10:00:00Z", "end": "2026-01-01T14:00:00Z"},
	}
	status, e := p.fhir(t, 0, "custody-hcp", http.MethodPost, "Encounter", enc)
	if status != http.StatusCreated {
		t.Fatalf("creating the restricted patient's Encounter: %d %v", status, e)
	}
	encRef := "Encounter/" + e["id"].(string)
	for _, client := range []string{"ld-team", "gp"} {
		status, got := p.fhir(t, 1, client, http.MethodGet, "Patient/"+id, nil)
		if status != http.StatusOK {
			t.Fatalf("%s reading the restricted patient: %d %v", client, status, got)
		}
		for _, k := range []string{"address", "telecom", "generalPractitioner"} {
			if got[k] != nil {
				t.Errorf("%s sees %s of a restricted patient: %v", client, k, got[k])
			}
		}
		raw, _ := json.Marshal(got)
		if strings.Contains(string(raw), "Hidden Lane") || !strings.Contains(string(raw), "REDACTED") {
			t.Errorf("%s's copy is not redacted and marked: %s", client, raw)
		}
	}
	// Probation has no consent for this person: the patient is unknown to it.
	if status, _ := p.fhir(t, 1, "probation", http.MethodGet, "Patient/"+id, nil); status != http.StatusNotFound {
		t.Errorf("probation reading a patient it has no consent for: %d, want 404", status)
	}
	if status, got := p.fhir(t, 1, "operator", http.MethodGet, "Patient/"+id, nil); status != http.StatusOK || got["address"] == nil {
		t.Errorf("the operator's read: %d %v", status, got)
	}
	// The episode reaches L&D for the person's care.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.receivers[demo.EndpointLD].Wait(ctx, func(rs []sink.Received) bool {
		for _, r := range rs {
			if slices.Contains(r.Refs(), encRef) {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Errorf("L&D: the restricted patient's Encounter: %v\n%s", err, p.logs())
	}
	// The hand-back is withheld for a manual transfer, and custody is asked to do it.
	var gp map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for gp == nil || gp["state"] == "pending" || gp["state"] == "retrying" {
		if time.Now().After(deadline) {
			t.Fatalf("the restricted patient's hand-back did not end: %v\n%s", gp, p.logs())
		}
		time.Sleep(100 * time.Millisecond)
		for _, d := range adminDeliveries(t, p, 1, "patient=Patient/"+id+"&destination="+demo.EndpointGP) {
			gp = d
		}
	}
	reason, _ := gp["reason"].(string)
	if gp["state"] != "withheld" || !strings.Contains(reason, "manual GP transfer") || strings.Contains(reason, gpODS) || strings.Contains(reason, "Hidden Lane") {
		t.Errorf("the restricted patient's hand-back: %v", gp)
	}
	var tasks []any
	for time.Now().Before(deadline) && len(tasks) == 0 {
		status, b := p.fhir(t, 0, "custody-hcp", http.MethodGet,
			"Task?code=https://hjbroker.dev/fhir/CodeSystem/task-code|manual-gp-transfer&patient=Patient/"+id, nil)
		if status != http.StatusOK {
			t.Fatalf("custody searching its manual-transfer Tasks: %d %v", status, b)
		}
		tasks, _ = b["entry"].([]any)
		time.Sleep(100 * time.Millisecond)
	}
	if len(tasks) != 1 {
		t.Errorf("custody has %d manual-transfer Tasks for the restricted patient, want 1", len(tasks))
	}
	for ep, r := range p.receivers {
		for _, rec := range r.Received() {
			raw, _ := json.Marshal(rec.Resources)
			if strings.Contains(string(raw), "Hidden Lane") || strings.Contains(string(raw), "07700 900123") {
				t.Errorf("%s received the restricted patient's address or telephone: %s", ep, raw)
			}
			if ep == demo.EndpointGP && strings.Contains(string(raw), id) {
				t.Errorf("the GP received something about the restricted patient: %s", raw)
			}
		}
	}
}

func countPrefix(l []string, prefix string) int {
	n := 0
	for _, x := range l {
		if strings.HasPrefix(x, prefix) {
			n++
		}
	}
	return n
}

func indexOf(l []string, s string) int {
	for i, x := range l {
		if x == s {
			return i
		}
	}
	return -1
}

// stepResource finds the first stored resource of a type ("Task/") in the timeline.
func stepResource(tl *demo.Timeline, prefix string) string {
	for _, s := range tl.Steps {
		for _, a := range s.Actions {
			for _, v := range a.Stored {
				if strings.HasPrefix(v, prefix) {
					ref, _, _ := strings.Cut(v, "/_history/")
					return ref
				}
			}
		}
	}
	return ""
}

// adminDeliveries lists the delivery log through node i's admin API, oldest first.
func adminDeliveries(t *testing.T, p *pathway, i int, query string) []map[string]any {
	t.Helper()
	status, body := do(t, http.MethodGet, "http://"+p.nodes[i].base+"/admin/deliveries?limit=1000&"+query, p.token(t, "operator"), nil)
	var r struct {
		Deliveries []map[string]any `json:"deliveries"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &r) != nil {
		t.Fatalf("admin deliveries: %d %s", status, body)
	}
	sort.SliceStable(r.Deliveries, func(a, b int) bool {
		return r.Deliveries[a]["createdAt"].(string) < r.Deliveries[b]["createdAt"].(string)
	})
	return r.Deliveries
}

// deliveredTo reads a node's hjbroker_deliveries_total for an endpoint, outcome delivered.
func deliveredTo(t *testing.T, b *broker, token, endpoint string) int {
	t.Helper()
	status, body := do(t, http.MethodGet, "http://"+b.base+"/metrics", token, nil)
	if status != http.StatusOK {
		t.Fatalf("metrics: %d", status)
	}
	prefix := fmt.Sprintf(`hjbroker_deliveries_total{endpoint=%q,outcome="delivered"}`, endpoint)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			var n float64
			fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, prefix)), &n) //nolint:errcheck // 0 when unparsable
			return int(n)
		}
	}
	return 0
}

package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
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
	}}
	p := &pathway{s: s, cfg: cfg, receivers: receivers, tokens: map[string]string{}}
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
		count := func(list []string, prefix string) int {
			n := 0
			for _, s := range list {
				if strings.HasPrefix(s, prefix) {
					n++
				}
			}
			return n
		}
		ld := received(p.receivers[demo.EndpointLD])
		for prefix, want := range map[string]int{
			"Encounter:1:in-progress": 1, "Encounter:2:finished": 1, "Observation:1:final": 5, "Condition:1:": 2,
			"MedicationStatement:1:active": 1, "AllergyIntolerance:1:": 1,
			"Task:2:accepted": 1, "Task:3:in-progress": 1, "Task:4:completed": 1,
			// L&D's own writes never come back to it; the court report is not for L&D.
			"Flag": 0, "QuestionnaireResponse": 0, "ServiceRequest": 0, "Composition": 0, "Consent": 0, "Patient": 0,
		} {
			if got := count(ld, prefix); got != want {
				t.Errorf("L&D received %d of %s, want %d; all: %v", got, prefix, want, ld)
			}
		}
		if i, j := indexOf(ld, "Task:2:accepted"), indexOf(ld, "Task:4:completed"); i < 0 || j < i {
			t.Errorf("L&D received the Task's progress out of order: %v", ld)
		}
		prob := p.receivers[demo.EndpointProbation].Received()
		if len(prob) != 1 || prob[0].Kind != sink.KindMessage || strings.Join(received(p.receivers[demo.EndpointProbation]), " ") != "ServiceRequest:1:active" {
			t.Errorf("probation received %v, want only the referral as a FHIR message", received(p.receivers[demo.EndpointProbation]))
		}
		// The court gets the report once, the version issued after consent, never the first.
		if got := strings.Join(received(p.receivers[demo.EndpointCourt]), " "); got != "Composition:2:final" {
			t.Errorf("the court received %q, want only the report's second version", got)
		}
		gp := received(p.receivers[demo.EndpointGP])
		if count(gp, "Encounter:2:finished") != 1 || count(gp, "Encounter:1") != 0 || count(gp, "Observation") != 0 {
			t.Errorf("the GP received %v, want the finished custody Encounter (hand-back) and no open one", gp)
		}
		for _, r := range p.receivers[demo.EndpointGP].Received() {
			for _, res := range r.Resources {
				if res["resourceType"] == "Encounter" && res["period"].(map[string]any)["end"] == nil {
					t.Errorf("the hand-back Encounter has no end: %v", res)
				}
			}
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
		ds := adminDeliveries(t, p, 0, "destination="+demo.EndpointCourt)
		states := map[string]map[string]any{}
		for _, d := range ds {
			states[d["resource"].(string)] = d
		}
		v1, v2 := states[report+"/_history/1"], states[report+"/_history/2"]
		if v1 == nil || v1["state"] != "withheld" || !strings.Contains(v1["reason"].(string), "Consent") {
			t.Errorf("version 1 (before consent) to the court: %v", v1)
		}
		if v2 == nil || v2["state"] != "delivered" {
			t.Errorf("version 2 (after consent) to the court: %v", v2)
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
// GP, that the routes still serve their care, and that operators see the record whole.
func restrictedPatient(t *testing.T, p *pathway) {
	pat := map[string]any{
		"resourceType": "Patient",
		"meta":         map[string]any{"security": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}}},
		"identifier":   []any{map[string]any{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000017"}},
		"name":         []any{map[string]any{"family": "Restricted", "given": []any{"Alex"}}},
		"birthDate":    "1985-02-01",
		"address":      []any{map[string]any{"line": []any{"7 Hidden Lane"}, "city": "Anytown"}},
		"telecom":      []any{map[string]any{"system": "phone", "value": "07700 900123"}},
		"generalPractitioner": []any{map[string]any{"identifier": map[string]any{
			"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "XGP001"}}},
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
	// The episode is routed for care as for anyone: to L&D and, finished, to the GP.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	encRef := "Encounter/" + e["id"].(string)
	for _, ep := range []string{demo.EndpointLD, demo.EndpointGP} {
		err := p.receivers[ep].Wait(ctx, func(rs []sink.Received) bool {
			for _, r := range rs {
				if slicesContains(r.Refs(), encRef) {
					return true
				}
			}
			return false
		})
		if err != nil {
			t.Errorf("%s: the restricted patient's Encounter: %v\n%s", ep, err, p.logs())
		}
	}
	for ep, r := range p.receivers {
		for _, rec := range r.Received() {
			raw, _ := json.Marshal(rec.Resources)
			if strings.Contains(string(raw), "Hidden Lane") || strings.Contains(string(raw), "07700 900123") {
				t.Errorf("%s received the restricted patient's address or telephone: %s", ep, raw)
			}
		}
	}
}

func slicesContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
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

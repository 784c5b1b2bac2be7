package routing

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/config"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

const agenciesYAML = `version: 1
agencies:
  - id: cust
    ods: XC1
    name: Custody
    kind: custody-healthcare
    endpoints:
      - {id: cust-ep, type: fhir-rest, url: "http://127.0.0.1:9/fhir"}
  - id: ld
    ods: XL1
    name: L and D
    kind: liaison-diversion
    endpoints:
      - {id: ld-a, type: fhir-rest, url: "http://127.0.0.1:9/a"}
      - {id: ld-b, type: fhir-message, url: "http://127.0.0.1:9/b"}
  - id: court
    ods: XCT1
    name: Court
    kind: court
    endpoints:
      - {id: court-ep, type: fhir-rest, url: "http://127.0.0.1:9/court"}
  - id: prob
    ods: XP1
    name: Probation
    kind: probation
    endpoints:
      - {id: prob-ep, type: fhir-message, url: "http://127.0.0.1:9/prob"}
  - id: gp1
    ods: XG1
    name: GP one
    kind: gp
    endpoints:
      - {id: gp1-ep, type: fhir-rest, url: "http://127.0.0.1:9/gp1"}
  - id: gp2
    ods: XG2
    name: GP two
    kind: gp
    endpoints:
      - {id: gp2-ep, type: fhir-rest, url: "http://127.0.0.1:9/gp2"}
  - id: ops
    ods: XOP1
    name: Operators
    kind: broker
`

const routesYAML = `routes:
  - id: obs-created
    on: {event: create, resource: Observation}
    from: [custody-healthcare]
    to: [liaison-diversion]
    purpose: TREAT
  - id: obs-profiled
    on: {event: update, resource: Observation}
    profile: http://example.org/StructureDefinition/custody-obs
    to: [gp]
    purpose: COC
  - id: condition-deleted
    on: {event: delete, resource: Condition}
    to: [ld]
    purpose: TREAT
  - id: referral-message
    on: {event: message, messageEvent: servicerequest-request}
    to: [prob/prob-ep]
    transform: fhir-message
    purpose: COC
  - id: task-done
    on: {event: task-status, taskStatus: [completed, rejected]}
    from: [prob]
    to: [ld/ld-a]
    purpose: COC
  - id: court-report
    on: {event: [create, update], resource: Composition}
    criteria: type.coding.where(code = 'court-report').exists()
    to: [court]
    purpose: HLEGAL
  - id: flags-to-health
    on: {event: create, resource: Flag}
    to: [custody-healthcare, liaison-diversion]
    purpose: TREAT
  - id: encounter-gp-first
    on: {event: create, resource: Encounter}
    to: [gp]
    purpose: COC
  - id: encounter-gp1-second
    on: {event: create, resource: Encounter}
    to: [gp1, court]
    purpose: TREAT
`

var testEngine = fhirpath.NewEngine(r4model.Load())

func parse(t *testing.T, yml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yml), "routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func seqIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("d%d", n) }
}

func newTestRouter(t *testing.T, opts ...Option) *Router {
	t.Helper()
	opts = append([]Option{WithIDs(seqIDs()), WithClock(func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) })}, opts...)
	r, err := New(parse(t, agenciesYAML+routesYAML), testEngine, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func res(js string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		panic(err)
	}
	return m
}

// short renders deliveries as "route>destination:purpose" for comparison.
func short(ds []Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.Route+">"+d.Destination+":"+d.Purpose)
	}
	return out
}

func TestMatch(t *testing.T) {
	r := newTestRouter(t)
	obs := res(`{"resourceType":"Observation","id":"o1","status":"final","meta":{"profile":["http://example.org/StructureDefinition/custody-obs|1.0"]}}`)
	cases := []struct {
		name string
		ev   Event
		want []string
	}{
		{"create by kind of source, to every endpoint of a kind",
			Event{Kind: Create, ResourceType: "Observation", ID: "o1", Resource: obs, SourceAgency: "cust"},
			[]string{"obs-created>ld-a:TREAT", "obs-created>ld-b:TREAT"}},
		{"from filters the source", Event{Kind: Create, ResourceType: "Observation", ID: "o1", Resource: obs, SourceAgency: "gp1"}, []string{}},
		{"from needs a known source", Event{Kind: Create, ResourceType: "Observation", ID: "o1", Resource: obs}, []string{}},
		{"event kind must match", Event{Kind: Delete, ResourceType: "Observation", ID: "o1", SourceAgency: "cust"}, []string{}},
		{"profile with version suffix matches",
			Event{Kind: Update, ResourceType: "Observation", ID: "o1", Resource: obs, SourceAgency: "cust"},
			[]string{"obs-profiled>gp1-ep:COC", "obs-profiled>gp2-ep:COC"}},
		{"profile absent", Event{Kind: Update, ResourceType: "Observation", ID: "o1", Resource: res(`{"resourceType":"Observation","id":"o1"}`)}, []string{}},
		{"other profile", Event{Kind: Update, ResourceType: "Observation", ID: "o1",
			Resource: res(`{"resourceType":"Observation","meta":{"profile":["http://example.org/StructureDefinition/custody-obs-extra"]}}`)}, []string{}},
		{"delete by agency id", Event{Kind: Delete, ResourceType: "Condition", ID: "c1", SourceAgency: "cust"},
			[]string{"condition-deleted>ld-a:TREAT", "condition-deleted>ld-b:TREAT"}},
		{"delete of another type", Event{Kind: Delete, ResourceType: "Flag", ID: "f1"}, []string{}},
		{"message event code", Event{Kind: Message, ResourceType: "Bundle", ID: "b1", MessageEvent: "servicerequest-request", SourceAgency: "ld",
			Resource: res(`{"resourceType":"Bundle","type":"message"}`)}, []string{"referral-message>prob-ep:COC"}},
		{"other message event", Event{Kind: Message, ResourceType: "Bundle", MessageEvent: "booking-request", SourceAgency: "ld"}, []string{}},
		{"task status filter", Event{Kind: TaskStatus, ResourceType: "Task", ID: "t1", TaskStatus: "completed", PreviousStatus: "in-progress", SourceAgency: "prob"},
			[]string{"task-done>ld-a:COC"}},
		{"task status not listed", Event{Kind: TaskStatus, ResourceType: "Task", ID: "t1", TaskStatus: "in-progress", SourceAgency: "prob"}, []string{}},
		{"criteria true", Event{Kind: Update, ResourceType: "Composition", ID: "k1", SourceAgency: "ld",
			Resource: res(`{"resourceType":"Composition","type":{"coding":[{"code":"court-report"}]}}`)}, []string{"court-report>court-ep:HLEGAL"}},
		{"criteria false", Event{Kind: Create, ResourceType: "Composition", ID: "k1", SourceAgency: "ld",
			Resource: res(`{"resourceType":"Composition","type":{"coding":[{"code":"discharge"}]}}`)}, []string{}},
		{"criteria without a resource", Event{Kind: Create, ResourceType: "Composition", ID: "k1", SourceAgency: "ld"}, []string{}},
		{"no delivery to the source agency", Event{Kind: Create, ResourceType: "Flag", ID: "f1", SourceAgency: "cust", Resource: res(`{"resourceType":"Flag"}`)},
			[]string{"flags-to-health>ld-a:TREAT", "flags-to-health>ld-b:TREAT"}},
		{"no delivery to the source agency (other side)", Event{Kind: Create, ResourceType: "Flag", ID: "f1", SourceAgency: "ld", Resource: res(`{"resourceType":"Flag"}`)},
			[]string{"flags-to-health>cust-ep:TREAT"}},
		{"an endpoint gets one delivery: the first matching route's", Event{Kind: Create, ResourceType: "Encounter", ID: "e1", SourceAgency: "cust", Resource: res(`{"resourceType":"Encounter"}`)},
			[]string{"encounter-gp-first>gp1-ep:COC", "encounter-gp-first>gp2-ep:COC", "encounter-gp1-second>court-ep:TREAT"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := short(r.Match(tc.ev))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestMatchFillsDeliveries(t *testing.T) {
	r := newTestRouter(t)
	ds := r.Match(Event{Kind: Message, ResourceType: "Bundle", ID: "b1", Version: 3, MessageEvent: "servicerequest-request",
		SourceAgency: "ld", Patient: "Patient/p1", Resource: res(`{"resourceType":"Bundle"}`)})
	want := []Delivery{{ID: "d1", Route: "referral-message", Destination: "prob-ep", Agency: "prob", SourceAgency: "ld", Purpose: "COC",
		Transform: "fhir-message", Event: "message", ResourceType: "Bundle", ResourceID: "b1", Version: 3, Patient: "Patient/p1",
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}
	if !reflect.DeepEqual(ds, want) {
		t.Fatalf("got  %+v\nwant %+v", ds, want)
	}
	// A Patient is its own patient; ids are new per delivery.
	ds = r.Match(Event{Kind: Create, ResourceType: "Flag", ID: "f1", SourceAgency: "cust", Resource: res(`{"resourceType":"Flag"}`)})
	if len(ds) != 2 || ds[0].ID == ds[1].ID || ds[0].Patient != "" {
		t.Fatalf("deliveries: %+v", ds)
	}
	ds = r.Match(Event{Kind: Delete, ResourceType: "Condition", ID: "c1"})
	if ds[0].Patient != "" || ds[0].Transform != "" {
		t.Fatalf("delete delivery: %+v", ds[0])
	}
}

func TestMatchPatientFromPatient(t *testing.T) {
	cfg := parse(t, agenciesYAML+"routes:\n  - id: p\n    on: {event: update, resource: Patient}\n    to: [gp1]\n    purpose: COC\n")
	r, err := New(cfg, testEngine)
	if err != nil {
		t.Fatal(err)
	}
	ds := r.Match(Event{Kind: Update, ResourceType: "Patient", ID: "p9", Resource: res(`{"resourceType":"Patient"}`)})
	if len(ds) != 1 || ds[0].Patient != "Patient/p9" || len(ds[0].ID) != 36 {
		t.Fatalf("got %+v", ds)
	}
}

func TestCriteriaErrorDoesNotMatch(t *testing.T) {
	cfg := parse(t, agenciesYAML+"routes:\n  - id: multi\n    on: {event: create, resource: Observation}\n    criteria: code.coding\n    to: [gp1]\n    purpose: COC\n")
	var failed []string
	r, err := New(cfg, testEngine, WithErrorHandler(func(route string, err error) { failed = append(failed, route+": "+err.Error()) }))
	if err != nil {
		t.Fatal(err)
	}
	one := res(`{"resourceType":"Observation","code":{"coding":[{"code":"a"}]}}`)
	if got := short(r.Match(Event{Kind: Create, ResourceType: "Observation", Resource: one})); len(got) != 1 || len(failed) != 0 {
		t.Fatalf("single coding: %v %v", got, failed)
	}
	two := res(`{"resourceType":"Observation","code":{"coding":[{"code":"a"},{"code":"b"}]}}`)
	if got := r.Match(Event{Kind: Create, ResourceType: "Observation", Resource: two}); len(got) != 0 {
		t.Fatalf("a failing criterion matched: %v", short(got))
	}
	if len(failed) != 1 || !strings.HasPrefix(failed[0], "multi: ") {
		t.Fatalf("error handler got %q", failed)
	}
}

// TestBadRoutes checks that every kind of route mistake is reported with its path and line,
// whether the configuration check or route compilation finds it.
func TestBadRoutes(t *testing.T) {
	head := agenciesYAML + "routes:\n"
	headLines := strings.Count(head, "\n")
	cases := []struct {
		name, route string
		path        string
		line        int // within the route text, 1-based
		msg         string
	}{
		{"bad criteria", "  - id: x\n    on: {event: create, resource: Observation}\n    criteria: status = = 'final'\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].criteria", 3, "FHIRPath"},
		{"criteria naming an unknown element", "  - id: x\n    on: {event: create, resource: Observation}\n    criteria: Observation.colour = 'red'\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].criteria", 3, "FHIRPath"},
		{"unknown transform", "  - id: x\n    on: {event: create, resource: Observation}\n    to: [gp1]\n    transform: hl7v2\n    purpose: COC\n",
			"routes[0].transform", 4, `unknown transform "hl7v2" (known: fhir-message, gp-handback, none)`},
		{"unknown resource type", "  - id: x\n    on:\n      event: create\n      resource: [Observation, Obsrvation]\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].on.resource[1]", 4, `"Obsrvation" is not an R4 resource type`},
		{"agency without endpoints", "  - id: x\n    on: {event: create, resource: Observation}\n    to: [ops]\n    purpose: COC\n",
			"routes[0].to", 3, "no endpoint"},
		{"unknown destination", "  - id: x\n    on: {event: create, resource: Observation}\n    to: [gp1, police]\n    purpose: COC\n",
			"routes[0].to[1]", 3, `"police" is neither`},
		{"unknown endpoint", "  - id: x\n    on: {event: create, resource: Observation}\n    to: [gp1/ld-a]\n    purpose: COC\n",
			"routes[0].to[0]", 3, `agency "gp1" has no endpoint "ld-a"`},
		{"unknown source", "  - id: x\n    on: {event: create, resource: Observation}\n    from: [nobody]\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].from[0]", 3, `"nobody" is neither`},
		{"create without resource", "  - id: x\n    on: {event: create}\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].on", 2, "need resource"},
		{"message without code", "  - id: x\n    on:\n      event: message\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].on", 2, "need messageEvent"},
		{"taskStatus on another event", "  - id: x\n    on:\n      event: update\n      resource: Task\n      taskStatus: completed\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].on.taskStatus", 5, "only to the task-status event"},
		{"bad event", "  - id: x\n    on:\n      event: [create, upsert]\n      resource: Task\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].on.event[1]", 3, "must be one of"},
		{"bad task status", "  - id: x\n    on:\n      event: task-status\n      taskStatus: done\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].on.taskStatus", 4, ""},
		{"unknown key in on", "  - id: x\n    on:\n      event: create\n      resource: Task\n      colour: red\n    to: [gp1]\n    purpose: COC\n",
			"routes[0].on", 2, ""},
		{"duplicate route id", "  - id: x\n    on: {event: create, resource: Task}\n    to: [gp1]\n    purpose: COC\n  - id: x\n    on: {event: create, resource: Task}\n    to: [gp1]\n    purpose: COC\n",
			"routes[1].id", 5, "used twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(head+tc.route), "routes.yaml")
			if err == nil {
				_, err = New(cfg, testEngine)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			for _, p := range ce.Problems {
				if p.Path == tc.path && p.Line == headLines+tc.line && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("no problem at %s line %d containing %q in:\n%v", tc.path, headLines+tc.line, tc.msg, err)
		})
	}
}

func TestDemoRoutesCompile(t *testing.T) {
	cfg, err := config.Demo()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) == 0 {
		t.Fatal("the demo configuration has no routes")
	}
	if _, err := New(cfg, testEngine); err != nil {
		t.Fatal(err)
	}
}

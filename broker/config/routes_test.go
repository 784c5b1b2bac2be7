package config

import (
	"reflect"
	"testing"
)

func TestRouteOnTakesOneNameOrAList(t *testing.T) {
	c, err := Parse([]byte(`version: 1
agencies:
  - id: gp
    ods: XG1
    name: GP
    kind: gp
    endpoints:
      - {id: gp-ep, type: fhir-rest, url: "http://127.0.0.1:9/fhir"}
routes:
  - id: one
    on: {event: create, resource: Flag}
    to: [gp]
    purpose: COC
  - id: many
    on:
      event: [task-status, update]
      resource: [Task, ServiceRequest]
      taskStatus: [completed]
    to: [gp/gp-ep]
    purpose: COC
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Routes[0].On; !reflect.DeepEqual(got, RouteOn{Event: Names{"create"}, Resource: Names{"Flag"}}) {
		t.Errorf("one: %+v", got)
	}
	if got := c.Routes[1].On; !reflect.DeepEqual(got, RouteOn{Event: Names{"task-status", "update"}, Resource: Names{"Task", "ServiceRequest"}, TaskStatus: Names{"completed"}}) {
		t.Errorf("many: %+v", got)
	}
	if line := c.Line("routes[1].on.resource"); line != 17 {
		t.Errorf("Line = %d, want 17", line)
	}
	if e, a, ok := c.Endpoint("gp-ep"); !ok || a.ID != "gp" || e.URL != "http://127.0.0.1:9/fhir" {
		t.Errorf("Endpoint: %v %v %v", e, a, ok)
	}
}

func TestEndpointIDsAreUnique(t *testing.T) {
	_, err := Parse([]byte(`version: 1
agencies:
  - id: a
    ods: XA1
    name: A
    kind: gp
    endpoints:
      - {id: ep, type: fhir-rest, url: "http://127.0.0.1:9/a"}
  - id: b
    ods: XB1
    name: B
    kind: court
    endpoints:
      - {id: ep, type: fhir-rest, url: "http://127.0.0.1:9/b"}
`), "t.yaml")
	ce, ok := err.(*Error)
	if !ok || len(ce.Problems) != 1 || ce.Problems[0].Path != "agencies[1].endpoints[0].id" || ce.Problems[0].Line != 14 {
		t.Fatalf("got %v", err)
	}
}

func TestDemoHasEndpointsAndRoutes(t *testing.T) {
	c, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ld-team-fhir", "court-fhir", "probation-messaging", "gp-fhir"} {
		if _, _, ok := c.Endpoint(id); !ok {
			t.Errorf("demo has no endpoint %q", id)
		}
	}
	if len(c.Routes) < 5 {
		t.Errorf("demo has %d routes", len(c.Routes))
	}
}

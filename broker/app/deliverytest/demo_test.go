package deliverytest

import (
	"fmt"
	"testing"

	"github.com/hjbroker/hjbroker/broker/config"
)

func TestDemoConfig(t *testing.T) {
	urls := map[string]string{"court-fhir": "http://127.0.0.1:1/fhir", "gp-fhir": "http://127.0.0.1:2/fhir"}
	cfg, err := config.Load(DemoConfig(t, urls))
	if err != nil {
		t.Fatalf("the rewritten demo configuration does not load: %v", err)
	}
	demo, err := config.Demo()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, a := range demo.Agencies {
		for _, e := range a.Endpoints {
			want[e.ID] = e.URL
		}
	}
	for id, u := range urls {
		want[id] = u
	}
	got := map[string]string{}
	for _, a := range cfg.Agencies {
		for _, e := range a.Endpoints {
			got[e.ID] = e.URL
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
}

// fatalTB records a Fatalf instead of ending the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestDemoConfigUnknownEndpoint(t *testing.T) {
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(f) {
				panic(r)
			}
		}()
		DemoConfig(f, map[string]string{"court-fhir": "http://127.0.0.1:1/fhir", "no-such-endpoint": "http://127.0.0.1:2/fhir"})
	}()
	if f.msg != "the demo configuration has no endpoint [no-such-endpoint]" {
		t.Errorf("an unknown endpoint gave %q", f.msg)
	}
}

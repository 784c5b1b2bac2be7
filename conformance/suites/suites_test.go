package suites_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/resource"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/suites"
	"github.com/hjbroker/hjbroker/conformance/testscript"
	"github.com/hjbroker/hjbroker/profiles/fhirpath"
	"github.com/hjbroker/hjbroker/profiles/r4model"
)

// TestBrokerPassesShippedSuites runs every shipped suite against a real broker: this is how
// CI proves the broker passes its own conformance suites. A new suite folder is covered
// without touching this test.
func TestBrokerPassesShippedSuites(t *testing.T) {
	all, err := suite.LoadAll(suites.FS())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no suites shipped")
	}
	fp := fhirpath.NewEngine(r4model.Load())
	v, err := app.NewValidator(fp, nil)
	if err != nil {
		t.Fatal(err)
	}
	checker, err := resource.NewChecker(64)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			srv := apptest.Start(t, b, app.Config{})
			for _, s := range all {
				t.Run(s.Name, func(t *testing.T) {
					client := s.Client
					if client == "" {
						client = "operator"
					}
					res, err := s.Run(context.Background(), testscript.Config{
						Base:      srv.Base,
						Header:    http.Header{"Authorization": {"Bearer " + srv.Token(client)}},
						FHIRPath:  fp,
						Validator: v,
						Structure: checker,
					})
					if err != nil {
						t.Fatal(err)
					}
					for _, sr := range res.Scripts {
						for _, p := range sr.Invalid {
							t.Errorf("%s: invalid: %s", sr.File, p)
						}
						for _, a := range sr.Setup {
							if a.Status == testscript.Fail || a.Status == testscript.Errored {
								t.Errorf("%s: setup %s (%s): %s [expected %s, actual %s]", sr.File, a.Path, a.Label, a.Message, a.Expected, a.Actual)
							}
						}
						for _, tr := range sr.Tests {
							if tr.Status != testscript.Pass {
								t.Errorf("%s / %s: %s\n%s", sr.File, tr.Name, tr.Message, excerpt(tr.Failure()))
							}
						}
						for _, a := range append(append([]testscript.ActionResult(nil), sr.Setup...), sr.Teardown...) {
							if a.Status == testscript.Warning {
								t.Errorf("%s: %s (%s): %s", sr.File, a.Path, a.Label, a.Message)
							}
						}
					}
					if len(res.Scripts) == 0 {
						t.Errorf("suite %s ran no scripts", s.Name)
					}
				})
			}
		})
	}
}

func excerpt(a *testscript.ActionResult) string {
	if a == nil || a.Exchange == nil {
		return ""
	}
	body := string(a.Exchange.ResponseBody)
	if len(body) > 1500 {
		body = body[:1500] + "..."
	}
	return strings.Join([]string{a.Exchange.Method + " " + a.Exchange.URL, body}, "\n")
}

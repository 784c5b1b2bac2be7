package suites_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app"
	"github.com/hjbroker/hjbroker/broker/app/apptest"
	"github.com/hjbroker/hjbroker/broker/store/storetest"
	"github.com/hjbroker/hjbroker/conformance/conformancetest"
	"github.com/hjbroker/hjbroker/conformance/suite"
	"github.com/hjbroker/hjbroker/conformance/suites"
	"github.com/hjbroker/hjbroker/conformance/testscript"
)

func shipped(t *testing.T) []*suite.Suite {
	t.Helper()
	all, err := suite.LoadAll(suites.FS())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no suites shipped")
	}
	return all
}

func bearer(srv *apptest.Server, client string) http.Header {
	if client == "" {
		client = "operator"
	}
	return http.Header{"Authorization": {"Bearer " + srv.Token(client)}}
}

// TestBrokerPassesShippedSuites runs every shipped suite against a real broker on every
// store backend: this is how CI proves the broker passes its own conformance suites. A new
// suite folder is covered without touching this test.
func TestBrokerPassesShippedSuites(t *testing.T) {
	all := shipped(t)
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			srv := startWithSpine(t, b) // spine-lookup needs the Spine simulator; the other suites ignore it
			for _, s := range all {
				t.Run(s.Name, func(t *testing.T) {
					vars, err := s.TokenVariables(func(c string) (string, error) { return srv.Token(c), nil })
					if err != nil {
						t.Fatal(err)
					}
					res := conformancetest.Run(t, s, srv.Base, bearer(srv, s.Client), vars)
					if len(res.Scripts) != len(s.Scripts) {
						t.Errorf("ran %d scripts of %d", len(res.Scripts), len(s.Scripts))
					}
					tests := 0
					for _, sr := range res.Scripts {
						tests += len(sr.Tests)
						for _, a := range append(append([]testscript.ActionResult(nil), sr.Setup...), sr.Teardown...) {
							if a.Status != testscript.Pass {
								t.Errorf("%s: %s (%s): %s %s", sr.File, a.Path, a.Label, a.Status, a.Message)
							}
						}
						for _, tr := range sr.Tests {
							if tr.Status != testscript.Pass {
								t.Logf("%s / %s\n%s", sr.File, tr.Name, excerpt(tr.Failure()))
							}
						}
					}
					if tests == 0 {
						t.Errorf("suite %s ran no tests", s.Name)
					}
					conformancetest.ExpectFailures(t, res, nil)
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
	return a.Exchange.Method + " " + a.Exchange.URL + "\n" + body
}

// TestBrokerRestCatchesNonConformance runs broker-rest through a proxy that breaks one
// behaviour per fault, and checks that exactly the tests of those behaviours fail.
func TestBrokerRestCatchesNonConformance(t *testing.T) {
	s, err := suite.Find(shipped(t), []string{"broker-rest"})
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.Backends(t)[0]
	srv := apptest.Start(t, b, app.Config{})
	path := regexp.MustCompile
	proxy := conformancetest.NewProxy(t, srv.Base,
		conformancetest.Fault{Name: "metadata as HTML", Method: "GET", Path: path(`^metadata$`), Query: "",
			SetHeaders: map[string]string{"Content-Type": "text/html"}},
		conformancetest.Fault{Name: "create without Location and ETag", Method: "POST", Path: path(`^Patient$`), Request: `"crud-`,
			DropHeaders: []string{"Location", "ETag"}},
		conformancetest.Fault{Name: "read answers an invalid Patient", Method: "GET", Path: path(`^Patient/[^/$]+$`), Status: 200,
			Rewrite: func(m map[string]any) map[string]any {
				if fam, _ := apptest.Get(m, "name.0.family").(string); fam == "Conformance" {
					m["deceasedBoolean"] = "not a boolean"
				}
				return m
			}},
		conformancetest.Fault{Name: "vread answers another version's content", Method: "GET", Path: path(`^Patient/[^/]+/_history/1$`),
			Rewrite: func(m map[string]any) map[string]any {
				if names, ok := m["name"].([]any); ok && len(names) > 0 {
					names[0].(map[string]any)["family"] = "Tampered"
				}
				return m
			}},
		conformancetest.Fault{Name: "deleted reads answer 404, not 410", Method: "GET", Path: path(`^Patient/[^/]+$`), Status: 410,
			SetStatus: 404},
		conformancetest.Fault{Name: "paging without next link", Method: "GET", Path: path(`^Patient$`), Query: "_count=1",
			Rewrite: func(m map[string]any) map[string]any {
				var keep []any
				for _, l := range m["link"].([]any) {
					if l.(map[string]any)["relation"] != "next" {
						keep = append(keep, l)
					}
				}
				m["link"] = keep
				return m
			}},
		conformancetest.Fault{Name: "If-Match ignored", Method: "PUT", Status: 412, SetStatus: 200},
		conformancetest.Fault{Name: "If-None-Match ignored", Method: "GET", Status: 304, SetStatus: 200},
		conformancetest.Fault{Name: "failed transaction answers 200", Method: "POST", Path: path(`^$`), Request: `"txbad-`, SetStatus: 200},
		conformancetest.Fault{Name: "OperationOutcome without expression", Method: "POST", Path: path(`^Patient$`), Request: "robot",
			Rewrite: func(m map[string]any) map[string]any {
				for _, is := range m["issue"].([]any) {
					delete(is.(map[string]any), "expression")
				}
				return m
			}},
	)
	vars, err := s[0].TokenVariables(func(c string) (string, error) { return srv.Token(c), nil })
	if err != nil {
		t.Fatal(err)
	}
	res := conformancetest.Run(t, s[0], proxy.Base, bearer(srv, s[0].Client), vars)
	conformancetest.ExpectFailures(t, res, proxy,
		"capabilities.json/metadata",
		"crud.json/create",
		"crud.json/read",
		"crud.json/vread",
		"crud.json/delete",
		"search.json/paging",
		"conditional.json/if-match",
		"conditional.json/conditional-read",
		"transaction.json/atomic",
		"errors.json/invalid-code",
	)
	// Each failure names what was wrong.
	want := map[string]string{
		"capabilities.json/metadata":        "Content-Type is text/html",
		"crud.json/create":                  "header Location is (none)",
		"crud.json/read":                    "does not conform to https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient",
		"crud.json/vread":                   "Tampered",
		"crud.json/delete":                  "HTTP status is 404, expected gone (410)",
		"search.json/paging":                "no next link",
		"conditional.json/if-match":         "HTTP status is 200, expected preconditionFailed (412)",
		"conditional.json/conditional-read": "HTTP status is 200, expected notModified (304)",
		"transaction.json/atomic":           "HTTP status is 200, expected one of 400,422",
		"errors.json/invalid-code":          "expected containing Patient.gender",
	}
	for _, sc := range res.Scripts {
		for _, tr := range sc.Tests {
			if w, ok := want[sc.File+"/"+tr.Name]; ok && !strings.Contains(tr.Message, w) {
				t.Errorf("%s/%s: message %q does not say %q", sc.File, tr.Name, tr.Message, w)
			}
		}
	}
}

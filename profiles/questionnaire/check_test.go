package questionnaire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

const (
	screeningCS = "https://hjbroker.example/fhir/CodeSystem/ld-screening"
	sct         = "http://snomed.info/sct"
	accomVS     = "https://hjbroker.example/fhir/ValueSet/accommodation-status"
)

func decode(tb testing.TB, data []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func fixture(tb testing.TB, name string) map[string]any {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return decode(tb, data)
}

// accommodation is an offline resolver for the external value set the fixture binds.
func accommodation(url string) ([]Coding, bool) {
	if url != accomVS {
		return nil, false
	}
	var out []Coding
	for _, c := range []string{"settled", "temporary", "supported", "nfa", "custodial"} {
		out = append(out, Coding{System: screeningCS, Code: c})
	}
	return out, true
}

// at walks decoded JSON by object keys and array indices.
func at(tb testing.TB, v any, path ...any) any {
	tb.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				tb.Fatalf("at %v: not an object", path)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				tb.Fatalf("at %v: no index %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func obj(tb testing.TB, v any, path ...any) map[string]any {
	tb.Helper()
	m, ok := at(tb, v, path...).(map[string]any)
	if !ok {
		tb.Fatalf("at %v: not an object", path)
	}
	return m
}

// item returns the response item at the given item indices, e.g. item(qr, 1, 2) is
// QuestionnaireResponse.item[1].item[2].
func item(tb testing.TB, qr map[string]any, idx ...int) map[string]any {
	tb.Helper()
	var path []any
	for _, i := range idx {
		path = append(path, "item", i)
	}
	return obj(tb, qr, path...)
}

func setAnswers(m map[string]any, answers ...map[string]any) {
	list := make([]any, len(answers))
	for i, a := range answers {
		list[i] = a
	}
	m["answer"] = list
}

func insertAt(m map[string]any, key string, i int, v any) {
	l, _ := m[key].([]any)
	l = append(l[:i], append([]any{v}, l[i:]...)...)
	m[key] = l
}

func removeAt(m map[string]any, key string, i int) any {
	l := m[key].([]any)
	v := l[i]
	m[key] = append(l[:i:i], l[i+1:]...)
	return v
}

func coding(system, code string) map[string]any {
	return map[string]any{"system": system, "code": code}
}

// clone deep-copies decoded JSON so a test can reuse a fixture item elsewhere.
func clone(tb testing.TB, v any) any {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		tb.Fatal(err)
	}
	return out
}

type want struct {
	sev, code, expr, mention string
}

func sameIssues(t *testing.T, got []outcome.Issue, wants []want) {
	t.Helper()
	ok := len(got) == len(wants)
	for i := 0; ok && i < len(wants); i++ {
		g, w := got[i], wants[i]
		expr := ""
		if len(g.Expression) > 0 {
			expr = g.Expression[0]
		}
		ok = g.Severity == w.sev && g.Code == w.code && expr == w.expr && strings.Contains(g.Diagnostics, w.mention)
	}
	if !ok {
		var b strings.Builder
		for _, g := range got {
			b.WriteString("\n  " + g.Severity + " " + g.Code + " " + strings.Join(g.Expression, ",") + ": " + g.Diagnostics)
		}
		t.Fatalf("issues differ\nwant %+v\ngot:%s", wants, b.String())
	}
}

func TestCheck(t *testing.T) {
	qData, err := os.ReadFile(filepath.Join("testdata", "ld-screening-questionnaire.json"))
	if err != nil {
		t.Fatal(err)
	}
	rData, err := os.ReadFile(filepath.Join("testdata", "ld-screening-response.json"))
	if err != nil {
		t.Fatal(err)
	}
	withVS := Options{ValueSet: accommodation}
	const root = "QuestionnaireResponse"
	yes := map[string]any{"valueCoding": coding(sct, "373066001")}

	tests := []struct {
		name   string
		opts   *Options // nil = withVS
		mutate func(t *testing.T, qr map[string]any)
		want   []want
	}{
		{name: "valid response", mutate: func(*testing.T, map[string]any) {}},
		{name: "unversioned canonical accepted", mutate: func(_ *testing.T, qr map[string]any) {
			qr["questionnaire"] = "https://hjbroker.example/fhir/Questionnaire/ld-screening"
		}},
		{name: "questionnaire url differs", mutate: func(_ *testing.T, qr map[string]any) {
			qr["questionnaire"] = "https://hjbroker.example/fhir/Questionnaire/ld-assessment|1.0.0"
		}, want: []want{{"error", "business-rule", root + ".questionnaire", "ld-assessment"}}},
		{name: "questionnaire version differs", mutate: func(_ *testing.T, qr map[string]any) {
			qr["questionnaire"] = "https://hjbroker.example/fhir/Questionnaire/ld-screening|2.0.0"
		}, want: []want{{"error", "business-rule", root + ".questionnaire", `"2.0.0"`}}},
		{name: "questionnaire absent", mutate: func(_ *testing.T, qr map[string]any) {
			delete(qr, "questionnaire")
		}, want: []want{{"warning", "required", root + ".questionnaire", "absent"}}},
		{name: "status not a code", mutate: func(_ *testing.T, qr map[string]any) {
			qr["status"] = "done"
		}, want: []want{{"error", "value", root + ".status", `"done"`}}},
		{name: "completed response missing required question", mutate: func(t *testing.T, qr map[string]any) {
			removeAt(item(t, qr, 0), "item", 2)
		}, want: []want{{"error", "required", root + ".item[0]", "custody.consent"}}},
		{name: "in-progress response may omit required question", mutate: func(t *testing.T, qr map[string]any) {
			qr["status"] = "in-progress"
			removeAt(item(t, qr, 0), "item", 2)
		}},
		{name: "amended response enforces required", mutate: func(t *testing.T, qr map[string]any) {
			qr["status"] = "amended"
			removeAt(qr, "item", 9)
		}, want: []want{{"error", "required", root, `"outcome"`}}},
		{name: "required question present without answer", mutate: func(t *testing.T, qr map[string]any) {
			delete(item(t, qr, 1, 2), "answer")
		}, want: []want{{"error", "required", root + ".item[1].item[2]", "mh.selfharm"}}},
		{name: "unknown linkId", mutate: func(t *testing.T, qr map[string]any) {
			insertAt(item(t, qr, 1), "item", 3, map[string]any{"linkId": "mh.gambling", "answer": []any{map[string]any{"valueBoolean": true}}})
		}, want: []want{{"error", "structure", root + ".item[1].item[3]", "mh.gambling"}}},
		{name: "item under the wrong group", mutate: func(t *testing.T, qr map[string]any) {
			auditc := removeAt(item(t, qr, 4), "item", 0)
			insertAt(item(t, qr, 6), "item", 1, auditc)
		}, want: []want{
			{"error", "required", root + ".item[4]", "alcohol.auditc"},
			{"error", "structure", root + ".item[6].item[1]", `under group "alcohol"`},
		}},
		{name: "child of a question nested under item.item", mutate: func(t *testing.T, qr map[string]any) {
			qr["status"] = "in-progress"
			served := item(t, qr, 7, 0)
			served["item"] = at(t, served, "answer", 0, "item")
			delete(served, "answer")
		}, want: []want{
			{"error", "structure", root + ".item[7].item[0].item", "answer.item"},
			{"error", "business-rule", root + ".item[7].item[0].item[0]", "veterans.branch"},
		}},
		{name: "qrs-1 answer and item together", mutate: func(t *testing.T, qr map[string]any) {
			served := item(t, qr, 7, 0)
			served["item"] = []any{clone(t, at(t, served, "answer", 0, "item", 0))}
		}, want: []want{{"error", "structure", root + ".item[7].item[0]", "qrs-1"}}},
		{name: "items out of Questionnaire order", mutate: func(t *testing.T, qr map[string]any) {
			custody := item(t, qr, 0)
			loc := removeAt(custody, "item", 0)
			insertAt(custody, "item", 1, loc)
		}, want: []want{{"error", "structure", root + ".item[0].item[1]", "custody.location"}}},
		{name: "non-repeating group twice", mutate: func(t *testing.T, qr map[string]any) {
			insertAt(qr, "item", 5, clone(t, item(t, qr, 4)))
		}, want: []want{{"error", "structure", root + ".item[5]", `group "alcohol" does not repeat`}}},
		{name: "question appears twice", mutate: func(t *testing.T, qr map[string]any) {
			insertAt(item(t, qr, 1), "item", 1, clone(t, item(t, qr, 1, 0)))
		}, want: []want{{"error", "structure", root + ".item[1].item[1]", "mh.current"}}},
		{name: "item text differs", mutate: func(t *testing.T, qr map[string]any) {
			item(t, qr, 1, 0)["text"] = "Seeing anyone for mental health?"
		}, want: []want{{"warning", "value", root + ".item[1].item[0].text", "mh.current"}}},
		{name: "answer type does not match item type", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 0, 2), map[string]any{"valueString": "yes"})
		}, want: []want{{"error", "value", root + ".item[0].item[2].answer[0].valueString", "valueBoolean"}}},
		{name: "malformed dateTime", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 0, 1), map[string]any{"valueDateTime": "2025-03-02T10:05"})
		}, want: []want{{"error", "invalid", root + ".item[0].item[1].answer[0].valueDateTime", "custody.datetime"}}},
		{name: "malformed integer", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 4, 0), map[string]any{"valueInteger": json.Number("6.5")})
		}, want: []want{{"error", "invalid", root + ".item[4].item[0].answer[0].valueInteger", "alcohol.auditc"}}},
		{name: "answer with two values", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 0, 2), map[string]any{"valueBoolean": true, "valueString": "yes"})
		}, want: []want{{"error", "invalid", root + ".item[0].item[2].answer[0]", "custody.consent"}}},
		{name: "answer with no value", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 0, 2), map[string]any{})
		}, want: []want{
			{"error", "invalid", root + ".item[0].item[2].answer[0]", "no value"},
			{"error", "required", root + ".item[0].item[2]", "custody.consent"},
		}},
		{name: "item without linkId", mutate: func(t *testing.T, qr map[string]any) {
			qr["status"] = "in-progress"
			delete(item(t, qr, 0, 0), "linkId")
		}, want: []want{{"error", "required", root + ".item[0].item[0]", "linkId"}}},
		{name: "display item answered", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 9, 0), map[string]any{"valueBoolean": true})
		}, want: []want{{"error", "structure", root + ".item[9].item[0].answer", "outcome.notice"}}},
		{name: "group answered", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 6), map[string]any{"valueBoolean": false})
		}, want: []want{
			{"error", "structure", root + ".item[6]", "qrs-1"},
			{"error", "structure", root + ".item[6].answer", `group item "finance"`},
		}},
		{name: "non-repeating question with two answers", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 1, 0), yes, map[string]any{"valueCoding": coding(sct, "373067005")})
		}, want: []want{{"error", "structure", root + ".item[1].item[0].answer[1]", "mh.current"}}},
		{name: "string longer than maxLength", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 0, 0), map[string]any{"valueString": strings.Repeat("é", 101)})
		}, want: []want{{"error", "value", root + ".item[0].item[0].answer[0].valueString", "maxLength is 100"}}},
		{name: "coding not among answerOptions", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 1, 2), map[string]any{"valueCoding": coding(sct, "260413007")})
		}, want: []want{{"error", "value", root + ".item[1].item[2].answer[0].valueCoding", "mh.selfharm"}}},
		{name: "answerOption coding matched on system as well as code", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 1, 2), map[string]any{"valueCoding": coding("http://example.org/other", "373067005")})
		}, want: []want{{"error", "value", root + ".item[1].item[2].answer[0].valueCoding", "http://example.org/other|373067005"}}},
		{name: "string not among answerOptions", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(obj(t, item(t, qr, 7, 0), "answer", 0, "item", 0), map[string]any{"valueString": "Navy"})
		}, want: []want{{"error", "value", root + ".item[7].item[0].answer[0].item[0].answer[0].valueString", "veterans.branch"}}},
		{name: "open-choice coding outside answerOptions", mutate: func(t *testing.T, qr map[string]any) {
			services := item(t, qr, 1, 1)
			insertAt(services, "answer", 2, map[string]any{"valueCoding": coding(screeningCS, "probation")})
		}, want: []want{{"warning", "value", root + ".item[1].item[1].answer[2].valueCoding", "mh.services"}}},
		{name: "coding outside contained answerValueSet", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 3, 1, 0), map[string]any{"valueCoding": coding(screeningCS, "alcohol")})
		}, want: []want{{"error", "value", root + ".item[3].item[1].item[0].answer[0].valueCoding", "#drug-types"}}},
		{name: "coding outside resolved answerValueSet", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 5, 0), map[string]any{"valueCoding": coding(screeningCS, "hotel")})
		}, want: []want{
			{"error", "value", root + ".item[5].item[0].answer[0].valueCoding", accomVS},
			{"error", "business-rule", root + ".item[5].item[1]", "housing.nfaSince"},
		}},
		{name: "external value set without resolver", opts: &Options{}, mutate: func(*testing.T, map[string]any) {},
			want: []want{{"information", "value", root + ".item[5].item[0].answer[0].valueCoding", "no resolver"}}},
		{name: "external value set unknown to resolver", opts: &Options{ValueSet: func(string) ([]Coding, bool) { return nil, false }},
			mutate: func(*testing.T, map[string]any) {},
			want:   []want{{"information", "value", root + ".item[5].item[0].answer[0].valueCoding", "could not be resolved"}}},
		{name: "disabled item answered", mutate: func(t *testing.T, qr map[string]any) {
			insertAt(item(t, qr, 1), "item", 3, map[string]any{"linkId": "mh.selfharm.detail",
				"answer": []any{map[string]any{"valueString": "None disclosed"}}})
		}, want: []want{{"error", "business-rule", root + ".item[1].item[3]", "mh.selfharm.detail"}}},
		{name: "enabled required item missing", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 1, 2), yes)
		}, want: []want{{"error", "required", root + ".item[1]", "mh.selfharm.detail"}}},
		{name: "enableWhen exists", mutate: func(t *testing.T, qr map[string]any) {
			finance := item(t, qr, 6)
			setAnswers(item(t, qr, 6, 0), yes)
			insertAt(finance, "item", 1, map[string]any{"linkId": "finance.amount", "answer": []any{
				map[string]any{"valueQuantity": map[string]any{"value": json.Number("1200"), "unit": "GBP", "system": "urn:iso:std:iso:4217", "code": "GBP"}}}})
		}, want: []want{{"error", "required", root + ".item[6]", "finance.plan"}}},
		{name: "enableWhen != disables on matching answer", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 2, 0), map[string]any{"valueCoding": coding(screeningCS, "none-known")})
		}, want: []want{{"error", "business-rule", root + ".item[2].item[1]", "ld.support"}}},
		{name: "enableWhen != with another answer matching", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 2, 0), map[string]any{"valueCoding": coding(screeningCS, "adhd")},
				map[string]any{"valueCoding": coding(screeningCS, "none-known")})
		}, want: []want{{"error", "business-rule", root + ".item[2].item[1]", "ld.support"}}},
		{name: "enableWhen >= below threshold", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 4, 0), map[string]any{"valueInteger": json.Number("4")})
		}, want: []want{{"error", "business-rule", root + ".item[4].item[1]", "alcohol.withdrawal"}}},
		{name: "enableWhen >= at threshold", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 4, 0), map[string]any{"valueInteger": json.Number("5")})
		}},
		{name: "enableBehavior any with no condition true", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 8, 0), map[string]any{"valueInteger": json.Number("0")})
		}, want: []want{{"error", "business-rule", root + ".item[8].item[2]", "safeguarding.referral"}}},
		{name: "enableBehavior any with one condition true", mutate: func(t *testing.T, qr map[string]any) {
			setAnswers(item(t, qr, 8, 0), map[string]any{"valueInteger": json.Number("0")})
			setAnswers(item(t, qr, 8, 1), yes)
		}},
		{name: "enableWhen uses the nearest preceding occurrence", mutate: func(t *testing.T, qr map[string]any) {
			substance := item(t, qr, 3)
			opioids := removeAt(substance, "item", 2)
			insertAt(substance, "item", 1, opioids)
		}, want: []want{{"error", "business-rule", root + ".item[3].item[3]", "substance.ost"}}},
		{name: "enableWhen on an ancestor question", mutate: func(t *testing.T, qr map[string]any) {
			obj(t, item(t, qr, 7, 0), "answer", 0)["valueBoolean"] = false
		}, want: []want{{"error", "business-rule", root + ".item[7].item[0].answer[0].item[0]", "veterans.branch"}}},
		{name: "required child of an answer missing", mutate: func(t *testing.T, qr map[string]any) {
			delete(obj(t, item(t, qr, 7, 0), "answer", 0), "item")
		}, want: []want{{"error", "required", root + ".item[7].item[0].answer[0]", "veterans.branch"}}},
		{name: "enabled repeating group required", mutate: func(t *testing.T, qr map[string]any) {
			substance := item(t, qr, 3)
			removeAt(substance, "item", 1)
			removeAt(substance, "item", 1)
			removeAt(substance, "item", 1)
		}, want: []want{{"error", "required", root + ".item[3]", "substance.drug"}}},
		{name: "item that is not an object", mutate: func(t *testing.T, qr map[string]any) {
			insertAt(item(t, qr, 6), "item", 1, "finance.amount")
		}, want: []want{{"error", "structure", root + ".item[6].item[1]", "JSON object"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, qr := decode(t, qData), decode(t, rData)
			tt.mutate(t, qr)
			opts := withVS
			if tt.opts != nil {
				opts = *tt.opts
			}
			sameIssues(t, Check(qr, q, opts), tt.want)
		})
	}
}

func TestCheckWrongResources(t *testing.T) {
	q := fixture(t, "ld-screening-questionnaire.json")
	qr := fixture(t, "ld-screening-response.json")
	sameIssues(t, Check(q, q, Options{}), []want{{"error", "invalid", "QuestionnaireResponse", `"Questionnaire"`}})
	sameIssues(t, Check(qr, qr, Options{}), []want{{"error", "invalid", "", "not a Questionnaire"}})
}

func TestQuestionnaireDefects(t *testing.T) {
	q := decode(t, []byte(`{"resourceType":"Questionnaire","url":"urn:q","item":[
	  {"linkId":"a","type":"boolean","enableWhen":[{"question":"zz","operator":"=","answerBoolean":true}]},
	  {"linkId":"b","type":"choice","answerValueSet":"#missing"}]}`))
	qr := decode(t, []byte(`{"resourceType":"QuestionnaireResponse","questionnaire":"urn:q","status":"completed","item":[
	  {"linkId":"b","answer":[{"valueCoding":{"system":"urn:s","code":"x"}}]}]}`))
	sameIssues(t, Check(qr, q, Options{}), []want{
		{"warning", "invalid", "", `"zz"`},
		{"warning", "value", "QuestionnaireResponse.item[0].answer[0].valueCoding", "#missing"},
	})
}

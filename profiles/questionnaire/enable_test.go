package questionnaire

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestEnableWhenOperators checks each operator on each answer type with a two-item
// Questionnaire: "dep" is enabled by a condition on "src". An answered, disabled "dep" is the
// only issue the response can produce, so its presence tells whether the condition held.
func TestEnableWhenOperators(t *testing.T) {
	tests := []struct {
		name    string
		srcType string
		answers string // JSON array of src answers; "" = src unanswered
		op      string
		ew      string // enableWhen answer[x] member, JSON
		enabled bool
	}{
		{"integer >", "integer", `[{"valueInteger":6}]`, ">", `"answerInteger":5`, true},
		{"integer > equal", "integer", `[{"valueInteger":5}]`, ">", `"answerInteger":5`, false},
		{"integer >=", "integer", `[{"valueInteger":5}]`, ">=", `"answerInteger":5`, true},
		{"integer <", "integer", `[{"valueInteger":4}]`, "<", `"answerInteger":5`, true},
		{"integer < false", "integer", `[{"valueInteger":6}]`, "<", `"answerInteger":5`, false},
		{"integer <=", "integer", `[{"valueInteger":5}]`, "<=", `"answerInteger":5`, true},
		{"integer =", "integer", `[{"valueInteger":6}]`, "=", `"answerInteger":6`, true},
		{"integer != equal", "integer", `[{"valueInteger":6}]`, "!=", `"answerInteger":6`, false},
		{"!= on unanswered question", "integer", "", "!=", `"answerInteger":6`, true},
		{"= on unanswered question", "integer", "", "=", `"answerInteger":6`, false},
		{"> on unanswered question", "integer", "", ">", `"answerInteger":6`, false},
		{"exists true answered", "integer", `[{"valueInteger":1}]`, "exists", `"answerBoolean":true`, true},
		{"exists true unanswered", "integer", "", "exists", `"answerBoolean":true`, false},
		{"exists false answered", "integer", `[{"valueInteger":1}]`, "exists", `"answerBoolean":false`, false},
		{"exists false unanswered", "integer", "", "exists", `"answerBoolean":false`, true},
		{"decimal = by value", "decimal", `[{"valueDecimal":1.50}]`, "=", `"answerDecimal":1.5`, true},
		{"decimal against integer", "decimal", `[{"valueDecimal":2.25}]`, ">", `"answerInteger":2`, true},
		{"date >", "date", `[{"valueDate":"2025-03-01"}]`, ">", `"answerDate":"2025-02-28"`, true},
		{"partial date ordered by shared precision", "date", `[{"valueDate":"2025-03"}]`, ">", `"answerDate":"2025-02-15"`, true},
		{"partial date not equal to a day", "date", `[{"valueDate":"2025-03"}]`, "=", `"answerDate":"2025-03-01"`, false},
		{"dateTime = across zones", "dateTime", `[{"valueDateTime":"2025-03-02T10:00:00+01:00"}]`, "=", `"answerDateTime":"2025-03-02T09:00:00Z"`, true},
		{"dateTime <", "dateTime", `[{"valueDateTime":"2025-03-02T08:59:59Z"}]`, "<", `"answerDateTime":"2025-03-02T09:00:00Z"`, true},
		{"time <", "time", `[{"valueTime":"10:30:00"}]`, "<", `"answerTime":"11:00:00"`, true},
		{"string =", "string", `[{"valueString":"Leeds"}]`, "=", `"answerString":"Leeds"`, true},
		{"string != different", "string", `[{"valueString":"Leeds"}]`, "!=", `"answerString":"Bradford"`, true},
		{"coding = ignores display", "choice", `[{"valueCoding":{"system":"urn:s","code":"a","display":"A"}}]`, "=", `"answerCoding":{"system":"urn:s","code":"a"}`, true},
		{"coding = without system matches code", "choice", `[{"valueCoding":{"system":"urn:s","code":"a"}}]`, "=", `"answerCoding":{"code":"a"}`, true},
		{"coding = other system", "choice", `[{"valueCoding":{"system":"urn:t","code":"a"}}]`, "=", `"answerCoding":{"system":"urn:s","code":"a"}`, false},
		{"coding has no order", "choice", `[{"valueCoding":{"system":"urn:s","code":"b"}}]`, ">", `"answerCoding":{"system":"urn:s","code":"a"}`, false},
		{"coding = any of several answers", "choice", `[{"valueCoding":{"system":"urn:s","code":"b"}},{"valueCoding":{"system":"urn:s","code":"a"}}]`, "=", `"answerCoding":{"system":"urn:s","code":"a"}`, true},
		{"coding != fails if any answer equal", "choice", `[{"valueCoding":{"system":"urn:s","code":"b"}},{"valueCoding":{"system":"urn:s","code":"a"}}]`, "!=", `"answerCoding":{"system":"urn:s","code":"a"}`, false},
		{"quantity > same unit", "quantity", `[{"valueQuantity":{"value":1200,"system":"urn:iso:std:iso:4217","code":"GBP"}}]`, ">", `"answerQuantity":{"value":1000,"system":"urn:iso:std:iso:4217","code":"GBP"}`, true},
		{"quantity other unit incomparable", "quantity", `[{"valueQuantity":{"value":1200,"system":"urn:iso:std:iso:4217","code":"EUR"}}]`, ">", `"answerQuantity":{"value":1000,"system":"urn:iso:std:iso:4217","code":"GBP"}`, false},
		{"boolean =", "boolean", `[{"valueBoolean":false}]`, "=", `"answerBoolean":false`, true},
		{"boolean has no order", "boolean", `[{"valueBoolean":true}]`, ">", `"answerBoolean":false`, false},
		{"reference =", "reference", `[{"valueReference":{"reference":"Organization/ld-leeds"}}]`, "=", `"answerReference":{"reference":"Organization/ld-leeds"}`, true},
		{"type mismatch never equal", "string", `[{"valueString":"5"}]`, "=", `"answerInteger":5`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := decode(t, fmt.Appendf(nil, `{"resourceType":"Questionnaire","url":"urn:q","item":[
			  {"linkId":"src","type":%q,"repeats":true},
			  {"linkId":"dep","type":"boolean","enableWhen":[{"question":"src","operator":%q,%s}]}]}`, tt.srcType, tt.op, tt.ew))
			src := `{"linkId":"src"}`
			if tt.answers != "" {
				src = `{"linkId":"src","answer":` + tt.answers + `}`
			}
			qr := decode(t, []byte(`{"resourceType":"QuestionnaireResponse","questionnaire":"urn:q","status":"completed","item":[`+
				src+`,{"linkId":"dep","answer":[{"valueBoolean":true}]}]}`))
			issues := Check(qr, q, Options{})
			if tt.enabled {
				sameIssues(t, issues, nil)
			} else {
				sameIssues(t, issues, []want{{"error", "business-rule", "QuestionnaireResponse.item[1]", `"dep"`}})
			}
		})
	}
}

func TestEnableBehavior(t *testing.T) {
	const items = `[{"linkId":"a","type":"boolean"},{"linkId":"b","type":"boolean"},
	  {"linkId":"dep","type":"string","required":true,%s"enableWhen":[
	    {"question":"a","operator":"=","answerBoolean":true},{"question":"b","operator":"=","answerBoolean":true}]}]`
	tests := []struct {
		behavior string
		a, b     bool
		enabled  bool
	}{
		{"", true, false, false}, // several conditions default to all
		{"", true, true, true},
		{"all", true, false, false},
		{"any", true, false, true},
		{"any", false, false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v/%v", tt.behavior, tt.a, tt.b), func(t *testing.T) {
			beh := ""
			if tt.behavior != "" {
				beh = `"enableBehavior":"` + tt.behavior + `",`
			}
			q := decode(t, []byte(`{"resourceType":"Questionnaire","url":"urn:q","item":`+fmt.Sprintf(items, beh)+`}`))
			qr := decode(t, fmt.Appendf(nil, `{"resourceType":"QuestionnaireResponse","questionnaire":"urn:q","status":"completed","item":[
			  {"linkId":"a","answer":[{"valueBoolean":%v}]},{"linkId":"b","answer":[{"valueBoolean":%v}]}]}`, tt.a, tt.b))
			// dep is required and absent: an issue appears exactly when it is enabled.
			issues := Check(qr, q, Options{})
			if tt.enabled {
				sameIssues(t, issues, []want{{"error", "required", "QuestionnaireResponse", `"dep"`}})
			} else {
				sameIssues(t, issues, nil)
			}
		})
	}
}

// TestEnableWhenCycle makes sure mutually dependent items terminate and count as disabled.
func TestEnableWhenCycle(t *testing.T) {
	q := decode(t, []byte(`{"resourceType":"Questionnaire","url":"urn:q","item":[
	  {"linkId":"a","type":"boolean","enableWhen":[{"question":"b","operator":"exists","answerBoolean":true}]},
	  {"linkId":"b","type":"boolean","enableWhen":[{"question":"a","operator":"exists","answerBoolean":true}]}]}`))
	qr := decode(t, []byte(`{"resourceType":"QuestionnaireResponse","questionnaire":"urn:q","status":"completed","item":[
	  {"linkId":"a","answer":[{"valueBoolean":true}]},{"linkId":"b","answer":[{"valueBoolean":true}]}]}`))
	issues := Check(qr, q, Options{})
	if len(issues) == 0 || !strings.Contains(issues[0].Diagnostics, "disabled") {
		t.Fatalf("want the cyclic item reported as disabled, got %+v", issues)
	}
}

// TestNumbersWithoutUseNumber accepts float64 numbers from a plain json.Unmarshal.
func TestNumbersWithoutUseNumber(t *testing.T) {
	var q, qr map[string]any
	if err := json.Unmarshal([]byte(`{"resourceType":"Questionnaire","url":"urn:q","item":[
	  {"linkId":"n","type":"integer"},{"linkId":"d","type":"decimal","enableWhen":[{"question":"n","operator":">","answerInteger":2}]}]}`), &q); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"resourceType":"QuestionnaireResponse","questionnaire":"urn:q","status":"completed","item":[
	  {"linkId":"n","answer":[{"valueInteger":3}]},{"linkId":"d","answer":[{"valueDecimal":0.5}]}]}`), &qr); err != nil {
		t.Fatal(err)
	}
	sameIssues(t, Check(qr, q, Options{}), nil)
}

package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hjbroker/hjbroker/broker/app/apptest"
)

// A QuestionnaireResponse written over HTTP is checked against the stored Questionnaire its
// questionnaire element names.
func TestQuestionnaireResponseCheckedAgainstStoredQuestionnaire(t *testing.T) {
	apptest.ForEachBackend(t, func(t *testing.T, s *apptest.Server) {
		const url = "https://hjbroker.dev/fhir/Questionnaire/ld-screening-test"
		s.Do("POST", "Questionnaire", `{"resourceType":"Questionnaire","url":"`+url+`","version":"1","status":"active",
			"item":[{"linkId":"mh","text":"Any mental health concern?","type":"boolean","required":true}]}`).Want(t, http.StatusCreated)

		bad := s.Do("POST", "QuestionnaireResponse", `{"resourceType":"QuestionnaireResponse","questionnaire":"`+url+`","status":"completed",
			"item":[{"linkId":"mh","answer":[{"valueString":"yes"}]}]}`).Want(t, http.StatusUnprocessableEntity)
		found := false
		for _, e := range bad.IssueExpressions() {
			if strings.HasPrefix(e, "QuestionnaireResponse.item[0].answer[0]") {
				found = true
			}
		}
		if !found {
			t.Fatalf("no issue names the answer: %s", bad.Raw)
		}

		unknown := s.Do("POST", "QuestionnaireResponse", `{"resourceType":"QuestionnaireResponse","questionnaire":"`+url+`","status":"completed",
			"item":[{"linkId":"nope","answer":[{"valueBoolean":true}]}]}`).Want(t, http.StatusUnprocessableEntity)
		if !strings.Contains(string(unknown.Raw), "nope") {
			t.Fatalf("unknown linkId not named: %s", unknown.Raw)
		}

		s.Do("POST", "QuestionnaireResponse", `{"resourceType":"QuestionnaireResponse","questionnaire":"`+url+`|1","status":"completed",
			"item":[{"linkId":"mh","answer":[{"valueBoolean":true}]}]}`).Want(t, http.StatusCreated)
	})
}

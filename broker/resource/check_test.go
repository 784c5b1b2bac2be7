package resource

import (
	"net/http"
	"strings"
	"testing"
)

func TestCheckNamesTheElement(t *testing.T) {
	c, err := NewChecker(64)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, body string
		status     int
		expr       string
	}{
		{"valid", `{"resourceType":"Patient","birthDate":"1990-01-01","gender":"male"}`, 0, ""},
		{"bad date", `{"resourceType":"Patient","birthDate":"1990-13-01"}`, http.StatusBadRequest, "Patient.birthDate"},
		{"unknown element", `{"resourceType":"Patient","foo":1}`, http.StatusBadRequest, "Patient.foo"},
		{"code outside required binding", `{"resourceType":"Patient","gender":"x"}`, http.StatusBadRequest, "Patient.gender"},
		{"wrong type", `{"resourceType":"Patient","name":[{"family":3}]}`, http.StatusBadRequest, "Patient.name[0].family"},
		{"missing required", `{"resourceType":"Observation","code":{"text":"x"}}`, http.StatusUnprocessableEntity, "Observation.status"},
		{"unknown type", `{"resourceType":"Nope"}`, http.StatusBadRequest, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oe := c.Check([]byte(tc.body))
			if tc.status == 0 {
				if oe != nil {
					t.Fatalf("want valid, got %v", oe.Issues)
				}
				return
			}
			if oe == nil {
				t.Fatal("want an error")
			}
			if oe.Status != tc.status {
				t.Errorf("status %d, want %d (%v)", oe.Status, tc.status, oe.Issues)
			}
			if tc.expr == "" {
				return
			}
			found := false
			for _, is := range oe.Issues {
				for _, e := range is.Expression {
					if strings.HasPrefix(e, tc.expr) {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("no issue names %s: %+v", tc.expr, oe.Issues)
			}
		})
	}
}

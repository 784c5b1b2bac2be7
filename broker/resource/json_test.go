package resource

import (
	"errors"
	"testing"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

func TestDecodeShape(t *testing.T) {
	cases := []struct {
		name, body string
		depth      int
		ok         bool
	}{
		{"plain", `{"resourceType":"Patient","gender":"male"}`, 0, true},
		{"same key in sibling objects", `{"a":[{"x":1},{"x":2}],"b":{"x":3}}`, 0, true},
		{"same key at two levels", `{"x":{"x":{"x":1}}}`, 0, true},
		{"key-like string value", `{"a":"b","c":["a"],"d":"a"}`, 0, true},
		{"escaped quote in key", `{"a\"b":1,"a":2}`, 0, true},
		{"repeated key", `{"a":1,"b":2,"a":3}`, 0, false},
		{"repeated key with spaces", `{"a" : 1, "a"	: 2}`, 0, false},
		{"repeated key nested", `{"a":[{"b":1,"c":{"d":1,"d":2}}]}`, 0, false},
		{"repeated key after nested object", `{"a":{"b":1},"a":2}`, 0, false},
		{"repeated key spelled with an escape", `{"a":1,"\u0061":2}`, 0, false},
		{"within depth", `{"a":[{"b":[1]}]}`, 4, true},
		{"too deep", `{"a":[{"b":[[1]]}]}`, 4, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.body), Limits{MaxDepth: c.depth})
			if c.ok != (err == nil) {
				t.Fatalf("ok=%v, err=%v", c.ok, err)
			}
			var oe *outcome.Error
			if err != nil && (!errors.As(err, &oe) || oe.Status != 400) {
				t.Errorf("want a 400 outcome, got %v", err)
			}
		})
	}
}

func TestEmptyValues(t *testing.T) {
	cases := []struct {
		body string
		want []string
	}{
		{`{"resourceType":"Patient","gender":"male","name":[{"given":["A"]}]}`, nil},
		{`{"resourceType":"Patient","gender":""}`, []string{"Patient.gender"}},
		{`{"resourceType":"Patient","name":[{"family":"","given":[]}],"telecom":[]}`, []string{"Patient.name[0].family", "Patient.name[0].given", "Patient.telecom"}},
	}
	for _, c := range cases {
		m, err := Decode([]byte(c.body), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		oe := EmptyValues(m)
		var got []string
		if oe != nil {
			for _, is := range oe.Issues {
				got = append(got, is.Expression...)
			}
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.body, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", c.body, got, c.want)
			}
		}
	}
}

package validate

import (
	"fmt"
	"testing"
)

// BenchmarkValidateUKCore validates typical custody resources against UK Core (structure,
// invariants, profile) and reports resources per second.
func BenchmarkValidateUKCore(b *testing.B) {
	v := testValidator(b)
	q := decode(b, readFile(b, "testdata/custody/questionnaire.json"))
	opts := Options{Questionnaire: func(string) (map[string]any, bool) { return q, true }}
	var res []map[string]any
	var raws [][]byte
	for _, f := range []string{"patient", "observation", "condition", "allergy", "questionnaireresponse"} {
		s := readFile(b, "testdata/custody/"+f+".json")
		res = append(res, decode(b, s))
		raws = append(raws, []byte(s))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(res)
		o := opts
		o.Raw = raws[k]
		if r := v.Validate(res[k], o); !r.Valid() {
			b.Fatal(dump(r.Issues))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkValidateBundle validates collection Bundles of custody resources whose references
// resolve within the Bundle; time per entry should stay flat as the Bundle grows.
func BenchmarkValidateBundle(b *testing.B) {
	v := testValidator(b)
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			bundle := bigBundle(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := v.Validate(bundle, Options{}); !r.Valid() {
					b.Fatal(dump(r.Issues)[:2000])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
		})
	}
}

func bigBundle(b testing.TB, n int) map[string]any {
	entries := make([]any, 0, n)
	pat := ""
	for i := 0; i < n; i++ {
		var s string
		if i%2 == 0 {
			pat = fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i)
			s = `{"fullUrl":"` + pat + `","resource":` + readFile(b, "testdata/custody/patient.json") + `}`
		} else {
			obs := decode(b, readFile(b, "testdata/custody/observation.json"))
			obs["subject"] = map[string]any{"reference": pat}
			obs["id"] = fmt.Sprintf("obs-%d", i)
			entries = append(entries, map[string]any{"fullUrl": fmt.Sprintf("urn:uuid:00000000-0000-4000-9000-%012d", i), "resource": obs})
			continue
		}
		m := decode(b, s)
		m["resource"].(map[string]any)["id"] = fmt.Sprintf("pat-%d", i)
		entries = append(entries, m)
	}
	return map[string]any{"resourceType": "Bundle", "type": "collection", "entry": entries}
}

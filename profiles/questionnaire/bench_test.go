package questionnaire

import "testing"

func BenchmarkCheck(b *testing.B) {
	q := fixture(b, "ld-screening-questionnaire.json")
	qr := fixture(b, "ld-screening-response.json")
	opts := Options{ValueSet: accommodation}
	if issues := Check(qr, q, opts); len(issues) != 0 {
		b.Fatalf("fixture response should be valid, got %+v", issues)
	}
	b.ReportAllocs()
	for b.Loop() {
		Check(qr, q, opts)
	}
}

package nhsnumber

import "testing"

func TestCodingSpellings(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	const england = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
	const retired = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
	const wales = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusWales"
	for _, tc := range []struct {
		name, system, code   string
		wantSystem, wantCode string
		ok                   bool
	}{
		{"england", england, "01", england, "01", true},
		{"bare code", "", "02", england, "02", true},
		{"PDS old system new code", retired, "01", england, "01", true},
		{"BaRS string code", retired, "number-present-and-verified", england, "01", true},
		{"bare string code", "", "trace-required", england, "03", true},
		{"welsh via retired", retired, "number-present-and-traced-using-welsh-nhs-ar", wales, "nn", true},
		{"welsh kept", wales, "nn", wales, "nn", true},
		{"unknown code", england, "42", "", "", false},
		{"unknown system", "http://example.org", "01", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := s.Coding(tc.system, tc.code)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if c["system"] != tc.wantSystem || c["code"] != tc.wantCode {
				t.Errorf("got %v|%v, want %s|%s", c["system"], c["code"], tc.wantSystem, tc.wantCode)
			}
		})
	}
}

func TestValid(t *testing.T) {
	for n, want := range map[string]bool{"9000000009": true, "9000000000": false, "123": false} {
		if ok, _ := Valid(n); ok != want {
			t.Errorf("Valid(%s) = %v, want %v", n, ok, want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"9000000009", "900 000 0009"},
		{"900000000", "900000000"},
		{"", ""},
		{"900 000 0009", "900 000 0009"},
	} {
		if got := Format(tc.in); got != tc.want {
			t.Errorf("Format(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

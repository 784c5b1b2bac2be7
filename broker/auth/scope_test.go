package auth

import (
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	cases := []struct {
		in, want string // want "" means an error
	}{
		{"system/Observation.rs", "system/Observation.rs"},
		{"system/*.cruds", "system/*.cruds"},
		{"system/Patient.r", "system/Patient.r"},
		{"system/Patient.cd", "system/Patient.cd"},
		{"patient/Observation.s", "patient/Observation.s"},
		{"user/Encounter.cu", "user/Encounter.cu"},
		{"system/Observation.read", "system/Observation.rs"},
		{"system/Observation.write", "system/Observation.cud"},
		{"system/*.*", "system/*.cruds"},
		{"system/*.read", "system/*.rs"},
		{"system/Observation.sr", ""},  // out of order
		{"system/Observation.rr", ""},  // repeated
		{"system/Observation.x", ""},   // unknown letter
		{"system/Observation.", ""},    // no permissions
		{"system/Observation", ""},     // no dot
		{"system/observation.rs", ""},  // not a type name
		{"system/Obs-ervation.rs", ""}, // not a type name
		{"system/.rs", ""},             // no type
		{"admin/Observation.rs", ""},   // unknown context
		{"Observation.rs", ""},         // no context
		{"system/Observation.rs?category=laboratory", ""},
		{"system/Observation.rs.s", ""}, // extra dot
		{"system/Observation.READ", ""},
	}
	for _, tc := range cases {
		s, err := ParseScope(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: parsed as %s, want an error", tc.in, s)
		case tc.want != "" && err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.want != "" && s.String() != tc.want:
			t.Errorf("%s: got %s, want %s", tc.in, s, tc.want)
		}
	}
}

func TestScopesAllows(t *testing.T) {
	ss, ignored, err := ParseScopes("system/Observation.rs system/Patient.c openid patient/Condition.cruds", "system/Task.write")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ignored, ",") != "openid" {
		t.Errorf("ignored %v", ignored)
	}
	cases := []struct {
		typ   string
		perm  byte
		allow bool
	}{
		{"Observation", 'r', true},
		{"Observation", 's', true},
		{"Observation", 'c', false},
		{"Observation", 'u', false},
		{"Patient", 'c', true},
		{"Patient", 'r', false},
		{"Task", 'u', true},
		{"Task", 'd', true},
		{"Task", 'r', false},
		{"Condition", 'r', false}, // patient/ scopes give no system-wide access
		{"Encounter", 'r', false},
		{"Observation", 'x', false},
		{"observation", 'r', false},
	}
	for _, tc := range cases {
		if got := ss.Allows(tc.typ, tc.perm); got != tc.allow {
			t.Errorf("Allows(%s, %c) = %v", tc.typ, tc.perm, got)
		}
	}
	all, _, _ := ParseScopes("system/*.cruds")
	for _, p := range []byte("cruds") {
		if !all.Allows("AuditEvent", p) {
			t.Errorf("system/*.cruds does not allow %c", p)
		}
	}
	if all.Allows("AuditEvent", 'x') || Scopes(nil).Allows("Patient", 'r') {
		t.Error("allowed what no scope grants")
	}
}

func TestScopesIntersect(t *testing.T) {
	cases := []struct {
		requested, allowed, want string
	}{
		{"system/Observation.rs", "system/*.cruds", "system/Observation.rs"},
		{"system/*.cruds", "system/Observation.rs system/Patient.r", "system/Observation.rs system/Patient.r"},
		{"system/*.rs", "system/*.cruds", "system/*.rs"},
		{"system/Observation.cruds", "system/Observation.rs", "system/Observation.rs"},
		{"system/Observation.c", "system/Observation.rs", ""},
		{"system/Condition.rs", "system/Observation.rs", ""},
		{"patient/Observation.rs", "system/Observation.rs", ""},
		{"system/Observation.read system/Observation.c", "system/Observation.cruds", "system/Observation.crs"},
		// Covered by the wildcard: folded into it.
		{"system/*.rs system/Patient.r", "system/*.cruds", "system/*.rs"},
		{"system/*.r system/Patient.rs", "system/*.cruds", "system/*.r system/Patient.rs"},
	}
	for _, tc := range cases {
		req, _, err := ParseScopes(tc.requested)
		if err != nil {
			t.Fatal(err)
		}
		al, _, err := ParseScopes(tc.allowed)
		if err != nil {
			t.Fatal(err)
		}
		if got := req.Intersect(al).String(); got != tc.want {
			t.Errorf("%q ∩ %q = %q, want %q", tc.requested, tc.allowed, got, tc.want)
		}
	}
}

// FuzzParseScope checks that parsing never panics, that what parses prints in v2 form and
// parses back to the same scope, and that Allows agrees with the printed permissions.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"system/Observation.rs", "system/*.cruds", "patient/Patient.read", "user/*.write",
		"system/*.*", "system/Observation.rs?x=y", "system/.", "/", "system/Obs.sr", "system/A.cruds"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseScope(in)
		if err != nil {
			return
		}
		out := s.String()
		back, err := ParseScope(out)
		if err != nil || back != s {
			t.Fatalf("%q printed as %q, which parses to %v, %v", in, out, back, err)
		}
		perms := s.Perms()
		if perms == "" {
			t.Fatalf("%q has no permissions", in)
		}
		typ := s.ResourceType
		if typ == "*" {
			typ = "Patient"
		}
		for _, p := range []byte(permLetters) {
			want := s.Context == "system" && strings.IndexByte(perms, p) >= 0
			if (Scopes{s}).Allows(typ, p) != want {
				t.Fatalf("%q: Allows(%s, %c) != %v", in, typ, p, want)
			}
		}
		if (Scopes{s}).Intersect(Scopes{s}).String() != out {
			t.Fatalf("%q: intersect with itself gives %q", in, (Scopes{s}).Intersect(Scopes{s}))
		}
	})
}

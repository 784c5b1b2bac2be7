package search

import "testing"

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in             string
		prefix         Prefix
		val, low, high float64
	}{
		{"100", PrefixEq, 100, 99.5, 100.5},
		{"100.00", PrefixEq, 100, 99.995, 100.005},
		{"1e2", PrefixEq, 100, 50, 150},
		{"1.0e2", PrefixEq, 100, 95, 105},
		{"1.5e-3", PrefixEq, 0.0015, 0.00145, 0.00155},
		{"-5", PrefixEq, -5, -5.5, -4.5},
		{"0", PrefixEq, 0, -0.5, 0.5},
		{"0.1", PrefixEq, 0.1, 0.05, 0.15},
		{"+3", PrefixEq, 3, 2.5, 3.5},
		{"gt100", PrefixGt, 100, 99.5, 100.5},
		{"ne0.5", PrefixNe, 0.5, 0.45, 0.55},
		// ap widens to ±10% when that is wider than the precision...
		{"ap100", PrefixAp, 100, 90, 110},
		// ...and keeps the precision range when that is wider.
		{"ap1", PrefixAp, 1, 0.5, 1.5},
		{"ap-200", PrefixAp, -200, -220, -180},
	}
	for _, tt := range tests {
		n, err := parseNumber(tt.in)
		if err != nil {
			t.Errorf("parseNumber(%q): %v", tt.in, err)
			continue
		}
		if n.Prefix != tt.prefix || n.Value != tt.val || !near(n.Low, tt.low) || !near(n.High, tt.high) {
			t.Errorf("parseNumber(%q) = %+v, want %s %v [%v, %v)", tt.in, *n, tt.prefix, tt.val, tt.low, tt.high)
		}
	}
}

func near(a, b float64) bool {
	d := a - b
	return d < 1e-12 && d > -1e-12
}

func TestParseNumberInvalid(t *testing.T) {
	for _, in := range []string{"", "abc", "1.", ".5", "1,5", "1e", "xx5", "gt", "5kg", "1e999", "1e-999", "--1", "0x10"} {
		if n, err := parseNumber(in); err == nil {
			t.Errorf("parseNumber(%q) = %+v, want an error", in, *n)
		}
	}
}

func TestNumberMatches(t *testing.T) {
	tests := []struct {
		search string
		x      float64
		want   bool
	}{
		{"100", 100, true},
		{"100", 99.5, true},
		{"100", 100.49, true},
		{"100", 100.5, false},
		{"100", 99.49, false},
		{"100.00", 100.004, true},
		{"100.00", 100.01, false},
		{"ne100", 100.2, false},
		{"ne100", 100.5, true},
		{"ne100", 99, true},
		{"gt100", 100.1, true},
		{"gt100", 100, false},
		{"lt100", 99.9, true},
		{"lt100", 100, false},
		{"ge100", 100, true},
		{"ge100", 99.99, false},
		{"le100", 100, true},
		{"le100", 100.01, false},
		{"sa100", 100.01, true},
		{"sa100", 100, false},
		{"eb100", 99.99, true},
		{"eb100", 100, false},
		{"ap100", 90, true},
		{"ap100", 109.9, true},
		{"ap100", 89.9, false},
		{"ap100", 110.1, false},
	}
	for _, tt := range tests {
		n, err := parseNumber(tt.search)
		if err != nil {
			t.Fatalf("parseNumber(%q): %v", tt.search, err)
		}
		if got := n.Matches(tt.x); got != tt.want {
			t.Errorf("%s matches %v = %v, want %v", tt.search, tt.x, got, tt.want)
		}
	}
}

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in           string
		val          float64
		prefix       Prefix
		system, code string
		wantErr      bool
	}{
		{"5.4", 5.4, PrefixEq, "", "", false},
		{"5.4|http://unitsofmeasure.org|mg", 5.4, PrefixEq, "http://unitsofmeasure.org", "mg", false},
		{"le5.4||mg", 5.4, PrefixLe, "", "mg", false},
		{`5.4||mg\|dl`, 5.4, PrefixEq, "", "mg|dl", false},
		{"5.4|", 0, "", "", "", true},
		{"5.4|a|b|c", 0, "", "", "", true},
		{"5.4|http://unitsofmeasure.org|", 0, "", "", "", true},
		{"abc|http://unitsofmeasure.org|mg", 0, "", "", "", true},
	}
	for _, tt := range tests {
		q, err := parseQuantity(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseQuantity(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if q.Number.Value != tt.val || q.Number.Prefix != tt.prefix || q.System != tt.system || q.Code != tt.code {
			t.Errorf("parseQuantity(%q) = %+v", tt.in, *q)
		}
	}
}

package search

import (
	"slices"
	"testing"
)

func TestSplitEscaped(t *testing.T) {
	tests := []struct {
		in   string
		sep  byte
		want []string
	}{
		{"a,b,c", ',', []string{"a", "b", "c"}},
		{`a\,b,c`, ',', []string{`a\,b`, "c"}},
		{`a\\,b`, ',', []string{`a\\`, "b"}},
		{`a\\\,b`, ',', []string{`a\\\,b`}},
		{"a,,b", ',', []string{"a", "", "b"}},
		{",", ',', []string{"", ""}},
		{`sys|code\|x`, '|', []string{"sys", `code\|x`}},
		{`trailing\`, ',', []string{`trailing\`}},
		{"", ',', []string{""}},
	}
	for _, tt := range tests {
		if got := splitEscaped(tt.in, tt.sep); !slices.Equal(got, tt.want) {
			t.Errorf("splitEscaped(%q, %q) = %q, want %q", tt.in, tt.sep, got, tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a\,b`, "a,b"},
		{`a\|b`, "a|b"},
		{`a\$b`, "a$b"},
		{`a\\b`, `a\b`},
		{`a\\\,b`, `a\,b`},
		{`C:\temp`, `C:\temp`}, // other escapes are kept as written
		{`end\`, `end\`},
		{"plain", "plain"},
	}
	for _, tt := range tests {
		if got := unescape(tt.in); got != tt.want {
			t.Errorf("unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := unescape(escape(tt.want)); got != tt.want {
			t.Errorf("unescape(escape(%q)) = %q", tt.want, got)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Zoë", "zoe"},
		{"ZOË", "zoe"},
		{"  Renée   O'Brien ", "renee o'brien"},
		{"Ångström\tJosé", "angstrom jose"},
		{"Łukasz", "łukasz"}, // no canonical decomposition: only lower-cased
		{"Müller-Lüdenscheidt", "muller-ludenscheidt"},
		{"Çelik\n\nŞahin", "celik sahin"},
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

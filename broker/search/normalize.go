package search

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Normalize folds a string for the default and :contains string searches and the token :text
// modifier: lower case, diacritics removed (canonical decomposition, then combining marks
// dropped, so "Zoë" and "ZOE" both become "zoe"), runs of white space collapsed to one space and
// the ends trimmed. The indexer stores Normalize of each indexed string, so both sides agree.
func Normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteString(strings.ToLower(string(r)))
	}
	return b.String()
}

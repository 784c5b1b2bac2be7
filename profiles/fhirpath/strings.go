package fhirpath

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"regexp"
	"strings"
	"unicode/utf8"
)

// inputString reads the single string input of a string function. known is false for an
// empty input; anything but one string is an error.
func inputString(n *funcNode, in Collection) (string, bool, error) {
	if len(in) == 0 {
		return "", false, nil
	}
	if len(in) > 1 {
		return "", false, errorf("%s() on a collection of %d items", n.name, len(in))
	}
	if in[0].t.sys != sysString {
		return "", false, errorf("%s() needs a string, got %s", n.name, in[0].t.name)
	}
	s, ok := in[0].node.(string)
	return s, ok, nil
}

// argString evaluates argument i as an optional single string.
func argString(c *evalCtx, n *funcNode, i int, focus Collection) (string, bool, error) {
	a, err := n.arg(c, i, focus)
	if err != nil || len(a) == 0 {
		return "", false, err
	}
	if len(a) > 1 {
		return "", false, errorf("%s() argument must be a single value", n.name)
	}
	s, ok := stringOf(a[0])
	if !ok {
		return "", false, errorf("%s() argument must be a string", n.name)
	}
	return s, true, nil
}

func stringPredicate(f func(s, arg string) bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		s, ok, err := inputString(n, in)
		if err != nil || !ok {
			return nil, err
		}
		a, ok, err := argString(c, n, 0, focus)
		if err != nil || !ok {
			return nil, err
		}
		return c.boolColl(f(s, a)), nil
	}
}

func hasPrefix(s, a string) bool      { return strings.HasPrefix(s, a) }
func hasSuffix(s, a string) bool      { return strings.HasSuffix(s, a) }
func containsString(s, a string) bool { return strings.Contains(s, a) }

func stringMap(f func(string) string) fnImpl {
	return func(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
		s, ok, err := inputString(n, in)
		if err != nil || !ok {
			return nil, err
		}
		return Collection{c.str(f(s))}, nil
	}
}

func upper(s string) string { return strings.ToUpper(s) }
func lower(s string) string { return strings.ToLower(s) }
func trim(s string) string  { return strings.TrimSpace(s) }

// Positions and lengths are counted in characters, not bytes.
func fnIndexOf(last bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		s, ok, err := inputString(n, in)
		if err != nil || !ok {
			return nil, err
		}
		a, ok, err := argString(c, n, 0, focus)
		if err != nil || !ok {
			return nil, err
		}
		i := strings.Index(s, a)
		if last {
			i = strings.LastIndex(s, a)
		}
		if i > 0 {
			i = utf8.RuneCountInString(s[:i])
		}
		return Collection{c.integer(int64(i))}, nil
	}
}

func fnSubstring(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	s, ok, err := inputString(n, in)
	if err != nil || !ok {
		return nil, err
	}
	start, ok, err := intArg(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	r := []rune(s)
	if start < 0 || start >= int64(len(r)) {
		return nil, nil
	}
	end := int64(len(r))
	if len(n.args) > 1 {
		l, ok, err := intArg(c, n, 1, focus)
		if err != nil {
			return nil, err
		}
		if ok {
			if l < 0 {
				l = 0
			}
			if start+l < end {
				end = start + l
			}
		}
	}
	return Collection{c.str(string(r[start:end]))}, nil
}

func fnReplace(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	s, ok, err := inputString(n, in)
	if err != nil || !ok {
		return nil, err
	}
	pat, ok, err := argString(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	sub, ok, err := argString(c, n, 1, focus)
	if err != nil || !ok {
		return nil, err
	}
	return Collection{c.str(strings.ReplaceAll(s, pat, sub))}, nil
}

// regex returns the pattern of a regex function, compiled at compile time when literal.
func (n *funcNode) regex(pat string, full bool) (*regexp.Regexp, error) {
	if n.re != nil {
		return n.re, nil
	}
	return compileRegex(pat, full)
}

// compileRegex compiles with FHIRPath's single-line semantics ('.' matches newlines).
func compileRegex(pat string, full bool) (*regexp.Regexp, error) {
	p := "(?s)" + pat
	if full {
		p = "(?s)^(?:" + pat + ")$"
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, errorf("invalid regular expression %q: %v", pat, err)
	}
	return re, nil
}

func fnMatches(full bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		s, ok, err := inputString(n, in)
		if err != nil || !ok {
			return nil, err
		}
		pat, ok, err := argString(c, n, 0, focus)
		if err != nil || !ok {
			return nil, err
		}
		re, err := n.regex(pat, full)
		if err != nil {
			return nil, err
		}
		return c.boolColl(re.MatchString(s)), nil
	}
}

func fnReplaceMatches(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	s, ok, err := inputString(n, in)
	if err != nil || !ok {
		return nil, err
	}
	pat, ok, err := argString(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	sub, ok, err := argString(c, n, 1, focus)
	if err != nil || !ok {
		return nil, err
	}
	if pat == "" {
		return Collection{c.str(s)}, nil
	}
	re, err := n.regex(pat, false)
	if err != nil {
		return nil, err
	}
	return Collection{c.str(re.ReplaceAllString(s, sub))}, nil
}

func fnLength(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	s, ok, err := inputString(n, in)
	if err != nil || !ok {
		return nil, err
	}
	return Collection{c.integer(int64(utf8.RuneCountInString(s)))}, nil
}

func fnToChars(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	s, ok, err := inputString(n, in)
	if err != nil || !ok {
		return nil, err
	}
	var out Collection
	for _, r := range s {
		out = append(out, c.str(string(r)))
	}
	return out, nil
}

func fnSplit(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	s, ok, err := inputString(n, in)
	if err != nil || !ok {
		return nil, err
	}
	sep, ok, err := argString(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	parts := strings.Split(s, sep)
	out := make(Collection, len(parts))
	for i, p := range parts {
		out[i] = c.str(p)
	}
	return out, nil
}

func fnJoin(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	sep, _, err := argString(c, n, 0, focus)
	if err != nil {
		return nil, err
	}
	parts := make([]string, 0, len(in))
	for _, v := range in {
		s, ok := v.AsString()
		if !ok {
			return nil, errorf("join() needs strings, got %s", v.t.name)
		}
		parts = append(parts, s)
	}
	return Collection{c.str(strings.Join(parts, sep))}, nil
}

func fnEncode(encode bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		s, ok, err := inputString(n, in)
		if err != nil || !ok {
			return nil, err
		}
		format, ok, err := argString(c, n, 0, focus)
		if err != nil || !ok {
			return nil, err
		}
		var enc interface {
			EncodeToString([]byte) string
			DecodeString(string) ([]byte, error)
		}
		switch format {
		case "base64":
			enc = base64.StdEncoding
		case "urlbase64":
			enc = base64.URLEncoding
		case "hex":
			if encode {
				return Collection{c.str(hex.EncodeToString([]byte(s)))}, nil
			}
			b, err := hex.DecodeString(s)
			if err != nil {
				return nil, nil
			}
			return Collection{c.str(string(b))}, nil
		default:
			return nil, errorf("unknown encoding %q", format)
		}
		if encode {
			return Collection{c.str(enc.EncodeToString([]byte(s)))}, nil
		}
		b, err := enc.DecodeString(s)
		if err != nil {
			return nil, nil
		}
		return Collection{c.str(string(b))}, nil
	}
}

func fnEscape(escape bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		s, ok, err := inputString(n, in)
		if err != nil || !ok {
			return nil, err
		}
		format, ok, err := argString(c, n, 0, focus)
		if err != nil || !ok {
			return nil, err
		}
		switch {
		case format == "html" && escape:
			r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")
			return Collection{c.str(r.Replace(s))}, nil
		case format == "html":
			return Collection{c.str(html.UnescapeString(s))}, nil
		case format == "json" && escape:
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(s); err != nil {
				return nil, nil
			}
			out := strings.TrimSuffix(b.String(), "\n")
			return Collection{c.str(out[1 : len(out)-1])}, nil
		case format == "json":
			out, ok := unescapeJSON(s)
			if !ok {
				return nil, nil
			}
			return Collection{c.str(out)}, nil
		}
		return nil, errorf("unknown escape format %q", format)
	}
}

// unescapeJSON resolves the escapes of a JSON string body; unescaped quotes are kept.
func unescapeJSON(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			b.WriteByte(s[i])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+4 >= len(s) {
				return "", false
			}
			var r rune
			if _, err := fmt.Sscanf(s[i+1:i+5], "%04x", &r); err != nil {
				return "", false
			}
			b.WriteRune(r)
			i += 4
		default:
			return "", false
		}
	}
	return b.String(), true
}

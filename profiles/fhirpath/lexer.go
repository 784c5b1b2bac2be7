package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tDelimIdent // `...`
	tString
	tNumber
	tDate     // @2015-01-01
	tDateTime // @2015-01-01T10:00
	tTime     // @T10:00
	tOp       // punctuation and symbolic operators
	tExternal // %name, %`name`, %'name'
	tSpecial  // $this, $index, $total
)

type token struct {
	kind tokKind
	text string // identifier name, decoded string, operator or literal body
	pos  int    // byte offset in the source
}

// SyntaxError reports a malformed expression and where.
type SyntaxError struct {
	Expr   string
	Offset int // byte offset
	Line   int
	Column int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("fhirpath syntax error at line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

func newSyntaxError(src string, pos int, format string, args ...any) *SyntaxError {
	if pos > len(src) {
		pos = len(src)
	}
	line, col := 1, 1
	for _, r := range src[:pos] {
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &SyntaxError{Expr: src, Offset: pos, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		// whitespace and comments
		for i < len(src) {
			c := src[i]
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' {
				i++
				continue
			}
			if strings.HasPrefix(src[i:], "//") {
				for i < len(src) && src[i] != '\n' {
					i++
				}
				continue
			}
			if strings.HasPrefix(src[i:], "/*") {
				end := strings.Index(src[i+2:], "*/")
				if end < 0 {
					return nil, newSyntaxError(src, i, "unterminated comment")
				}
				i += end + 4
				continue
			}
			break
		}
		if i >= len(src) {
			toks = append(toks, token{kind: tEOF, pos: i})
			return toks, nil
		}
		start := i
		c := src[i]
		switch {
		case isIdentStart(c):
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{kind: tIdent, text: src[start:i], pos: start})
		case c == '`':
			s, n, err := lexQuoted(src, i, '`')
			if err != nil {
				return nil, err
			}
			i = n
			toks = append(toks, token{kind: tDelimIdent, text: s, pos: start})
		case c == '\'':
			s, n, err := lexQuoted(src, i, '\'')
			if err != nil {
				return nil, err
			}
			i = n
			toks = append(toks, token{kind: tString, text: s, pos: start})
		case isDigit(c):
			for i < len(src) && isDigit(src[i]) {
				i++
			}
			if i+1 < len(src) && src[i] == '.' && isDigit(src[i+1]) {
				i++
				for i < len(src) && isDigit(src[i]) {
					i++
				}
			}
			toks = append(toks, token{kind: tNumber, text: src[start:i], pos: start})
		case c == '@':
			t, n, err := lexDateTime(src, i)
			if err != nil {
				return nil, err
			}
			i = n
			toks = append(toks, t)
		case c == '%':
			i++
			if i >= len(src) {
				return nil, newSyntaxError(src, start, "expected a variable name after '%%'")
			}
			switch {
			case src[i] == '`' || src[i] == '\'':
				s, n, err := lexQuoted(src, i, src[i])
				if err != nil {
					return nil, err
				}
				i = n
				toks = append(toks, token{kind: tExternal, text: s, pos: start})
			case isIdentStart(src[i]):
				b := i
				for i < len(src) && (isIdentPart(src[i]) || src[i] == '-') {
					i++
				}
				toks = append(toks, token{kind: tExternal, text: src[b:i], pos: start})
			default:
				return nil, newSyntaxError(src, start, "expected a variable name after '%%'")
			}
		case c == '$':
			i++
			b := i
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			name := src[b:i]
			if name != "this" && name != "index" && name != "total" {
				return nil, newSyntaxError(src, start, "unknown special variable $%s", name)
			}
			toks = append(toks, token{kind: tSpecial, text: name, pos: start})
		default:
			op := ""
			for _, cand := range []string{"<=", ">=", "!=", "!~"} {
				if strings.HasPrefix(src[i:], cand) {
					op = cand
					break
				}
			}
			if op == "" {
				if strings.IndexByte("+-*/&|=~<>()[]{},.", c) < 0 {
					r, _ := utf8.DecodeRuneInString(src[i:])
					return nil, newSyntaxError(src, i, "unexpected character %q", r)
				}
				op = src[i : i+1]
			}
			i += len(op)
			toks = append(toks, token{kind: tOp, text: op, pos: start})
		}
	}
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || isDigit(c) }

// lexQuoted reads a '...' string or `...` identifier with FHIRPath escapes.
func lexQuoted(src string, i int, q byte) (string, int, error) {
	start := i
	i++
	var b strings.Builder
	for i < len(src) {
		c := src[i]
		if c == q {
			return b.String(), i + 1, nil
		}
		if c == '\\' {
			if i+1 >= len(src) {
				break
			}
			e := src[i+1]
			switch e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if i+6 > len(src) {
					return "", 0, newSyntaxError(src, i, "bad unicode escape")
				}
				v, err := strconv.ParseUint(src[i+2:i+6], 16, 32)
				if err != nil {
					return "", 0, newSyntaxError(src, i, "bad unicode escape")
				}
				b.WriteRune(rune(v))
				i += 6
				continue
			default:
				return "", 0, newSyntaxError(src, i, "unknown escape \\%c", e)
			}
			i += 2
			continue
		}
		b.WriteByte(c)
		i++
	}
	what := "string"
	if q == '`' {
		what = "identifier"
	}
	return "", 0, newSyntaxError(src, start, "unterminated %s", what)
}

func lexDateTime(src string, i int) (token, int, error) {
	start := i
	i++
	j := i
	for j < len(src) {
		c := src[j]
		if isDigit(c) || c == '-' || c == ':' || c == 'T' || c == 'Z' || c == '+' {
			j++
			continue
		}
		// a '.' is part of the literal only when fractional seconds follow
		if c == '.' && j+1 < len(src) && isDigit(src[j+1]) && j > i && strings.Count(src[i:j], ":") == 2 {
			j++
			continue
		}
		break
	}
	body := src[i:j]
	if strings.HasPrefix(body, "T") {
		if _, ok := parseTime(body[1:]); !ok {
			// A timezone on a time literal is well-formed lexically but invalid: report it
			// as a time literal and let evaluation refuse it.
			return token{}, 0, newSyntaxError(src, start, "invalid time literal @%s", body)
		}
		return token{kind: tTime, text: body[1:], pos: start}, j, nil
	}
	if strings.Contains(body, "T") {
		if _, ok := parseDateTime(body); !ok {
			return token{}, 0, newSyntaxError(src, start, "invalid date/time literal @%s", body)
		}
		return token{kind: tDateTime, text: body, pos: start}, j, nil
	}
	if _, ok := parseDate(body); !ok {
		return token{}, 0, newSyntaxError(src, start, "invalid date literal @%s", body)
	}
	return token{kind: tDate, text: body, pos: start}, j, nil
}

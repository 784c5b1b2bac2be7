package searchparam

import (
	"fmt"
	"strings"
)

// ExpressionFor returns the part of the expression that applies to resourceType.
//
// Shared definitions such as clinical-patient join one branch per resource type with a
// top-level "|"; evaluating only the matching branches keeps indexing cheap. When every
// top-level branch starts with a type name, the branches starting with resourceType (or
// with Resource/DomainResource, which match any type) are returned joined by " | ", or ""
// when none match. Otherwise the expression is not split by type and is returned whole.
func (p *Param) ExpressionFor(resourceType string) string {
	if e, ok := p.perType[resourceType]; ok {
		return e
	}
	return expressionFor(p.Expression, resourceType)
}

func expressionFor(expr, resourceType string) string {
	branches := splitUnion(expr)
	if len(branches) < 2 {
		return strings.TrimSpace(expr)
	}
	var keep []string
	for _, b := range branches {
		head := leadingIdentifier(b)
		if !isTypeName(head) {
			return strings.TrimSpace(expr)
		}
		if head == resourceType || head == "Resource" || head == "DomainResource" {
			keep = append(keep, b)
		}
	}
	return strings.Join(keep, " | ")
}

// splitUnion splits expr at the "|" operators that are not inside parentheses, brackets,
// braces, string literals or delimited identifiers. Branches are trimmed.
func splitUnion(expr string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '\'', '`':
			i, _ = skipQuoted(expr, i)
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case '|':
			if depth == 0 {
				out = append(out, strings.TrimSpace(expr[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(expr[start:]))
}

// skipQuoted returns the index of the quote closing the literal opened at i, honouring
// backslash escapes. When the literal is unterminated it returns len(s)-1 and false.
func skipQuoted(s string, i int) (int, bool) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j, true
		}
	}
	return len(s) - 1, false
}

// leadingIdentifier returns the identifier a branch starts with, ignoring opening
// parentheses, e.g. "Observation" for "(Observation.value as Quantity)".
func leadingIdentifier(branch string) string {
	b := strings.TrimLeft(branch, "( \t\r\n")
	end := 0
	for end < len(b) && isIdentChar(b[end]) {
		end++
	}
	return b[:end]
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isTypeName reports whether an identifier looks like a FHIR type name; element names
// start with a lower-case letter.
func isTypeName(s string) bool {
	return s != "" && s[0] >= 'A' && s[0] <= 'Z'
}

// checkExpression reports unbalanced brackets and unterminated literals, the mistakes that
// would otherwise only surface when the FHIRPath engine compiles the expression.
func checkExpression(expr string) error {
	if strings.TrimSpace(expr) == "" {
		return fmt.Errorf("expression is empty")
	}
	var stack []byte
	closer := map[byte]byte{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch c {
		case '\'', '`':
			j, ok := skipQuoted(expr, i)
			if !ok {
				return fmt.Errorf("unterminated %c literal at offset %d", c, i)
			}
			i = j
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != closer[c] {
				return fmt.Errorf("unbalanced %q at offset %d", c, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	for _, b := range splitUnion(expr) {
		if b == "" {
			return fmt.Errorf("empty branch in union")
		}
	}
	return nil
}

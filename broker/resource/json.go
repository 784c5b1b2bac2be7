// Package resource handles FHIR resources as JSON: decoding that keeps decimals exactly as
// written, encoding with resourceType first, meta stamping, and structural validation of R4
// with google/fhir/go.
package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// Limits bound what a single body may contain.
type Limits struct {
	MaxDepth int // nesting of objects and arrays
}

// Decode parses a JSON object, keeping numbers as json.Number so decimals round-trip exactly
// (FHIR gives 1.50 and 1.5 different precision).
func Decode(b []byte, lim Limits) (map[string]any, error) {
	if err := checkDepth(b, lim.MaxDepth); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, outcome.New(http.StatusBadRequest, "invalid", "body is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, outcome.New(http.StatusBadRequest, "invalid", "body has data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, outcome.New(http.StatusBadRequest, "invalid", "body must be a JSON object with a resourceType")
	}
	return m, nil
}

// checkDepth rejects bodies nested deeper than max before any allocation-heavy parse.
func checkDepth(b []byte, max int) error {
	if max <= 0 {
		return nil
	}
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return outcome.New(http.StatusBadRequest, "too-costly", "body is nested more than %d levels deep (limit HJB_MAX_DEPTH)", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// Encode renders a resource with resourceType first and the other keys sorted, so equal
// resources encode to equal bytes.
func Encode(m map[string]any) []byte {
	var buf bytes.Buffer
	buf.Grow(512)
	writeObject(&buf, m, true)
	return buf.Bytes()
}

func writeObject(buf *bytes.Buffer, m map[string]any, top bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if top && k == "resourceType" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	buf.WriteByte('{')
	first := true
	if rt, ok := m["resourceType"]; ok {
		buf.WriteString(`"resourceType":`)
		writeValue(buf, rt)
		first = false
	}
	for _, k := range keys {
		if k == "resourceType" {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		writeString(buf, k)
		buf.WriteByte(':')
		writeValue(buf, m[k])
	}
	buf.WriteByte('}')
}

func writeValue(buf *bytes.Buffer, v any) {
	switch x := v.(type) {
	case map[string]any:
		writeObject(buf, x, false)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeValue(buf, e)
		}
		buf.WriteByte(']')
	case string:
		writeString(buf, x)
	case json.Number:
		buf.WriteString(string(x))
	case json.RawMessage:
		// Stored resources are embedded as they are, without a decode and re-encode.
		buf.Write(x)
	case bool:
		if x {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case nil:
		buf.WriteString("null")
	default:
		b, err := json.Marshal(x)
		if err != nil {
			panic(fmt.Sprintf("resource: cannot encode %T: %v", v, err))
		}
		buf.Write(b)
	}
}

func writeString(buf *bytes.Buffer, s string) {
	// Fast path: plain ASCII without characters that need escaping.
	plain := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			plain = false
			break
		}
	}
	if plain {
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)               //nolint:errcheck // bytes.Buffer does not fail
	buf.Truncate(buf.Len() - 1) // Encode adds a newline
}

// Type returns resourceType, or "" when absent or not a string.
func Type(m map[string]any) string {
	s, _ := m["resourceType"].(string)
	return s
}

// ID returns the id, or "".
func ID(m map[string]any) string {
	s, _ := m["id"].(string)
	return s
}

// Meta returns the meta object, creating it when absent.
func Meta(m map[string]any) map[string]any {
	meta, ok := m["meta"].(map[string]any)
	if !ok {
		meta = map[string]any{}
		m["meta"] = meta
	}
	return meta
}

// Clone deep-copies a decoded resource.
func Clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Clone(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Clone(e)
		}
		return out
	default:
		return v
	}
}

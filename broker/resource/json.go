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
	"strings"

	"github.com/hjbroker/hjbroker/broker/outcome"
)

// Limits bound what a single body may contain.
type Limits struct {
	MaxDepth int // nesting of objects and arrays
}

// Decode parses a JSON object, keeping numbers as json.Number so decimals round-trip exactly
// (FHIR gives 1.50 and 1.5 different precision).
func Decode(b []byte, lim Limits) (map[string]any, error) {
	if err := checkShape(b, lim.MaxDepth); err != nil {
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

// checkShape rejects, before the full parse, bodies nested deeper than max (0: no limit) and
// objects that repeat a property: FHIR JSON forbids repeats, and decoders disagree on which
// copy wins, so accepting them would let two readers see different resources.
func checkShape(b []byte, max int) error {
	// keys holds the property names seen so far in each open object; nil for arrays.
	var keys []map[string]struct{}
	var isObj []bool
	inString, escaped, start := false, false, 0
	for i, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
				n := len(isObj)
				if n == 0 || !isObj[n-1] || !colonFollows(b, i+1) {
					continue
				}
				if keys[n-1] == nil {
					keys[n-1] = map[string]struct{}{}
				}
				k := string(b[start:i])
				if strings.IndexByte(k, '\\') >= 0 {
					// "\u0061" and "a" name the same property.
					var u string
					if json.Unmarshal(b[start-1:i+1], &u) == nil {
						k = u
					}
				}
				if _, dup := keys[n-1][k]; dup {
					return outcome.New(http.StatusBadRequest, "structure", "property %q appears more than once in one JSON object", k)
				}
				keys[n-1][k] = struct{}{}
			}
			continue
		}
		switch c {
		case '"':
			inString, start = true, i+1
		case '{', '[':
			if max > 0 && len(isObj) >= max {
				return outcome.New(http.StatusBadRequest, "too-costly", "body is nested more than %d levels deep (limit HJB_MAX_DEPTH)", max)
			}
			isObj = append(isObj, c == '{')
			keys = append(keys, nil)
		case '}', ']':
			if n := len(isObj); n > 0 {
				isObj, keys = isObj[:n-1], keys[:n-1]
			}
		}
	}
	return nil
}

// colonFollows reports whether the next byte after whitespace at b[i:] is ':'.
func colonFollows(b []byte, i int) bool {
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case ':':
			return true
		}
		return false
	}
	return false
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

package search

import (
	"slices"
	"strconv"
	"strings"

	"github.com/hjbroker/hjbroker/broker/searchparam"
)

// CriteriaKey returns the canonical form of what the query selects: the type, then the clauses
// (and _type for a system-level search) without result parameters, e.g.
// "Patient?birthdate=ge2000&identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009".
// Requests that differ only in parameter order, OR-value order, repeated identical
// clauses, an explicit "eq" prefix, or subject:Patient=1 against subject=Patient/1 give the
// same key, so conditional operations can lock and hash on it.
func (q *Query) CriteriaKey() string {
	return q.Type + "?" + strings.Join(q.criteria(), "&")
}

// Encode returns the canonical query string: the criteria as in CriteriaKey, then the result
// parameters in a fixed order (_count always, as applied; _offset when not 0).
func (q *Query) Encode() string {
	parts := q.criteria()
	parts = append(parts, "_count="+strconv.Itoa(q.Count))
	if q.Offset > 0 {
		parts = append(parts, "_offset="+strconv.Itoa(q.Offset))
	}
	if len(q.Sort) > 0 {
		keys := make([]string, len(q.Sort))
		for i, s := range q.Sort {
			keys[i] = s.Param.Code
			if s.Desc {
				keys[i] = "-" + keys[i]
			}
		}
		parts = append(parts, "_sort="+queryEscape(strings.Join(keys, ",")))
	}
	if q.Total != TotalDefault {
		parts = append(parts, "_total="+string(q.Total))
	}
	if q.Summary != SummaryDefault {
		parts = append(parts, "_summary="+string(q.Summary))
	}
	if len(q.Elements) > 0 {
		els := slices.Sorted(slices.Values(q.Elements))
		parts = append(parts, "_elements="+queryEscape(strings.Join(els, ",")))
	}
	var incs []string
	for _, set := range []struct {
		name string
		list []Include
	}{{"_include", q.Includes}, {"_revinclude", q.RevIncludes}} {
		for _, inc := range set.list {
			key := set.name
			if inc.Iterate {
				key += ":iterate"
			}
			incs = append(incs, key+"="+queryEscape(inc.String()))
		}
	}
	slices.Sort(incs)
	parts = append(parts, slices.Compact(incs)...)
	return strings.Join(parts, "&")
}

// SelfLink returns the URL for Bundle.link[self]: base, the type (if any) and Encode().
func (q *Query) SelfLink(base string) string {
	u := strings.TrimSuffix(base, "/")
	if q.Type != "" {
		u += "/" + q.Type
	}
	return u + "?" + q.Encode()
}

// String renders the directive as written in _include/_revinclude (without the modifier).
func (inc Include) String() string {
	switch {
	case inc.Wildcard && inc.Type == "":
		return "*"
	case inc.Wildcard:
		return inc.Type + ":*"
	case inc.TargetType != "":
		return inc.Type + ":" + inc.Param.Code + ":" + inc.TargetType
	}
	return inc.Type + ":" + inc.Param.Code
}

// criteria returns the sorted, de-duplicated "key=values" items of the clauses.
func (q *Query) criteria() []string {
	var items []string
	if q.Type == "" && len(q.Types) > 0 {
		types := slices.Sorted(slices.Values(q.Types))
		items = append(items, "_type="+strings.Join(types, ","))
	}
	for _, c := range q.Clauses {
		vals := make([]string, len(c.Values))
		for i, v := range c.Values {
			vals[i] = canonicalValue(c, v)
		}
		slices.Sort(vals)
		vals = slices.Compact(vals)
		items = append(items, queryEscape(clauseKey(c))+"="+queryEscape(strings.Join(vals, ",")))
	}
	slices.Sort(items)
	return slices.Compact(items)
}

// clauseKey rebuilds the parameter name with every chain target type spelled out.
func clauseKey(c Clause) string {
	var b strings.Builder
	for _, l := range c.Chain {
		if l.Reverse {
			b.WriteString("_has:" + l.Type + ":" + l.Param.Code + ":")
		} else {
			b.WriteString(l.Param.Code + ":" + l.Type + ".")
		}
	}
	b.WriteString(c.Param.Code)
	if c.Modifier != ModNone {
		b.WriteString(":" + string(c.Modifier))
	}
	return b.String()
}

// canonicalValue renders one value (escaped, as in a query) in a canonical spelling.
func canonicalValue(c Clause, v Value) string {
	if c.Modifier == ModMissing {
		return strconv.FormatBool(v.Missing)
	}
	switch c.Param.Type {
	case searchparam.Date, searchparam.Number, searchparam.Quantity:
		// An unencoded "+" in a timezone arrives as a space; spell it "+" either way.
		raw := strings.ReplaceAll(v.Raw, " ", "+")
		if p, rest, err := splitPrefix(raw); err == nil && p == PrefixEq {
			return rest
		}
		return raw
	case searchparam.Reference:
		r := v.Reference
		switch {
		case r == nil:
		case r.URL != "":
			return escape(r.URL)
		case r.Type == "":
			return escape(r.ID)
		case r.Version != "":
			return escape(r.Type + "/" + r.ID + "/_history/" + r.Version)
		default:
			return escape(r.Type + "/" + r.ID)
		}
	}
	return v.Raw
}

// queryEscape percent-encodes s for a query component, leaving the characters FHIR search
// syntax uses (: , | / $ and friends) readable. '+' is encoded: form decoding reads it as space.
func queryEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("-._~!$'()*,;:@/?|", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

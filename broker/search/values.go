package search

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hjbroker/hjbroker/broker/searchparam"
)

var (
	idRE   = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	typeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)
)

// parseValue parses one OR-ed value (still escaped) of a clause on def with modifier mod.
// refType is the type named by a reference :Type modifier.
func (p *parser) parseValue(def *searchparam.Param, mod Modifier, refType, raw string) (Value, error) {
	v := Value{Raw: raw}
	if mod == ModMissing {
		switch raw {
		case "true":
			v.Missing = true
		case "false":
		default:
			return v, fmt.Errorf("%q is not a valid :missing value (expected true or false)", raw)
		}
		return v, nil
	}
	var err error
	switch def.Type {
	case searchparam.String:
		v.String = unescape(raw)
		v.Text = Normalize(v.String)
	case searchparam.Token:
		err = parseTokenValue(&v, def, mod, raw)
	case searchparam.Date:
		v.Date, err = parseDate(unescape(raw), p.now)
	case searchparam.Number:
		v.Number, err = parseNumber(unescape(raw))
	case searchparam.Quantity:
		v.Quantity, err = parseQuantity(raw)
	case searchparam.Reference:
		if mod == ModIdentifier {
			v.Token, err = parseToken(raw)
		} else {
			v.Reference, err = p.parseReference(def, refType, unescape(raw))
		}
	case searchparam.URI:
		v.URI = unescape(raw)
	default:
		err = fmt.Errorf("%s parameters are not supported", def.Type)
	}
	return v, err
}

func parseTokenValue(v *Value, def *searchparam.Param, mod Modifier, raw string) error {
	switch {
	case def.Code == "_id":
		id := unescape(raw)
		if !idRE.MatchString(id) {
			return fmt.Errorf("%q is not a valid resource id", id)
		}
		v.Token = &Token{AnySystem: true, Code: id}
	case mod == ModText:
		v.Text = Normalize(unescape(raw))
	case mod == ModIn || mod == ModNotIn:
		v.URI = unescape(raw)
	case mod == ModOfType:
		parts := splitEscaped(raw, '|')
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("%q is not a valid :of-type value (expected type-system|type-code|value)", raw)
		}
		v.Token = &Token{System: unescape(parts[0]), Code: unescape(parts[1])}
		v.OfTypeValue = unescape(parts[2])
	default:
		t, err := parseToken(raw)
		if err != nil {
			return err
		}
		v.Token = t
	}
	return nil
}

// parseToken parses [system|]code forms; see Token.
func parseToken(raw string) (*Token, error) {
	parts := splitEscaped(raw, '|')
	switch len(parts) {
	case 1:
		return &Token{AnySystem: true, Code: unescape(raw)}, nil
	case 2:
		if parts[0] == "" && parts[1] == "" {
			return nil, fmt.Errorf("%q needs a system or a code", raw)
		}
		return &Token{System: unescape(parts[0]), Code: unescape(parts[1])}, nil
	}
	return nil, fmt.Errorf("%q is not a valid token (expected [system|]code; escape a literal | as \\|)", raw)
}

// parseQuantity parses [prefix]number, [prefix]number|system|code and [prefix]number||code.
func parseQuantity(raw string) (*Quantity, error) {
	parts := splitEscaped(raw, '|')
	if len(parts) != 1 && len(parts) != 3 {
		return nil, fmt.Errorf("%q is not a valid quantity (expected [prefix]number[|system|code])", raw)
	}
	n, err := parseNumber(unescape(parts[0]))
	if err != nil {
		return nil, err
	}
	q := &Quantity{Number: *n}
	if len(parts) == 3 {
		q.System, q.Code = unescape(parts[1]), unescape(parts[2])
		if q.System != "" && q.Code == "" {
			return nil, fmt.Errorf("%q names a unit system but no unit code", raw)
		}
	}
	return q, nil
}

// parseReference parses id, Type/id, Type/id/_history/version and absolute URLs (s is already
// unescaped).
func (p *parser) parseReference(def *searchparam.Param, refType, s string) (*Reference, error) {
	if isAbsolute(s) {
		rel, ok := p.localPart(s)
		if !ok {
			return &Reference{Type: refType, URL: s}, nil
		}
		s = rel
	}
	r := &Reference{}
	seg := strings.Split(s, "/")
	switch {
	case len(seg) == 1:
		r.ID = seg[0]
	case len(seg) == 2:
		r.Type, r.ID = seg[0], seg[1]
	case len(seg) == 4 && seg[2] == "_history" && seg[3] != "":
		r.Type, r.ID, r.Version = seg[0], seg[1], seg[3]
	default:
		return nil, fmt.Errorf("%q is not a valid reference (expected id, Type/id or an absolute URL)", s)
	}
	if !idRE.MatchString(r.ID) {
		return nil, fmt.Errorf("%q is not a valid reference: %q is not a valid id", s, r.ID)
	}
	if r.Type != "" {
		if !typeRE.MatchString(r.Type) {
			return nil, fmt.Errorf("%q is not a valid reference: %q is not a resource type", s, r.Type)
		}
		if refType != "" && refType != r.Type {
			return nil, fmt.Errorf("%q does not refer to a %s as the :%s modifier requires", s, refType, refType)
		}
		if len(def.Target) > 0 && !slices.Contains(def.Target, r.Type) {
			return nil, fmt.Errorf("%q: %s cannot refer to a %s (targets: %s)", s, def.Code, r.Type, strings.Join(def.Target, ", "))
		}
	}
	switch {
	case r.Type == "" && refType != "":
		r.Type = refType
	case r.Type == "" && len(def.Target) == 1:
		r.Type = def.Target[0]
	}
	return r, nil
}

func isAbsolute(s string) bool {
	return strings.Contains(s, "://") || strings.HasPrefix(s, "urn:")
}

// localPart returns the Type/id part of an absolute URL under the server's base.
func (p *parser) localPart(s string) (string, bool) {
	base := strings.TrimSuffix(p.opts.BaseURL, "/")
	if base == "" {
		return "", false
	}
	return strings.CutPrefix(s, base+"/")
}

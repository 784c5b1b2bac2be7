package search

import "github.com/hjbroker/hjbroker/broker/searchparam"

// builtinParam returns the definitions of the parameters every resource has, used when the
// registry does not define them itself. A new value each call keeps callers from sharing
// mutable definitions.
func builtinParam(code string) (*searchparam.Param, bool) {
	p := &searchparam.Param{Code: code, Base: []string{"Resource"}}
	switch code {
	case "_id":
		p.Type, p.Expression = searchparam.Token, "Resource.id"
	case "_lastUpdated":
		p.Type, p.Expression = searchparam.Date, "Resource.meta.lastUpdated"
	case "_tag":
		p.Type, p.Expression = searchparam.Token, "Resource.meta.tag"
	case "_security":
		p.Type, p.Expression = searchparam.Token, "Resource.meta.security"
	case "_profile":
		p.Type, p.Expression = searchparam.URI, "Resource.meta.profile"
	case "_source":
		p.Type, p.Expression = searchparam.URI, "Resource.meta.source"
	default:
		return nil, false
	}
	return p, true
}

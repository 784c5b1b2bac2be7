// Package search parses FHIR R4 search requests (the query string of GET [base]/[type]?... or
// the form body of POST .../_search) into a validated Query. It does no I/O: the store turns a
// Query into SQL, the server echoes it in Bundle.link[self] and warns about ignored parameters.
//
// Reading a Query:
//
//   - Query.Clauses are AND-ed. Each Clause tests one parameter; its Values are OR-ed.
//   - A Clause with a non-empty Chain applies to the resources reached by following the chain
//     (forward references for "subject:Patient.name", reverse ones for "_has:...").
//   - Exactly one typed field of a Value is set, chosen by Clause.Param.Type and
//     Clause.Modifier (see Value).
//   - Dates are half-open ranges of unix microseconds in UTC; see Range and Date.Matches.
//   - Numbers and quantities compare as float64; see Number.Matches.
//   - _id and _lastUpdated arrive as ordinary clauses (Param.Code "_id", "_lastUpdated"); the
//     store may answer them from its own id and last-updated columns.
//
// The Matches methods are the reference semantics the SQL must reproduce; tests pin them.
package search

import (
	"time"

	"github.com/hjbroker/hjbroker/broker/searchparam"
)

// Params looks up search parameter definitions. resourceType is "Resource" for parameters that
// apply to every type (system-level search without _type).
type Params interface {
	Lookup(resourceType, code string) (*searchparam.Param, bool)
}

// Options control parsing.
type Options struct {
	// Strict follows "Prefer: handling=strict": unknown or unsupported parameters are errors.
	// Otherwise (lenient, the default) they are dropped and reported in Query.Warnings.
	Strict bool
	// DefaultCount is the page size when _count is absent; 0 means DefaultPageSize.
	DefaultCount int
	// MaxCount caps _count (larger values are lowered, with a warning); 0 means MaxPageSize.
	MaxCount int
	// BaseURL is this server's base (e.g. "https://broker.example/fhir"). Absolute references
	// under it are turned into local Type/id references. Empty: none are.
	BaseURL string
	// Now is the reference time for the ap prefix on dates; zero means time.Now().
	Now time.Time
}

// Page size defaults used when Options leaves them zero.
const (
	DefaultPageSize = 20
	MaxPageSize     = 1000
)

// Query is a parsed, validated search.
type Query struct {
	// Type is the resource type in the URL; "" for a system-level search.
	Type string
	// Types are the resource types searched: [Type] for a type-level search; for a
	// system-level search the _type list, or nil for every type.
	Types []string
	// Clauses are AND-ed; each must match.
	Clauses []Clause

	// Count is the page size: _count, or Options.DefaultCount, capped at Options.MaxCount.
	// 0 means return no entries, only the total.
	Count int
	// Offset is the number of matches to skip (_offset, a common extension used in paging
	// links); 0 when absent.
	Offset int
	// Sort lists the sort keys in priority order; empty means the store's default order.
	Sort []Sort
	// Total is the requested _total; TotalDefault when absent (the server chooses).
	Total Total
	// Summary is the requested _summary; SummaryDefault when absent.
	Summary Summary
	// Elements is the _elements list (top-level element names), in request order.
	Elements []string
	// Includes are the _include directives.
	Includes []Include
	// RevIncludes are the _revinclude directives.
	RevIncludes []Include

	// Warnings report parameters ignored under lenient handling, and adjustments such as a
	// lowered _count. The server adds them to an OperationOutcome in the Bundle.
	Warnings []*Error
}

// Clause is one AND-ed condition: the parameter Param, on the resource reached through Chain,
// matches at least one of Values.
type Clause struct {
	// Key is the parameter as written in the request (name, modifier and chain), for messages.
	Key string
	// Chain leads from the searched resource to the resource Param is tested on. Empty for an
	// ordinary parameter. Each link is applied in order; the clause matches when some resource
	// reached at the end of the chain matches.
	Chain []Link
	// Param is the definition of the tested parameter; Param.Type says which Value field is set.
	Param *searchparam.Param
	// Modifier is the modifier on the tested parameter, ModNone if none. A reference type
	// modifier (subject:Patient) is not kept here: it is folded into Reference.Type.
	Modifier Modifier
	// Values are OR-ed. With ModNot and ModNotIn the clause matches resources having no value
	// that matches any of them (including resources with no value at all).
	Values []Value
}

// Link is one hop of a chain.
type Link struct {
	// Reverse is false for a forward chain (subject:Patient.name): from the current resource,
	// follow its reference parameter Param to a resource of Type.
	// Reverse is true for _has (_has:Observation:patient:code): move to any resource of Type
	// whose reference parameter Param points at the current resource.
	Reverse bool
	// Type is the resource type reached by this hop.
	Type string
	// Param is the reference parameter followed: on the current resource when forward, on Type
	// when reverse.
	Param *searchparam.Param
}

// Modifier is a search parameter modifier (the part after ":").
type Modifier string

// Modifiers understood by the parser. Each type accepts a subset (see allowedModifiers).
const (
	ModNone       Modifier = ""
	ModMissing    Modifier = "missing"    // any type: Value.Missing
	ModExact      Modifier = "exact"      // string: case- and accent-sensitive whole match
	ModContains   Modifier = "contains"   // string: normalised substring match
	ModText       Modifier = "text"       // token: normalised starts-with on the display text
	ModNot        Modifier = "not"        // token: no value matches
	ModAbove      Modifier = "above"      // uri: the indexed uri is a prefix of the value
	ModBelow      Modifier = "below"      // uri: the value is a prefix of the indexed uri
	ModIn         Modifier = "in"         // token: code is in the value set Value.URI
	ModNotIn      Modifier = "not-in"     // token: code is not in the value set Value.URI
	ModOfType     Modifier = "of-type"    // token: Identifier with type Token and value OfTypeValue
	ModIdentifier Modifier = "identifier" // reference: Reference.identifier matches Value.Token
)

// Value is one OR-ed value of a clause. Raw is always set; of the others, exactly the one for
// the parameter type and modifier is:
//
//	ModMissing                  Missing
//	string                      String and Text (ModExact compares String, the others Text)
//	token                       Token; Text for ModText; URI for ModIn/ModNotIn;
//	                            Token + OfTypeValue for ModOfType
//	date                        Date
//	number                      Number
//	quantity                    Quantity
//	reference                   Reference; Token for ModIdentifier
//	uri                         URI
type Value struct {
	// Raw is the value as written, escapes included. For echoing, not for matching.
	Raw string
	// Missing is the ModMissing value: true selects resources without the parameter, false
	// resources with at least one value for it.
	Missing bool
	// String is the unescaped string, compared exactly with ModExact.
	String string
	// Text is Normalize(value): the default string search matches indexed normalised values
	// that start with Text; ModContains matches those containing it; token ModText matches
	// normalised display text that starts with it.
	Text string
	// Token is a parsed system|code (or the Identifier type for ModOfType).
	Token *Token
	// OfTypeValue is the Identifier.value for ModOfType.
	OfTypeValue string
	// URI is the unescaped uri (uri parameters, _profile, _source) or value set URL (ModIn,
	// ModNotIn).
	URI string
	// Date is a parsed date value.
	Date *Date
	// Number is a parsed number value.
	Number *Number
	// Quantity is a parsed quantity value.
	Quantity *Quantity
	// Reference is a parsed reference value.
	Reference *Reference
}

// Token is a token search value. The forms map as follows:
//
//	code          AnySystem, Code=code        any system (or none) with that code
//	|code         System="", Code=code        a code with no system
//	system|code   System, Code                exactly that system and code
//	system|       System, Code=""             any code in that system
//
// For the _id parameter Code holds the id (AnySystem).
type Token struct {
	// System is the required system; "" with AnySystem false means "no system".
	System string
	// AnySystem is true when the value had no "|": any system matches.
	AnySystem bool
	// Code is the required code; "" (with a System) means any code.
	Code string
}

// Quantity is a quantity search value: [prefix]number[|system|code].
//
//	System and Code set     the indexed system and code must equal them
//	only Code set (n||u)    the indexed code or unit must equal Code
//	neither                 any unit
type Quantity struct {
	// Number is the numeric part with its prefix and range.
	Number Number
	// System is the unit system (e.g. http://unitsofmeasure.org), or "".
	System string
	// Code is the unit code (or unit text when System is ""), or "".
	Code string
}

// Reference is a reference search value. Exactly one of URL or ID is set.
type Reference struct {
	// Type is the target resource type, from "Type/id" or the :Type modifier, or the
	// parameter's only target type; "" means any type.
	Type string
	// ID is the target id of a local reference.
	ID string
	// Version is the version from "Type/id/_history/v", or "". Stores may ignore it: the
	// reference index holds unversioned targets.
	Version string
	// URL is an absolute reference not under Options.BaseURL; it matches indexed references
	// with the same URL.
	URL string
}

// Sort is one _sort key.
type Sort struct {
	// Param is the parameter sorted on (_id and _lastUpdated included).
	Param *searchparam.Param
	// Desc is true for "-param".
	Desc bool
}

// Include is one _include or _revinclude directive.
type Include struct {
	// Type is the source type: for _include the type of the matched resources whose
	// references are followed; for _revinclude the type of the resources that refer to them.
	// "" only for the bare wildcard "*".
	Type string
	// Param is the reference parameter on Type; nil when Wildcard.
	Param *searchparam.Param
	// TargetType restricts the referenced type (Type:param:TargetType); "" means any.
	TargetType string
	// Wildcard is "*" (every reference parameter) or "Type:*".
	Wildcard bool
	// Iterate is the :iterate (or R3 :recurse) modifier: also apply to included resources.
	Iterate bool
}

// Total is the _total parameter.
type Total string

// _total values.
const (
	TotalDefault  Total = ""
	TotalNone     Total = "none"
	TotalEstimate Total = "estimate"
	TotalAccurate Total = "accurate"
)

// Summary is the _summary parameter.
type Summary string

// _summary values. SummaryCount asks for the total only; Parse then also sets Query.Count to 0.
const (
	SummaryDefault Summary = ""
	SummaryTrue    Summary = "true"
	SummaryText    Summary = "text"
	SummaryData    Summary = "data"
	SummaryCount   Summary = "count"
	SummaryFalse   Summary = "false"
)

package search

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// Range is a half-open time range [Low, High) in unix microseconds, UTC. Every FHIR date,
// dateTime, instant and Period, indexed or searched, is turned into one: the precision of the
// value gives its width ("2024" is [2024-01-01, 2025-01-01)).
type Range struct {
	Low  int64
	High int64
}

// Open ends of a Range, for a Period without a start or an end.
const (
	OpenLow  int64 = math.MinInt64
	OpenHigh int64 = math.MaxInt64
)

// Prefix is a comparison prefix on a date, number or quantity value.
type Prefix string

// The R4 prefixes. A value without a prefix has PrefixEq.
const (
	PrefixEq Prefix = "eq"
	PrefixNe Prefix = "ne"
	PrefixGt Prefix = "gt"
	PrefixLt Prefix = "lt"
	PrefixGe Prefix = "ge"
	PrefixLe Prefix = "le"
	PrefixSa Prefix = "sa"
	PrefixEb Prefix = "eb"
	PrefixAp Prefix = "ap"
)

func validPrefix(s string) bool {
	switch Prefix(s) {
	case PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb, PrefixAp:
		return true
	}
	return false
}

// Date is a date search value.
type Date struct {
	// Prefix is the comparison; PrefixEq when none was written.
	Prefix Prefix
	// Range is the search range S implied by the value's precision. For PrefixAp it is already
	// widened on each side by 10% of the distance between the value and the time of the
	// search.
	Range Range
}

// Matches reports whether an indexed range R matches, following R4 search section 3.1.1.4
// with half-open ranges (S = d.Range):
//
//	eq  S contains R             R.Low >= S.Low && R.High <= S.High
//	ne  not eq
//	gt  R reaches past S         R.High > S.High
//	lt  R starts before S        R.Low < S.Low
//	ge  gt or eq
//	le  lt or eq
//	sa  R starts after S         R.Low >= S.High
//	eb  R ends before S          R.High <= S.Low
//	ap  R overlaps S             R.Low < S.High && R.High > S.Low
//
// A resource matches a clause value when any of its indexed ranges for the parameter matches.
func (d Date) Matches(r Range) bool {
	s := d.Range
	eq := r.Low >= s.Low && r.High <= s.High
	switch d.Prefix {
	case PrefixNe:
		return !eq
	case PrefixGt:
		return r.High > s.High
	case PrefixLt:
		return r.Low < s.Low
	case PrefixGe:
		return r.High > s.High || eq
	case PrefixLe:
		return r.Low < s.Low || eq
	case PrefixSa:
		return r.Low >= s.High
	case PrefixEb:
		return r.High <= s.Low
	case PrefixAp:
		return r.Low < s.High && r.High > s.Low
	}
	return eq
}

// dateRE matches the FHIR date, dateTime and instant forms, plus the search-only forms
// (time to minutes, time without timezone). A space stands for "+" in the offset because an
// unencoded "+" in a query string arrives as a space.
var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+\- ]\d{2}:\d{2})?)?)?)?$`)

// DateRange returns the range of a FHIR date, dateTime or instant: from the start of the value
// to the start of the next unit of its precision (year, month, day, minute, second or the
// written fraction of a second, down to microseconds). Values without a timezone, including
// plain dates, are taken as UTC. The indexer and the search parser both use it.
func DateRange(s string) (Range, error) {
	m := dateRE.FindStringSubmatch(s)
	if m == nil {
		return Range{}, fmt.Errorf("%q is not a valid date", s)
	}
	bad := func(what string) (Range, error) {
		return Range{}, fmt.Errorf("%q is not a valid date (%s out of range)", s, what)
	}
	num := func(i int) int {
		if m[i] == "" {
			return 0
		}
		n, _ := strconv.Atoi(m[i]) // the pattern guarantees digits
		return n
	}
	year, month, day := num(1), 1, 1
	if year == 0 {
		return bad("year")
	}
	if m[2] != "" {
		if month = num(2); month < 1 || month > 12 {
			return bad("month")
		}
	}
	if m[3] != "" {
		day = num(3)
		if day < 1 || day > daysIn(year, time.Month(month)) {
			return bad("day")
		}
	}
	hour, minute, sec := num(4), num(5), num(6)
	if hour > 23 {
		return bad("hour")
	}
	if minute > 59 {
		return bad("minute")
	}
	if sec > 59 {
		return bad("second")
	}
	micros, fracDigits := 0, len(m[7])
	if fracDigits > 0 {
		f := m[7]
		if len(f) > 6 {
			f = f[:6] // the index holds microseconds; finer digits cannot be told apart
		}
		micros, _ = strconv.Atoi(f)
		for i := len(f); i < 6; i++ {
			micros *= 10
		}
	}
	loc := time.UTC
	if tz := m[8]; tz != "" && tz != "Z" {
		h, _ := strconv.Atoi(tz[1:3])
		mi, _ := strconv.Atoi(tz[4:6])
		if h > 14 || mi > 59 || (h == 14 && mi > 0) {
			return bad("timezone")
		}
		off := h*3600 + mi*60
		if tz[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	low := time.Date(year, time.Month(month), day, hour, minute, sec, micros*1000, loc)
	var high time.Time
	switch {
	case m[2] == "":
		high = low.AddDate(1, 0, 0)
	case m[3] == "":
		high = low.AddDate(0, 1, 0)
	case m[4] == "":
		high = low.AddDate(0, 0, 1)
	case m[6] == "":
		high = low.Add(time.Minute)
	case fracDigits == 0:
		high = low.Add(time.Second)
	default:
		step := time.Microsecond
		for i := min(fracDigits, 6); i < 6; i++ {
			step *= 10
		}
		high = low.Add(step)
	}
	return Range{Low: low.UnixMicro(), High: high.UnixMicro()}, nil
}

// PeriodRange returns the range of a FHIR Period: from the start of start to the end of end.
// An empty start or end leaves that side open (OpenLow, OpenHigh).
func PeriodRange(start, end string) (Range, error) {
	r := Range{Low: OpenLow, High: OpenHigh}
	if start != "" {
		s, err := DateRange(start)
		if err != nil {
			return Range{}, err
		}
		r.Low = s.Low
	}
	if end != "" {
		e, err := DateRange(end)
		if err != nil {
			return Range{}, err
		}
		r.High = e.High
	}
	if r.Low > r.High {
		return Range{}, fmt.Errorf("period start %q is after its end %q", start, end)
	}
	return r, nil
}

func daysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseDate parses a date search value with its optional prefix. now anchors ap.
func parseDate(v string, now time.Time) (*Date, error) {
	p, rest, err := splitPrefix(v)
	if err != nil {
		return nil, err
	}
	r, err := DateRange(rest)
	if err != nil {
		return nil, err
	}
	if p == PrefixAp {
		// The spec suggests 10% of the gap between now and the date.
		gap := now.UnixMicro() - r.Low
		if gap < 0 {
			gap = -gap
		}
		r.Low -= gap / 10
		r.High += gap / 10
	}
	return &Date{Prefix: p, Range: r}, nil
}

// splitPrefix separates a leading two-letter prefix. Two letters that are not a prefix are
// reported as a bad prefix when a number follows them ("xx2024"); otherwise the whole value is
// returned for the caller to reject as a bad date or number ("high").
func splitPrefix(v string) (Prefix, string, error) {
	if len(v) >= 2 && isLetter(v[0]) && isLetter(v[1]) {
		if validPrefix(v[:2]) {
			return Prefix(v[:2]), v[2:], nil
		}
		if len(v) > 2 && (v[2] >= '0' && v[2] <= '9' || v[2] == '-' || v[2] == '+') {
			return "", "", fmt.Errorf("%q has an unknown prefix %q (expected eq, ne, gt, lt, ge, le, sa, eb or ap)", v, v[:2])
		}
	}
	return PrefixEq, v, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

type dtKind uint8

const (
	kindDate dtKind = iota + 1
	kindDateTime
	kindTime
)

// Precisions of date/time values, coarsest first.
const (
	precYear uint8 = iota + 1
	precMonth
	precDay
	precHour
	precMinute
	precSecond
	precMillisecond
)

// dateTime is a FHIRPath Date, DateTime or Time with the precision it was written with.
type dateTime struct {
	kind                        dtKind
	prec                        uint8
	year, month, day            int
	hour, minute, second, milli int
	hasTZ                       bool
	zulu                        bool // written as "Z" rather than an offset
	tzMin                       int  // offset from UTC in minutes
}

// parseDate parses a FHIR date / FHIRPath Date ("2014", "2014-03", "2014-03-25").
func parseDate(s string) (dateTime, bool) {
	d, rest, ok := parseDatePart(s)
	if !ok || rest != "" {
		return dateTime{}, false
	}
	d.kind = kindDate
	return d, true
}

// parseDateTime parses a FHIR dateTime/instant or a FHIRPath DateTime literal body. A
// trailing "T" with nothing after it (FHIRPath "@2015T") is accepted.
func parseDateTime(s string) (dateTime, bool) {
	d, rest, ok := parseDatePart(s)
	if !ok {
		return dateTime{}, false
	}
	d.kind = kindDateTime
	if rest == "" {
		return d, true
	}
	if rest[0] != 'T' {
		return dateTime{}, false
	}
	rest = rest[1:]
	if rest == "" {
		return d, true
	}
	if d.prec != precDay {
		return dateTime{}, false
	}
	t, rest, ok := parseTimePart(rest)
	if !ok {
		return dateTime{}, false
	}
	d.hour, d.minute, d.second, d.milli, d.prec = t.hour, t.minute, t.second, t.milli, t.prec
	if rest != "" {
		if !d.parseTZ(rest) {
			return dateTime{}, false
		}
	}
	return d, true
}

// parseTime parses a FHIR time / FHIRPath Time body ("14", "14:34", "14:34:28.123").
func parseTime(s string) (dateTime, bool) {
	t, rest, ok := parseTimePart(s)
	if !ok || rest != "" {
		return dateTime{}, false
	}
	t.kind = kindTime
	return t, true
}

func (d *dateTime) parseTZ(s string) bool {
	if s == "Z" {
		d.hasTZ, d.zulu = true, true
		return true
	}
	if len(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
		return false
	}
	h, ok1 := digits(s[1:3])
	m, ok2 := digits(s[4:6])
	if !ok1 || !ok2 || h > 14 || m > 59 {
		return false
	}
	d.hasTZ = true
	d.tzMin = h*60 + m
	if s[0] == '-' {
		d.tzMin = -d.tzMin
	}
	return true
}

func parseDatePart(s string) (dateTime, string, bool) {
	var d dateTime
	if len(s) < 4 {
		return d, "", false
	}
	y, ok := digits(s[:4])
	if !ok {
		return d, "", false
	}
	d.year, d.prec, d.month, d.day = y, precYear, 1, 1
	s = s[4:]
	if len(s) >= 3 && s[0] == '-' {
		m, ok := digits(s[1:3])
		if !ok || m < 1 || m > 12 {
			return d, "", false
		}
		d.month, d.prec = m, precMonth
		s = s[3:]
		if len(s) >= 3 && s[0] == '-' {
			dd, ok := digits(s[1:3])
			if !ok || dd < 1 || dd > daysIn(d.year, d.month) {
				return d, "", false
			}
			d.day, d.prec = dd, precDay
			s = s[3:]
		}
	}
	return d, s, true
}

func parseTimePart(s string) (dateTime, string, bool) {
	var t dateTime
	if len(s) < 2 {
		return t, "", false
	}
	h, ok := digits(s[:2])
	if !ok || h > 23 {
		return t, "", false
	}
	t.hour, t.prec = h, precHour
	s = s[2:]
	if len(s) >= 3 && s[0] == ':' {
		m, ok := digits(s[1:3])
		if !ok || m > 59 {
			return t, "", false
		}
		t.minute, t.prec = m, precMinute
		s = s[3:]
		if len(s) >= 3 && s[0] == ':' {
			sec, ok := digits(s[1:3])
			if !ok || sec > 59 {
				return t, "", false
			}
			t.second, t.prec = sec, precSecond
			s = s[3:]
			if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
				i := 1
				for i < len(s) && isDigit(s[i]) {
					i++
				}
				frac := s[1:i]
				for len(frac) < 3 {
					frac += "0"
				}
				ms, _ := strconv.Atoi(frac[:3])
				t.milli, t.prec = ms, precMillisecond
				s = s[i:]
			}
		}
	}
	return t, s, true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, len(s) > 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func (d dateTime) typeName() string {
	switch d.kind {
	case kindDate:
		return "Date"
	case kindTime:
		return "Time"
	}
	return "DateTime"
}

// String renders the value as FHIR JSON does (no '@').
func (d dateTime) String() string {
	var b strings.Builder
	if d.kind != kindTime {
		fmt.Fprintf(&b, "%04d", d.year)
		if d.prec >= precMonth {
			fmt.Fprintf(&b, "-%02d", d.month)
		}
		if d.prec >= precDay {
			fmt.Fprintf(&b, "-%02d", d.day)
		}
		if d.kind == kindDate || d.prec <= precDay {
			return b.String()
		}
		b.WriteByte('T')
	}
	fmt.Fprintf(&b, "%02d", d.hour)
	if d.prec >= precMinute {
		fmt.Fprintf(&b, ":%02d", d.minute)
	}
	if d.prec >= precSecond {
		fmt.Fprintf(&b, ":%02d", d.second)
	}
	if d.prec >= precMillisecond {
		fmt.Fprintf(&b, ".%03d", d.milli)
	}
	if d.kind == kindDateTime && d.hasTZ {
		b.WriteString(tzString(d.tzMin, d.zulu))
	}
	return b.String()
}

func tzString(min int, zulu bool) string {
	if zulu && min == 0 {
		return "Z"
	}
	sign := byte('+')
	if min < 0 {
		sign, min = '-', -min
	}
	return fmt.Sprintf("%c%02d:%02d", sign, min/60, min%60)
}

// literal renders the value as a FHIRPath literal.
func (d dateTime) literal() string {
	if d.kind == kindTime {
		return "@T" + d.String()
	}
	s := "@" + d.String()
	if d.kind == kindDateTime && d.prec <= precDay {
		s += "T"
	}
	return s
}

// precisionDigits is the value of the precision() function.
func (d dateTime) precisionDigits() int {
	if d.kind == kindTime {
		return [...]int{0, 0, 0, 0, 2, 4, 6, 9}[d.prec]
	}
	return [...]int{0, 4, 6, 8, 10, 12, 14, 17}[d.prec]
}

// effPrec treats seconds and milliseconds as one precision, as FHIRPath comparison does.
func (d dateTime) effPrec() uint8 {
	if d.prec == precSecond {
		return precMillisecond
	}
	return d.prec
}

// bounds returns the instant interval [lo, hi) the value denotes, in UTC. A value without a
// timezone is widened by the range of possible offsets when compared with one that has it.
func (d dateTime) bounds(widen bool) (time.Time, time.Time) {
	y := d.year
	if d.kind == kindTime {
		y = 2000
	}
	lo := time.Date(y, time.Month(d.month), d.day, d.hour, d.minute, d.second, d.milli*1e6, time.UTC)
	if d.kind == kindTime {
		lo = time.Date(2000, 1, 1, d.hour, d.minute, d.second, d.milli*1e6, time.UTC)
	}
	var hi time.Time
	switch d.effPrec() {
	case precYear:
		hi = lo.AddDate(1, 0, 0)
	case precMonth:
		hi = lo.AddDate(0, 1, 0)
	case precDay:
		hi = lo.AddDate(0, 0, 1)
	case precHour:
		hi = lo.Add(time.Hour)
	case precMinute:
		hi = lo.Add(time.Minute)
	default:
		hi = lo.Add(time.Millisecond)
	}
	if d.hasTZ {
		off := time.Duration(d.tzMin) * time.Minute
		lo, hi = lo.Add(-off), hi.Add(-off)
	} else if widen {
		lo, hi = lo.Add(-14*time.Hour), hi.Add(12*time.Hour)
	}
	return lo, hi
}

// compareDT orders two date/time values. ok is false when precision or timezone make the
// answer unknown.
func compareDT(a, b dateTime) (c int, ok bool) {
	widen := a.hasTZ != b.hasTZ
	alo, ahi := a.bounds(widen)
	blo, bhi := b.bounds(widen)
	if !widen && a.effPrec() == b.effPrec() {
		return alo.Compare(blo), true
	}
	switch {
	case !ahi.After(blo):
		return -1, true
	case !bhi.After(alo):
		return 1, true
	}
	return 0, false
}

func dtCompatible(a, b dateTime) bool {
	if a.kind == kindTime || b.kind == kindTime {
		return a.kind == b.kind
	}
	return true
}

// toTime converts to a time.Time in the value's own offset (UTC when it has none).
func (d dateTime) toTime() time.Time {
	loc := time.UTC
	if d.hasTZ {
		loc = time.FixedZone("", d.tzMin*60)
	}
	y := d.year
	if d.kind == kindTime {
		y = 2000
	}
	return time.Date(y, time.Month(d.month), d.day, d.hour, d.minute, d.second, d.milli*1e6, loc)
}

func (d dateTime) withTime(t time.Time) dateTime {
	if d.kind != kindTime {
		d.year, d.month, d.day = t.Year(), int(t.Month()), t.Day()
	}
	d.hour, d.minute, d.second, d.milli = t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6
	return d
}

func fromTime(t time.Time, kind dtKind, prec uint8) dateTime {
	_, off := t.Zone()
	d := dateTime{kind: kind, prec: prec, hasTZ: kind == kindDateTime, tzMin: off / 60}
	d = d.withTime(t)
	return d
}

// addMonths adds calendar months, clamping the day to the end of the target month.
func (d dateTime) addMonths(n int) dateTime {
	m := d.year*12 + (d.month - 1) + n
	d.year, d.month = m/12, m%12+1
	if dim := daysIn(d.year, d.month); d.day > dim {
		d.day = dim
	}
	return d
}

// calendarIndex orders the calendar duration units, coarsest first.
func calendarIndex(unit string) int {
	switch unit {
	case "year":
		return 0
	case "month":
		return 1
	case "week":
		return 2
	case "day":
		return 3
	case "hour":
		return 4
	case "minute":
		return 5
	case "second":
		return 6
	case "millisecond":
		return 7
	}
	return -1
}

func precUnit(p uint8) string {
	switch p {
	case precYear:
		return "year"
	case precMonth:
		return "month"
	case precDay:
		return "day"
	case precHour:
		return "hour"
	case precMinute:
		return "minute"
	case precSecond:
		return "second"
	}
	return "millisecond"
}

func pick(high bool, lo, hi int) int {
	if high {
		return hi
	}
	return lo
}

// addDuration adds n units (a calendar keyword) to d. Units finer than the value's precision
// are converted to it and truncated, as the specification requires.
func (d dateTime) addDuration(n int64, unit string) (dateTime, error) {
	if d.kind == kindTime && calendarIndex(unit) < calendarIndex("hour") {
		return d, fmt.Errorf("cannot add %s to a Time", unit)
	}
	// Convert to the value's precision when the unit is finer than it.
	pu := precUnit(d.prec)
	if calendarIndex(unit) > calendarIndex(pu) {
		ms, ok := fixedMillis(unit)
		target, ok2 := fixedMillis(pu)
		if ok && ok2 {
			n = n * ms / target
			unit = pu
		} else if ok {
			// months and years from days: use whole days
			days := n * ms / 86400000
			if pu == "month" {
				n, unit = days/30, "month"
			} else {
				n, unit = days/365, "year"
			}
		}
	}
	switch unit {
	case "year":
		return d.addMonths(int(n) * 12), nil
	case "month":
		return d.addMonths(int(n)), nil
	}
	ms, _ := fixedMillis(unit)
	if unit == "week" || unit == "day" {
		t := time.Date(d.year, time.Month(d.month), d.day, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(n*ms/86400000))
		d.year, d.month, d.day = t.Year(), int(t.Month()), t.Day()
		return d, nil
	}
	t := d.toTime().Add(time.Duration(n*ms) * time.Millisecond)
	return d.withTime(t), nil
}

func fixedMillis(unit string) (int64, bool) {
	switch unit {
	case "week":
		return 7 * 86400000, true
	case "day":
		return 86400000, true
	case "hour":
		return 3600000, true
	case "minute":
		return 60000, true
	case "second":
		return 1000, true
	case "millisecond":
		return 1, true
	}
	return 0, false
}

// lowBoundary / highBoundary fill unspecified components with their least / greatest values.
func (d dateTime) boundary(high bool, prec int) (dateTime, bool) {
	target, ok := precFromDigits(d.kind, prec)
	if !ok {
		return d, false
	}
	out := d
	if d.prec < precMonth {
		out.month = pick(high, 1, 12)
	}
	if d.prec < precDay {
		out.day = 1
		if high {
			out.day = daysIn(out.year, out.month)
		}
	}
	if d.prec < precHour {
		out.hour = pick(high, 0, 23)
	}
	if d.prec < precMinute {
		out.minute = pick(high, 0, 59)
	}
	if d.prec < precSecond {
		out.second = pick(high, 0, 59)
	}
	if d.prec < precMillisecond {
		out.milli = pick(high, 0, 999)
	}
	out.prec = target
	if d.kind == kindDateTime && target > precDay && !d.hasTZ {
		// Unknown offset: the earliest instant is at +14:00, the latest at -12:00.
		out.hasTZ, out.zulu = true, false
		out.tzMin = 14 * 60
		if high {
			out.tzMin = -12 * 60
		}
	}
	return out, true
}

func precFromDigits(kind dtKind, n int) (uint8, bool) {
	if kind == kindTime {
		switch n {
		case 2:
			return precHour, true
		case 4:
			return precMinute, true
		case 6:
			return precSecond, true
		case 9:
			return precMillisecond, true
		}
		return 0, false
	}
	switch n {
	case 4:
		return precYear, true
	case 6:
		return precMonth, true
	case 8:
		return precDay, true
	}
	if kind == kindDate {
		return 0, false
	}
	switch n {
	case 10:
		return precHour, true
	case 12:
		return precMinute, true
	case 14:
		return precSecond, true
	case 17:
		return precMillisecond, true
	}
	return 0, false
}

package fhirpath

import (
	"math/big"
	"strings"
)

const ucumSystem = "http://unitsofmeasure.org"

// Quantity is a FHIRPath Quantity: a decimal value with a UCUM unit code or a calendar
// duration keyword (year, month, week, day, hour, minute, second, millisecond).
type Quantity struct {
	value decimal
	// unit is the UCUM code, or the calendar keyword as written ("days", "week").
	unit     string
	calendar bool
}

// Value returns the numeric value as a decimal string.
func (q *Quantity) Value() string { return q.value.String() }

// Unit returns the UCUM code or calendar keyword.
func (q *Quantity) Unit() string { return q.unit }

// calendarUnit normalises "days" to "day" etc.; ok is false when the unit is not a keyword.
func calendarUnit(s string) (string, bool) {
	s = strings.TrimSuffix(s, "s")
	if calendarIndex(s) >= 0 {
		return s, true
	}
	return "", false
}

// ucumForCalendar maps calendar keywords to the UCUM unit they equal for comparison. Years
// and months have no fixed length and stay calendar units.
func ucumForCalendar(kw string) string {
	switch kw {
	case "week":
		return "wk"
	case "day":
		return "d"
	case "hour":
		return "h"
	case "minute":
		return "min"
	case "second":
		return "s"
	case "millisecond":
		return "ms"
	}
	return ""
}

// calendarForUCUM is the reverse, used for date arithmetic with UCUM time units. 'mo' and
// 'a' are deliberately absent: they are not calendar months and years.
func calendarForUCUM(code string) string {
	switch code {
	case "wk":
		return "week"
	case "d":
		return "day"
	case "h":
		return "hour"
	case "min":
		return "minute"
	case "s":
		return "second"
	case "ms":
		return "millisecond"
	}
	return ""
}

// durationUnit returns the calendar unit a quantity can be added to a date with.
func (q *Quantity) durationUnit() (string, bool) {
	if q.calendar {
		u, ok := calendarUnit(q.unit)
		return u, ok
	}
	if u := calendarForUCUM(q.unit); u != "" {
		return u, true
	}
	// A calendar word in quotes ('month') is read as the calendar unit.
	return calendarUnit(q.unit)
}

func (q *Quantity) String() string {
	if q.calendar {
		return q.value.String() + " " + q.unit
	}
	return q.value.String() + " '" + q.unit + "'"
}

// json renders the quantity as a FHIR Quantity object.
func (q *Quantity) json() map[string]any {
	m := map[string]any{"value": q.value.jsonNumber()}
	if q.calendar {
		kw, _ := calendarUnit(q.unit)
		m["unit"] = kw
		if code := ucumForCalendar(kw); code != "" {
			m["system"], m["code"] = ucumSystem, code
		}
		return m
	}
	m["unit"], m["system"], m["code"] = q.unit, ucumSystem, q.unit
	return m
}

// canonical converts the quantity to a factor on base-unit dimensions. Calendar years and
// months get their own dimension: they compare with each other but not with fixed times.
func (q *Quantity) canonical() (*big.Rat, dims, bool) {
	code := q.unit
	if q.calendar {
		kw, _ := calendarUnit(q.unit)
		switch kw {
		case "year":
			return new(big.Rat).Mul(q.value.r, big.NewRat(12, 1)), dims{dimCalMonth: 1}, true
		case "month":
			return new(big.Rat).Set(q.value.r), dims{dimCalMonth: 1}, true
		}
		code = ucumForCalendar(kw)
	}
	f, d, ok := parseUCUM(code)
	if !ok {
		return nil, dims{}, false
	}
	return new(big.Rat).Mul(q.value.r, f), d, true
}

// convertTo expresses q in the unit of other; ok is false when the units are not comparable.
func (q *Quantity) convertTo(other *Quantity) (decimal, bool) {
	if q.calendar == other.calendar && q.unit == other.unit {
		return q.value, true
	}
	if !q.calendar && !other.calendar && (isAffineUnit(q.unit) || isAffineUnit(other.unit)) {
		return convertTemperature(q.value, q.unit, other.unit)
	}
	a, da, ok1 := q.canonical()
	b, db, ok2 := (&Quantity{value: decimalFromInt(1), unit: other.unit, calendar: other.calendar}).canonical()
	if !ok1 || !ok2 || da != db || b.Sign() == 0 {
		return decimal{}, false
	}
	r := new(big.Rat).Quo(a, b)
	return decimal{r: r, scale: q.value.scale}, true
}

// Celsius and Fahrenheit are offset from kelvin, not just scaled, so they are converted
// through kelvin on their own and are not allowed inside compound units. Each maps a value v
// to kelvin as (v + offset) * scale.
func affineUnit(code string) (offset, scale *big.Rat, ok bool) {
	switch code {
	case "Cel":
		return big.NewRat(27315, 100), big.NewRat(1, 1), true
	case "[degF]":
		return big.NewRat(45967, 100), big.NewRat(5, 9), true
	}
	return nil, nil, false
}

func isAffineUnit(code string) bool {
	_, _, ok := affineUnit(code)
	return ok
}

// temperatureScale gives the offset and scale to kelvin of a Celsius or Fahrenheit code, or
// of a plain temperature unit such as K or mK.
func temperatureScale(code string) (offset, scale *big.Rat, ok bool) {
	if offset, scale, ok := affineUnit(code); ok {
		return offset, scale, true
	}
	f, d, ok := parseUCUM(code)
	if !ok || d != (dims{dimTemp: 1}) {
		return nil, nil, false
	}
	return new(big.Rat), f, true
}

// convertTemperature expresses v (in unit from) in unit to, through kelvin.
func convertTemperature(v decimal, from, to string) (decimal, bool) {
	offA, scaleA, ok1 := temperatureScale(from)
	offB, scaleB, ok2 := temperatureScale(to)
	if !ok1 || !ok2 {
		return decimal{}, false
	}
	k := new(big.Rat).Add(v.r, offA)
	k.Mul(k, scaleA)
	r := k.Quo(k, scaleB)
	r.Sub(r, offB)
	return decimal{r: r, scale: v.scale}, true
}

// compareQuantities orders two quantities; ok is false when the units are not comparable.
func compareQuantities(a, b *Quantity) (int, bool) {
	bv, ok := b.convertTo(a)
	if !ok {
		return 0, false
	}
	return a.value.cmp(bv), true
}

func equivalentQuantities(a, b *Quantity) bool {
	bv, ok := b.convertTo(a)
	if !ok {
		return false
	}
	p := a.value.precision()
	if bp := b.value.precision(); bp < p {
		p = bp
	}
	return a.value.round(p).cmp(bv.round(p)) == 0
}

func comparableUnits(a, b *Quantity) bool {
	_, ok := b.convertTo(a)
	return ok
}

// unitProduct combines two UCUM units for multiplication or division.
func unitProduct(a, b *Quantity, divide bool) (string, bool) {
	ua, ub := a.unit, b.unit
	if a.calendar {
		ua = ucumForCalendar(mustCalendar(a.unit))
	}
	if b.calendar {
		ub = ucumForCalendar(mustCalendar(b.unit))
	}
	if ua == "" || ub == "" {
		return "", false
	}
	if _, _, ok := parseUCUM(ua); !ok {
		return "", false
	}
	if _, _, ok := parseUCUM(ub); !ok {
		return "", false
	}
	sep := "."
	if divide {
		sep = "/"
	}
	switch {
	case ub == "1":
		return ua, true
	case ua == "1" && !divide:
		return ub, true
	}
	if strings.ContainsAny(ub, "./") {
		ub = "(" + ub + ")"
	}
	return ua + sep + ub, true
}

func mustCalendar(u string) string {
	kw, _ := calendarUnit(u)
	return kw
}

// dims is a vector of exponents over the base units.
type dims [dimCount]int8

const (
	dimLength = iota
	dimMass
	dimTime
	dimTemp
	dimCharge
	dimLum
	dimAngle
	dimAmount
	dimCalMonth
	dimCount
)

type ucumAtom struct {
	factor *big.Rat
	dims   dims
	// metric atoms accept SI prefixes.
	metric bool
}

// ucumAtomFor knows the base units and the common clinical units; unknown units make a
// quantity incomparable with anything but the same unit.
func ucumAtomFor(sym string) (ucumAtom, bool) {
	r := func(s string) *big.Rat { v, _ := new(big.Rat).SetString(s); return v }
	one := big.NewRat(1, 1)
	switch sym {
	case "1":
		return ucumAtom{factor: one}, true
	case "m":
		return ucumAtom{one, dims{dimLength: 1}, true}, true
	case "g":
		return ucumAtom{one, dims{dimMass: 1}, true}, true
	case "s":
		return ucumAtom{one, dims{dimTime: 1}, true}, true
	case "K":
		return ucumAtom{one, dims{dimTemp: 1}, true}, true
	case "C":
		return ucumAtom{one, dims{dimCharge: 1}, true}, true
	case "cd":
		return ucumAtom{one, dims{dimLum: 1}, true}, true
	case "rad":
		return ucumAtom{one, dims{dimAngle: 1}, true}, true
	case "mol":
		return ucumAtom{one, dims{dimAmount: 1}, true}, true
	case "eq":
		return ucumAtom{one, dims{dimAmount: 1}, true}, true
	case "min":
		return ucumAtom{big.NewRat(60, 1), dims{dimTime: 1}, false}, true
	case "h":
		return ucumAtom{big.NewRat(3600, 1), dims{dimTime: 1}, false}, true
	case "d":
		return ucumAtom{big.NewRat(86400, 1), dims{dimTime: 1}, false}, true
	case "wk":
		return ucumAtom{big.NewRat(604800, 1), dims{dimTime: 1}, false}, true
	case "a":
		return ucumAtom{r("31557600"), dims{dimTime: 1}, false}, true
	case "mo":
		return ucumAtom{r("2629800"), dims{dimTime: 1}, false}, true
	case "L", "l":
		return ucumAtom{big.NewRat(1, 1000), dims{dimLength: 3}, true}, true
	case "Hz":
		return ucumAtom{one, dims{dimTime: -1}, true}, true
	case "N":
		return ucumAtom{big.NewRat(1000, 1), dims{dimMass: 1, dimLength: 1, dimTime: -2}, true}, true
	case "Pa":
		return ucumAtom{big.NewRat(1000, 1), dims{dimMass: 1, dimLength: -1, dimTime: -2}, true}, true
	case "J":
		return ucumAtom{big.NewRat(1000, 1), dims{dimMass: 1, dimLength: 2, dimTime: -2}, true}, true
	case "W":
		return ucumAtom{big.NewRat(1000, 1), dims{dimMass: 1, dimLength: 2, dimTime: -3}, true}, true
	case "A":
		return ucumAtom{one, dims{dimCharge: 1, dimTime: -1}, true}, true
	case "V":
		return ucumAtom{big.NewRat(1000, 1), dims{dimMass: 1, dimLength: 2, dimTime: -2, dimCharge: -1}, true}, true
	case "cal":
		return ucumAtom{r("4184"), dims{dimMass: 1, dimLength: 2, dimTime: -2}, true}, true
	case "%":
		return ucumAtom{big.NewRat(1, 100), dims{}, false}, true
	case "[ppm]":
		return ucumAtom{big.NewRat(1, 1000000), dims{}, false}, true
	case "[lb_av]":
		return ucumAtom{r("453.59237"), dims{dimMass: 1}, false}, true
	case "[oz_av]":
		return ucumAtom{r("28.349523125"), dims{dimMass: 1}, false}, true
	case "[in_i]":
		return ucumAtom{r("0.0254"), dims{dimLength: 1}, false}, true
	case "[ft_i]":
		return ucumAtom{r("0.3048"), dims{dimLength: 1}, false}, true
	case "[yd_i]":
		return ucumAtom{r("0.9144"), dims{dimLength: 1}, false}, true
	case "[mi_i]":
		return ucumAtom{r("1609.344"), dims{dimLength: 1}, false}, true
	case "m[Hg]":
		return ucumAtom{r("133322000"), dims{dimMass: 1, dimLength: -1, dimTime: -2}, true}, true
	case "m[H2O]":
		return ucumAtom{r("9806650"), dims{dimMass: 1, dimLength: -1, dimTime: -2}, true}, true
	case "[iU]", "[IU]":
		return ucumAtom{one, dims{}, true}, true
	case "U":
		return ucumAtom{r("0.00000001660540186"), dims{dimAmount: 1, dimTime: -1}, true}, true
	}
	return ucumAtom{}, false
}

func ucumPrefix(p string) (*big.Rat, bool) {
	var e int
	switch p {
	case "Y":
		e = 24
	case "Z":
		e = 21
	case "E":
		e = 18
	case "P":
		e = 15
	case "T":
		e = 12
	case "G":
		e = 9
	case "M":
		e = 6
	case "k":
		e = 3
	case "h":
		e = 2
	case "da":
		e = 1
	case "d":
		e = -1
	case "c":
		e = -2
	case "m":
		e = -3
	case "u":
		e = -6
	case "n":
		e = -9
	case "p":
		e = -12
	case "f":
		e = -15
	case "a":
		e = -18
	case "z":
		e = -21
	case "y":
		e = -24
	default:
		return nil, false
	}
	return pow10(e), true
}

// parseUCUM parses a UCUM unit expression into a factor relative to base units and its
// dimensions. It covers products, quotients, exponents, parentheses, integer factors,
// annotations and SI prefixes on metric atoms.
func parseUCUM(s string) (*big.Rat, dims, bool) {
	if s == "" {
		return nil, dims{}, false
	}
	p := &ucumParser{s: s}
	f, d, ok := p.term()
	if !ok || p.i != len(p.s) {
		return nil, dims{}, false
	}
	return f, d, true
}

type ucumParser struct {
	s string
	i int
}

func (p *ucumParser) term() (*big.Rat, dims, bool) {
	f, d := big.NewRat(1, 1), dims{}
	op := byte('.')
	if p.i < len(p.s) && p.s[p.i] == '/' {
		op = '/'
		p.i++
	}
	for {
		cf, cd, ok := p.component()
		if !ok {
			return nil, d, false
		}
		if op == '/' {
			f.Quo(f, cf)
			for k := range d {
				d[k] -= cd[k]
			}
		} else {
			f.Mul(f, cf)
			for k := range d {
				d[k] += cd[k]
			}
		}
		if p.i >= len(p.s) || (p.s[p.i] != '.' && p.s[p.i] != '/') {
			return f, d, true
		}
		op = p.s[p.i]
		p.i++
	}
}

func (p *ucumParser) component() (*big.Rat, dims, bool) {
	if p.i >= len(p.s) {
		return nil, dims{}, false
	}
	if p.s[p.i] == '(' {
		p.i++
		f, d, ok := p.term()
		if !ok || p.i >= len(p.s) || p.s[p.i] != ')' {
			return nil, d, false
		}
		p.i++
		return f, d, true
	}
	if p.s[p.i] == '{' {
		end := strings.IndexByte(p.s[p.i:], '}')
		if end < 0 {
			return nil, dims{}, false
		}
		p.i += end + 1
		return big.NewRat(1, 1), dims{}, true
	}
	// Read the symbol up to an operator, then split off a trailing exponent.
	start := p.i
	depth := 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '[' {
			depth++
		} else if c == ']' {
			depth--
		} else if depth == 0 && (c == '.' || c == '/' || c == '(' || c == ')' || c == '{') {
			break
		}
		p.i++
	}
	sym := p.s[start:p.i]
	// trailing annotation
	if p.i < len(p.s) && p.s[p.i] == '{' {
		end := strings.IndexByte(p.s[p.i:], '}')
		if end < 0 {
			return nil, dims{}, false
		}
		p.i += end + 1
	}
	if sym == "" {
		return nil, dims{}, false
	}
	if isAllDigits(sym) {
		v, _ := new(big.Rat).SetString(sym)
		return v, dims{}, true
	}
	if i := strings.Index(sym, "*"); i > 0 && isAllDigits(sym[:i]) {
		// 10*3 style factor
		base, _ := new(big.Rat).SetString(sym[:i])
		e, ok := signedDigits(sym[i+1:])
		if !ok {
			return nil, dims{}, false
		}
		return ratPow(base, e), dims{}, true
	}
	exp := 1
	j := len(sym)
	for j > 0 && (isDigit(sym[j-1])) {
		j--
	}
	if j > 0 && (sym[j-1] == '-' || sym[j-1] == '+') && j < len(sym) {
		j--
	}
	if j < len(sym) && j > 0 {
		e, ok := signedDigits(sym[j:])
		if !ok {
			return nil, dims{}, false
		}
		exp, sym = e, sym[:j]
	}
	f, d, ok := ucumSimple(sym)
	if !ok {
		return nil, dims{}, false
	}
	for k := range d {
		d[k] *= int8(exp)
	}
	return ratPow(f, exp), d, true
}

func ucumSimple(sym string) (*big.Rat, dims, bool) {
	if a, ok := ucumAtomFor(sym); ok {
		return a.factor, a.dims, true
	}
	for _, n := range []int{2, 1} {
		if len(sym) <= n {
			continue
		}
		pf, ok := ucumPrefix(sym[:n])
		if !ok {
			continue
		}
		a, ok := ucumAtomFor(sym[n:])
		if !ok || !a.metric {
			continue
		}
		return new(big.Rat).Mul(pf, a.factor), a.dims, true
	}
	return nil, dims{}, false
}

func ratPow(r *big.Rat, e int) *big.Rat {
	out := big.NewRat(1, 1)
	n := e
	if n < 0 {
		n = -n
	}
	for i := 0; i < n; i++ {
		out.Mul(out, r)
	}
	if e < 0 {
		out.Inv(out)
	}
	return out
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func signedDigits(s string) (int, bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	n, ok := digits(s)
	if neg {
		n = -n
	}
	return n, ok
}

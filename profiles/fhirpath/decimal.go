package fhirpath

import (
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
)

// computedScale marks a decimal produced by an operation whose exact result has no natural
// number of fraction digits (division, sqrt, ...).
const computedScale = -1

// maxComputedDigits bounds the fraction digits printed for computed decimals; FHIRPath asks
// for at least 8.
const maxComputedDigits = 16

// decimal is an exact FHIRPath Decimal. scale is the number of fraction digits the value was
// written with, which matters for precision(), equivalence and printing.
type decimal struct {
	r     *big.Rat
	scale int
}

func parseDecimal(s string) (decimal, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return decimal{}, false
	}
	body := s
	if body[0] == '+' || body[0] == '-' {
		body = body[1:]
	}
	if body == "" || body[0] < '0' || body[0] > '9' {
		return decimal{}, false
	}
	mant, exp := body, 0
	if i := strings.IndexAny(body, "eE"); i >= 0 {
		e, err := strconv.Atoi(body[i+1:])
		if err != nil {
			return decimal{}, false
		}
		mant, exp = body[:i], e
	}
	scale := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		scale = len(mant) - i - 1
		if scale == 0 {
			return decimal{}, false
		}
	}
	for _, c := range mant {
		if (c < '0' || c > '9') && c != '.' {
			return decimal{}, false
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return decimal{}, false
	}
	scale -= exp
	if scale < 0 {
		scale = 0
	}
	return decimal{r: r, scale: scale}, true
}

func decimalFromInt(i int64) decimal {
	return decimal{r: new(big.Rat).SetInt64(i), scale: 0}
}

func decimalFromRat(r *big.Rat, scale int) decimal { return decimal{r: r, scale: scale} }

// precision is the number of fraction digits used for equivalence and boundaries.
func (d decimal) precision() int {
	if d.scale == computedScale {
		return 8
	}
	return d.scale
}

func (d decimal) isInt() bool { return d.r.IsInt() }

func (d decimal) sign() int { return d.r.Sign() }

func (d decimal) cmp(o decimal) int { return d.r.Cmp(o.r) }

func (d decimal) float() float64 {
	f, _ := d.r.Float64()
	return f
}

func (d decimal) String() string {
	if d.scale != computedScale {
		return d.r.FloatString(d.scale)
	}
	s := d.r.FloatString(maxComputedDigits)
	if strings.IndexByte(s, '.') >= 0 {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func (d decimal) jsonNumber() json.Number { return json.Number(d.String()) }

func maxScale(a, b decimal) int {
	if a.scale == computedScale || b.scale == computedScale {
		return computedScale
	}
	if a.scale > b.scale {
		return a.scale
	}
	return b.scale
}

func (d decimal) add(o decimal) decimal {
	return decimal{r: new(big.Rat).Add(d.r, o.r), scale: maxScale(d, o)}
}

func (d decimal) sub(o decimal) decimal {
	return decimal{r: new(big.Rat).Sub(d.r, o.r), scale: maxScale(d, o)}
}

func (d decimal) mul(o decimal) decimal {
	s := computedScale
	if d.scale != computedScale && o.scale != computedScale {
		s = d.scale + o.scale
	}
	return decimal{r: new(big.Rat).Mul(d.r, o.r), scale: s}
}

// div returns false on division by zero (the result is then empty).
func (d decimal) div(o decimal) (decimal, bool) {
	if o.r.Sign() == 0 {
		return decimal{}, false
	}
	q := new(big.Rat).Quo(d.r, o.r)
	return decimal{r: q, scale: naturalScale(q)}, true
}

// naturalScale is the number of fraction digits of a terminating rational, or computedScale.
func naturalScale(r *big.Rat) int {
	den := new(big.Int).Set(r.Denom())
	twos, fives := 0, 0
	two, five, zero := big.NewInt(2), big.NewInt(5), new(big.Int)
	m := new(big.Int)
	for den.Cmp(big.NewInt(1)) != 0 {
		if m.Mod(den, two); m.Cmp(zero) == 0 {
			den.Quo(den, two)
			twos++
		} else if m.Mod(den, five); m.Cmp(zero) == 0 {
			den.Quo(den, five)
			fives++
		} else {
			return computedScale
		}
		if twos > maxComputedDigits || fives > maxComputedDigits {
			return computedScale
		}
	}
	if twos > fives {
		return twos
	}
	return fives
}

func (d decimal) neg() decimal { return decimal{r: new(big.Rat).Neg(d.r), scale: d.scale} }

func (d decimal) abs() decimal { return decimal{r: new(big.Rat).Abs(d.r), scale: d.scale} }

// truncInt returns the integer part (towards zero).
func (d decimal) truncInt() *big.Int {
	return new(big.Int).Quo(d.r.Num(), d.r.Denom())
}

// floorInt rounds towards -inf. big.Int.DivMod is Euclidean, which for the always positive
// denominator of a Rat is floor division.
func (d decimal) floorInt() *big.Int {
	q, _ := new(big.Int).DivMod(d.r.Num(), d.r.Denom(), new(big.Int))
	return q
}

func (d decimal) ceilInt() *big.Int {
	f := d.floorInt()
	if new(big.Rat).SetInt(f).Cmp(d.r) != 0 {
		f.Add(f, big.NewInt(1))
	}
	return f
}

func pow10(n int) *big.Rat {
	if n >= 0 {
		return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil))
	}
	return new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-n)), nil))
}

// round rounds half away from zero to n fraction digits.
func (d decimal) round(n int) decimal {
	p := pow10(n)
	x := new(big.Rat).Mul(d.r, p)
	half := big.NewRat(1, 2)
	if x.Sign() >= 0 {
		x.Add(x, half)
	} else {
		x.Sub(x, half)
	}
	i := new(big.Int).Quo(x.Num(), x.Denom())
	return decimal{r: new(big.Rat).Quo(new(big.Rat).SetInt(i), p), scale: n}
}

// floorTo and ceilTo cut to n fraction digits towards -inf / +inf.
func (d decimal) floorTo(n int) decimal {
	p := pow10(n)
	x := decimal{r: new(big.Rat).Mul(d.r, p)}
	return decimal{r: new(big.Rat).Quo(new(big.Rat).SetInt(x.floorInt()), p), scale: n}
}

func (d decimal) ceilTo(n int) decimal {
	p := pow10(n)
	x := decimal{r: new(big.Rat).Mul(d.r, p)}
	return decimal{r: new(big.Rat).Quo(new(big.Rat).SetInt(x.ceilInt()), p), scale: n}
}

// int64 returns the value when it is an integer that fits.
func (d decimal) int64() (int64, bool) {
	if !d.r.IsInt() || !d.r.Num().IsInt64() {
		return 0, false
	}
	return d.r.Num().Int64(), true
}

func decimalFromFloat(f float64) (decimal, bool) {
	r := new(big.Rat)
	if r.SetFloat64(f) == nil {
		return decimal{}, false
	}
	// Re-parse the shortest representation so 0.1 stays 0.1 rather than its binary expansion.
	d, ok := parseDecimal(strconv.FormatFloat(f, 'f', -1, 64))
	if !ok {
		return decimal{}, false
	}
	d.scale = computedScale
	return d, true
}

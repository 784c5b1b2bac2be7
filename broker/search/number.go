package search

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
)

// Number is a number search value (also the numeric part of a quantity).
type Number struct {
	// Prefix is the comparison; PrefixEq when none was written.
	Prefix Prefix
	// Value is the number written.
	Value float64
	// Low and High bound what eq, ne and ap accept, as [Low, High). For eq and ne this is the
	// precision of the value as written: 100 is [99.5, 100.5), 100.00 is [99.995, 100.005),
	// 1e2 is [50, 150). For ap it is widened to at least Value ± 10%.
	Low, High float64
}

// Matches reports whether an indexed number x matches. As R4 requires, the other prefixes
// ignore the precision and compare with Value itself:
//
//	eq  Low <= x < High      ne  not eq          ap  Low <= x < High
//	gt  x > Value            lt  x < Value
//	ge  x >= Value           le  x <= Value
//	sa  x > Value            eb  x < Value
func (n Number) Matches(x float64) bool {
	switch n.Prefix {
	case PrefixNe:
		return !(x >= n.Low && x < n.High)
	case PrefixGt, PrefixSa:
		return x > n.Value
	case PrefixLt, PrefixEb:
		return x < n.Value
	case PrefixGe:
		return x >= n.Value
	case PrefixLe:
		return x <= n.Value
	}
	return x >= n.Low && x < n.High
}

var numberRE = regexp.MustCompile(`^[+-]?\d+(?:\.(\d+))?(?:[eE]([+-]?\d+))?$`)

// parseNumber parses a number search value with its optional prefix.
func parseNumber(v string) (*Number, error) {
	p, rest, err := splitPrefix(v)
	if err != nil {
		return nil, err
	}
	m := numberRE.FindStringSubmatch(rest)
	if m == nil {
		return nil, fmt.Errorf("%q is not a valid number", v)
	}
	exp := 0
	if m[2] != "" {
		if exp, err = strconv.Atoi(m[2]); err != nil || exp > 300 || exp < -300 {
			return nil, fmt.Errorf("%q is out of range", v)
		}
	}
	val, ok := new(big.Rat).SetString(rest)
	if !ok {
		return nil, fmt.Errorf("%q is not a valid number", v)
	}
	// Half a unit of the last written digit: 10^-(decimals-exp) / 2.
	half := pow10(exp - len(m[1]))
	half.Mul(half, big.NewRat(1, 2))
	lo := new(big.Rat).Sub(val, half)
	hi := new(big.Rat).Add(val, half)
	n := &Number{Prefix: p}
	n.Value, _ = val.Float64()
	n.Low, _ = lo.Float64()
	n.High, _ = hi.Float64()
	if math.IsInf(n.Value, 0) || math.IsInf(n.Low, 0) || math.IsInf(n.High, 0) {
		return nil, fmt.Errorf("%q is out of range", v)
	}
	if p == PrefixAp {
		spread := math.Abs(n.Value) / 10
		n.Low = math.Min(n.Low, n.Value-spread)
		n.High = math.Max(n.High, n.Value+spread)
	}
	return n, nil
}

// pow10 returns 10^e as an exact rational.
func pow10(e int) *big.Rat {
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(e))), nil)
	if e < 0 {
		return new(big.Rat).SetFrac(big.NewInt(1), p)
	}
	return new(big.Rat).SetInt(p)
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

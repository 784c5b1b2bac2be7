package fhirpath

import (
	"sort"
)

type fnImpl func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error)

type funcDef struct {
	minArgs, maxArgs int
	fn               fnImpl
}

// lookupFunc returns the definition of a function, or nil when there is none.
func lookupFunc(name string) *funcDef {
	d := func(min, max int, fn fnImpl) *funcDef { return &funcDef{minArgs: min, maxArgs: max, fn: fn} }
	switch name {
	// existence
	case "empty":
		return d(0, 0, fnEmpty)
	case "exists":
		return d(0, 1, fnExists)
	case "all":
		return d(1, 1, fnAll)
	case "allTrue":
		return d(0, 0, boolAggregate(true, true))
	case "anyTrue":
		return d(0, 0, boolAggregate(false, true))
	case "allFalse":
		return d(0, 0, boolAggregate(true, false))
	case "anyFalse":
		return d(0, 0, boolAggregate(false, false))
	case "subsetOf":
		return d(1, 1, fnSubsetOf(false))
	case "supersetOf":
		return d(1, 1, fnSubsetOf(true))
	case "count":
		return d(0, 0, fnCount)
	// aggregates (FHIRPath 3.0, trial use)
	case "sum":
		return d(0, 0, fnSum)
	case "avg":
		return d(0, 0, fnAvg)
	case "min":
		return d(0, 0, fnMinMax(false))
	case "max":
		return d(0, 0, fnMinMax(true))
	case "distinct":
		return d(0, 0, fnDistinct)
	case "isDistinct":
		return d(0, 0, fnIsDistinct)
	// filtering and projection
	case "where":
		return d(1, 1, fnWhere)
	case "select":
		return d(1, 1, fnSelect)
	case "repeat":
		return d(1, 1, fnRepeat)
	case "ofType":
		return d(1, 1, fnOfType)
	// subsetting
	case "single":
		return d(0, 0, fnSingle)
	case "first":
		return d(0, 0, fnFirst)
	case "last":
		return d(0, 0, fnLast)
	case "tail":
		return d(0, 0, fnTail)
	case "skip":
		return d(1, 1, fnSkip)
	case "take":
		return d(1, 1, fnTake)
	case "intersect":
		return d(1, 1, fnIntersect)
	case "exclude":
		return d(1, 1, fnExclude)
	// combining
	case "union":
		return d(1, 1, fnUnion)
	case "combine":
		return d(1, 1, fnCombine)
	// conversion
	case "iif":
		return d(2, 3, fnIif)
	case "toBoolean":
		return d(0, 0, convert(toBoolean, false))
	case "convertsToBoolean":
		return d(0, 0, convert(toBoolean, true))
	case "toInteger":
		return d(0, 0, convert(toInteger, false))
	case "convertsToInteger":
		return d(0, 0, convert(toInteger, true))
	case "toDecimal":
		return d(0, 0, convert(toDecimal, false))
	case "convertsToDecimal":
		return d(0, 0, convert(toDecimal, true))
	case "toString":
		return d(0, 0, convert(toStringValue, false))
	case "convertsToString":
		return d(0, 0, convert(toStringValue, true))
	case "toDate":
		return d(0, 0, convert(toDate, false))
	case "convertsToDate":
		return d(0, 0, convert(toDate, true))
	case "toDateTime":
		return d(0, 0, convert(toDateTime, false))
	case "convertsToDateTime":
		return d(0, 0, convert(toDateTime, true))
	case "toTime":
		return d(0, 0, convert(toTime, false))
	case "convertsToTime":
		return d(0, 0, convert(toTime, true))
	case "toQuantity":
		return d(0, 1, fnToQuantity(false))
	case "convertsToQuantity":
		return d(0, 1, fnToQuantity(true))
	// strings
	case "indexOf":
		return d(1, 1, fnIndexOf(false))
	case "lastIndexOf":
		return d(1, 1, fnIndexOf(true))
	case "substring":
		return d(1, 2, fnSubstring)
	case "startsWith":
		return d(1, 1, stringPredicate(hasPrefix))
	case "endsWith":
		return d(1, 1, stringPredicate(hasSuffix))
	case "contains":
		return d(1, 1, stringPredicate(containsString))
	case "upper":
		return d(0, 0, stringMap(upper))
	case "lower":
		return d(0, 0, stringMap(lower))
	case "trim":
		return d(0, 0, stringMap(trim))
	case "replace":
		return d(2, 2, fnReplace)
	case "matches":
		return d(1, 1, fnMatches(false))
	case "matchesFull":
		return d(1, 1, fnMatches(true))
	case "replaceMatches":
		return d(2, 2, fnReplaceMatches)
	case "length":
		return d(0, 0, fnLength)
	case "toChars":
		return d(0, 0, fnToChars)
	case "split":
		return d(1, 1, fnSplit)
	case "join":
		return d(0, 1, fnJoin)
	case "encode":
		return d(1, 1, fnEncode(true))
	case "decode":
		return d(1, 1, fnEncode(false))
	case "escape":
		return d(1, 1, fnEscape(true))
	case "unescape":
		return d(1, 1, fnEscape(false))
	// math
	case "abs":
		return d(0, 0, fnAbs)
	case "ceiling":
		return d(0, 0, fnRounding(roundCeil))
	case "floor":
		return d(0, 0, fnRounding(roundFloor))
	case "truncate":
		return d(0, 0, fnRounding(roundTrunc))
	case "round":
		return d(0, 1, fnRound)
	case "exp":
		return d(0, 0, floatFunc(mathExp))
	case "ln":
		return d(0, 0, floatFunc(mathLn))
	case "sqrt":
		return d(0, 0, floatFunc(mathSqrt))
	case "log":
		return d(1, 1, fnLog)
	case "power":
		return d(1, 1, fnPower)
	// tree navigation
	case "children":
		return d(0, 0, fnChildren)
	case "descendants":
		return d(0, 0, fnDescendants)
	// utility
	case "trace":
		return d(1, 2, fnTrace)
	case "now":
		return d(0, 0, fnNow)
	case "today":
		return d(0, 0, fnToday)
	case "timeOfDay":
		return d(0, 0, fnTimeOfDay)
	case "not":
		return d(0, 0, fnNot)
	case "aggregate":
		return d(1, 2, fnAggregate)
	case "sort":
		return d(0, 8, fnSort)
	case "lowBoundary":
		return d(0, 1, fnBoundary(false))
	case "highBoundary":
		return d(0, 1, fnBoundary(true))
	case "precision":
		return d(0, 0, fnPrecision)
	case "comparable":
		return d(1, 1, fnComparable)
	// types
	case "type":
		return d(0, 0, fnType)
	case "is":
		return d(1, 1, fnIs)
	case "as":
		return d(1, 1, fnAs)
	// FHIR additions
	case "extension":
		return d(1, 1, fnExtension)
	case "hasValue":
		return d(0, 0, fnHasValue)
	case "getValue":
		return d(0, 0, fnGetValue)
	case "resolve":
		return d(0, 0, fnResolve)
	case "memberOf":
		return d(1, 1, fnMemberOf)
	case "htmlChecks", "htmlchecks":
		return d(0, 0, fnHTMLChecks)
	case "conformsTo":
		return d(1, 1, fnConformsTo)
	}
	return nil
}

// lambda evaluates argument i once per input item with that item as $this and its
// position as $index. f must copy res if it keeps it.
func (c *evalCtx) lambda(n *funcNode, i int, in Collection, f func(idx int, item Value, res Collection) (stop bool, err error)) error {
	saveIdx, saveHas := c.index, c.hasIndex
	defer func() { c.index, c.hasIndex = saveIdx, saveHas }()
	buf := make(Collection, 1)
	for idx, v := range in {
		buf[0] = v
		c.index, c.hasIndex = idx, true
		res, err := n.args[i].eval(c, buf)
		if err != nil {
			return err
		}
		stop, err := f(idx, v, res)
		if err != nil || stop {
			return err
		}
	}
	return nil
}

func fnEmpty(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	return c.boolColl(len(in) == 0), nil
}

func fnExists(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	if len(n.args) == 0 {
		return c.boolColl(len(in) > 0), nil
	}
	found := false
	err := c.lambda(n, 0, in, func(_ int, _ Value, res Collection) (bool, error) {
		b, known, err := singletonBool(res)
		if err != nil {
			return true, err
		}
		found = known && b
		return found, nil
	})
	if err != nil {
		return nil, err
	}
	return c.boolColl(found), nil
}

func fnAll(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	all := true
	err := c.lambda(n, 0, in, func(_ int, _ Value, res Collection) (bool, error) {
		b, known, err := singletonBool(res)
		if err != nil {
			return true, err
		}
		if !known || !b {
			all = false
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return c.boolColl(all), nil
}

// boolAggregate builds allTrue (all, true), anyTrue (!all, true), allFalse, anyFalse.
func boolAggregate(all, want bool) fnImpl {
	return func(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
		res := all
		for _, v := range in {
			b, ok := v.node.(bool)
			if v.t.sys != sysBoolean || !ok {
				return nil, errorf("expected boolean items, got %s", v.t.name)
			}
			if all && b != want {
				res = false
			}
			if !all && b == want {
				res = true
			}
		}
		return c.boolColl(res), nil
	}
}

func fnSubsetOf(super bool) fnImpl {
	return func(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
		other, err := n.arg(c, 0, focus)
		if err != nil {
			return nil, err
		}
		a, b := in, other
		if super {
			a, b = other, in
		}
		for _, v := range a {
			if !containsItem(b, v) {
				return c.boolColl(false), nil
			}
		}
		return c.boolColl(true), nil
	}
}

func fnCount(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	return Collection{c.integer(int64(len(in)))}, nil
}

func distinct(in Collection) Collection {
	var out Collection
	for _, v := range in {
		if !containsItem(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func fnDistinct(_ *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	return distinct(in), nil
}

func fnIsDistinct(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	return c.boolColl(len(distinct(in)) == len(in)), nil
}

func fnWhere(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	var out Collection
	err := c.lambda(n, 0, in, func(_ int, v Value, res Collection) (bool, error) {
		b, known, err := singletonBool(res)
		if err != nil {
			return true, err
		}
		if known && b {
			out = append(out, v)
		}
		return false, nil
	})
	return out, err
}

func fnSelect(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	var out Collection
	err := c.lambda(n, 0, in, func(_ int, _ Value, res Collection) (bool, error) {
		out = append(out, res...)
		return false, nil
	})
	return out, err
}

// fnRepeat applies the projection to the input and then to every new item until nothing new
// appears. Primitive results already seen are not added again (which also ends cycles);
// elements of the input tree are always distinct nodes.
func fnRepeat(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	var out Collection
	queue := in
	for len(queue) > 0 {
		var next Collection
		err := c.lambda(n, 0, queue, func(_ int, _ Value, res Collection) (bool, error) {
			for _, r := range res {
				if _, isMap := r.node.(map[string]any); !isMap && containsItem(out, r) {
					continue
				}
				out = append(out, r)
				next = append(next, r)
			}
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		queue = next
	}
	return out, nil
}

func fnOfType(_ *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	var out Collection
	for _, v := range in {
		if n.spec.castable(v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func fnSingle(_ *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	if len(in) > 1 {
		return nil, errorf("single() on a collection of %d items", len(in))
	}
	return in, nil
}

func fnFirst(_ *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	return in[:1:1], nil
}

func fnLast(_ *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	return in[len(in)-1:], nil
}

func fnTail(_ *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	if len(in) <= 1 {
		return nil, nil
	}
	return in[1:], nil
}

func intArg(c *evalCtx, n *funcNode, i int, focus Collection) (int64, bool, error) {
	a, err := n.arg(c, i, focus)
	if err != nil || len(a) == 0 {
		return 0, false, err
	}
	v, ok := singleInt(a)
	if !ok {
		return 0, false, errorf("%s() needs an integer argument", n.name)
	}
	return v, true, nil
}

func fnSkip(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	k, ok, err := intArg(c, n, 0, focus)
	if err != nil || !ok {
		return nil, err
	}
	if k <= 0 {
		return in, nil
	}
	if k >= int64(len(in)) {
		return nil, nil
	}
	return in[k:], nil
}

func fnTake(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	k, ok, err := intArg(c, n, 0, focus)
	if err != nil || !ok || k <= 0 {
		return nil, err
	}
	if k >= int64(len(in)) {
		return in, nil
	}
	return in[:k:k], nil
}

func fnIntersect(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	other, err := n.arg(c, 0, focus)
	if err != nil {
		return nil, err
	}
	var out Collection
	for _, v := range in {
		if containsItem(other, v) && !containsItem(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func fnExclude(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	other, err := n.arg(c, 0, focus)
	if err != nil {
		return nil, err
	}
	var out Collection
	for _, v := range in {
		if !containsItem(other, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func fnUnion(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	other, err := n.arg(c, 0, focus)
	if err != nil {
		return nil, err
	}
	return union(in, other), nil
}

func fnCombine(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	other, err := n.arg(c, 0, focus)
	if err != nil {
		return nil, err
	}
	out := make(Collection, 0, len(in)+len(other))
	return append(append(out, in...), other...), nil
}

// fnIif evaluates only the branch it needs. Called on a collection, that collection is the
// focus of its arguments.
func fnIif(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	argFocus := focus
	if n.recv != nil {
		if len(in) > 1 {
			return nil, errorf("iif() called on a collection of %d items", len(in))
		}
		argFocus = in
	}
	crit, err := n.arg(c, 0, argFocus)
	if err != nil {
		return nil, err
	}
	if c.cfg.strict && len(crit) == 1 && crit[0].t.sys != sysBoolean {
		return nil, errorf("iif() criterion must be boolean, got %s", crit[0].t.name)
	}
	b, known, err := singletonBool(crit)
	if err != nil {
		return nil, err
	}
	if known && b {
		return n.arg(c, 1, argFocus)
	}
	return n.arg(c, 2, argFocus)
}

func fnNot(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	b, known, err := singletonBool(in)
	if err != nil || !known {
		return nil, err
	}
	return c.boolColl(!b), nil
}

func fnTrace(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	if c.cfg.trace == nil {
		return in, nil
	}
	name := ""
	if a, err := n.arg(c, 0, focus); err != nil {
		return nil, err
	} else if len(a) == 1 {
		name, _ = stringOf(a[0])
	}
	out := in
	if len(n.args) > 1 {
		var proj Collection
		err := c.lambda(n, 1, in, func(_ int, _ Value, res Collection) (bool, error) {
			proj = append(proj, res...)
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		out = proj
	}
	c.cfg.trace(name, out)
	return in, nil
}

func fnAggregate(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	total, err := n.arg(c, 1, focus)
	if err != nil {
		return nil, err
	}
	saveTotal, saveHas := c.total, c.hasTotal
	defer func() { c.total, c.hasTotal = saveTotal, saveHas }()
	c.total, c.hasTotal = total, true
	err = c.lambda(n, 0, in, func(_ int, _ Value, res Collection) (bool, error) {
		c.total = append(Collection(nil), res...)
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return c.total, nil
}

// fnSort orders by each key expression in turn; a key written as -expr sorts descending.
func fnSort(c *evalCtx, n *funcNode, in, _ Collection) (Collection, error) {
	type keyed struct {
		v    Value
		keys []Collection
	}
	items := make([]keyed, len(in))
	for i, v := range in {
		items[i].v = v
	}
	desc := make([]bool, len(n.args))
	exprs := make([]node, len(n.args))
	for i, a := range n.args {
		exprs[i] = a
		if u, ok := a.(*unaryNode); ok && u.neg {
			desc[i], exprs[i] = true, u.x
		}
	}
	saveIdx, saveHas := c.index, c.hasIndex
	defer func() { c.index, c.hasIndex = saveIdx, saveHas }()
	for i := range items {
		c.index, c.hasIndex = i, true
		for _, e := range exprs {
			k, err := e.eval(c, Collection{items[i].v})
			if err != nil {
				return nil, err
			}
			if len(k) > 1 {
				return nil, errorf("sort() key must be a single value")
			}
			items[i].keys = append(items[i].keys, k)
		}
	}
	var sortErr error
	// cmpKey orders two keys; ok is false when one is empty, and empty keys sort first
	// whatever the direction.
	cmpKey := func(a, b Collection) (int, bool) {
		switch {
		case len(a) == 0 && len(b) == 0:
			return 0, false
		case len(a) == 0:
			return -1, false
		case len(b) == 0:
			return 1, false
		}
		r, _, err := compareItems(a[0], b[0])
		if err != nil && sortErr == nil {
			sortErr = err
		}
		return r, true
	}
	sort.SliceStable(items, func(i, j int) bool {
		if len(exprs) == 0 {
			r, _ := cmpKey(Collection{items[i].v}, Collection{items[j].v})
			return r < 0
		}
		for k := range exprs {
			r, both := cmpKey(items[i].keys[k], items[j].keys[k])
			if desc[k] && both {
				r = -r
			}
			if r != 0 {
				return r < 0
			}
		}
		return false
	})
	if sortErr != nil {
		return nil, sortErr
	}
	out := make(Collection, len(items))
	for i := range items {
		out[i] = items[i].v
	}
	return out, nil
}

// fnSum adds numbers or quantities; the sum of nothing is 0.
func fnSum(c *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
	if len(in) == 0 {
		return Collection{c.integer(0)}, nil
	}
	acc := in[:1]
	for _, v := range in[1:] {
		r, err := c.arith("+", acc[0], v)
		if err != nil {
			return nil, err
		}
		if len(r) == 0 {
			return nil, nil
		}
		acc = r
	}
	return acc, nil
}

func fnAvg(c *evalCtx, n *funcNode, in, focus Collection) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	s, err := fnSum(c, n, in, focus)
	if err != nil || len(s) == 0 {
		return nil, err
	}
	return c.arith("/", s[0], c.integer(int64(len(in))))
}

func fnMinMax(max bool) fnImpl {
	return func(_ *evalCtx, _ *funcNode, in, _ Collection) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		best := in[0]
		for _, v := range in[1:] {
			r, known, err := compareItems(v, best)
			if err != nil {
				return nil, err
			}
			if !known {
				return nil, nil
			}
			if (max && r > 0) || (!max && r < 0) {
				best = v
			}
		}
		return Collection{best}, nil
	}
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hjbroker/hjbroker/broker/search"
	"github.com/hjbroker/hjbroker/broker/searchparam"
)

// SearchOptions choose what a search returns.
type SearchOptions struct {
	// Offset and Limit select the page; Limit 0 returns no entries.
	Offset, Limit int
	// Total asks for the number of matches.
	Total bool
	// KeysOnly returns RIDs without loading bodies (for saving a result list).
	KeysOnly bool
}

// SearchPage is one page of matches in sort order.
type SearchPage struct {
	Entries []*Resource
	RIDs    []int64
	Total   int // -1 when not asked for
}

// Search runs q against current, non-deleted resources.
func (s *SQL) Search(ctx context.Context, q *search.Query, o SearchOptions) (*SearchPage, error) {
	return runSearch(ctx, s.r, s, q, o)
}

// Search inside a write transaction sees the transaction's own writes (conditional
// operations in a Bundle).
func (t *sqlTx) Search(ctx context.Context, q *search.Query, o SearchOptions) (*SearchPage, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return runSearch(ctx, t.tx, t.s, q, o)
}

func runSearch(ctx context.Context, db queryer, s *SQL, q *search.Query, o SearchOptions) (*SearchPage, error) {
	b := &sqlBuilder{d: s.d}
	where, err := b.where(q, "r")
	if err != nil {
		return nil, err
	}
	page := &SearchPage{Total: -1}
	if o.Total {
		if err := db.QueryRowContext(ctx, s.d.rebind("SELECT COUNT(*) FROM resources r WHERE "+where), b.args...).Scan(&page.Total); err != nil {
			return nil, fmt.Errorf("counting matches: %w", err)
		}
	}
	if o.Limit <= 0 {
		return page, nil
	}
	order, orderArgs := b.orderBy(q.Sort)
	args := append(append([]any{}, b.args...), orderArgs...)
	args = append(args, o.Limit, o.Offset)
	var sqlText string
	if o.KeysOnly {
		sqlText = "SELECT r.rid FROM resources r WHERE " + where + order + " LIMIT ? OFFSET ?"
	} else {
		sqlText = currentSelect + " WHERE " + where + order + " LIMIT ? OFFSET ?"
	}
	rows, err := db.QueryContext(ctx, s.d.rebind(sqlText), args...)
	if err != nil {
		return nil, fmt.Errorf("searching: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if o.KeysOnly {
			var rid int64
			if err := rows.Scan(&rid); err != nil {
				return nil, fmt.Errorf("searching: %w", err)
			}
			page.RIDs = append(page.RIDs, rid)
			continue
		}
		res, rid, err := scanResource(rows)
		if err != nil {
			return nil, fmt.Errorf("searching: %w", err)
		}
		page.Entries = append(page.Entries, res)
		page.RIDs = append(page.RIDs, rid)
	}
	return page, rows.Err()
}

// sqlBuilder turns a search.Query into a WHERE clause with arguments.
type sqlBuilder struct {
	d     dialect
	args  []any
	alias int
}

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "?"
}

func (b *sqlBuilder) next(prefix string) string {
	b.alias++
	return prefix + strconv.Itoa(b.alias)
}

func (b *sqlBuilder) where(q *search.Query, r string) (string, error) {
	conds := []string{"NOT " + r + ".deleted"}
	if len(q.Types) > 0 {
		ph := make([]string, len(q.Types))
		for i, t := range q.Types {
			ph[i] = b.arg(t)
		}
		// SQLite without statistics would drive the query from the type index and test every
		// resource of the type; the unary plus keeps it on the search index subqueries.
		noIndex := ""
		if len(q.Clauses) > 0 {
			noIndex = b.d.noIndex
		}
		conds = append(conds, noIndex+r+".res_type IN ("+strings.Join(ph, ",")+")")
	}
	typ := ""
	if len(q.Types) == 1 {
		typ = q.Types[0]
	}
	for i := range q.Clauses {
		c, err := b.clause(&q.Clauses[i], r, typ)
		if err != nil {
			return "", err
		}
		conds = append(conds, c)
	}
	return strings.Join(conds, " AND "), nil
}

// clause compiles one AND-ed clause, following its chain first. typ is the type of the
// resources aliased r when a single one is known.
//
// Conditions are written as "r.rid IN (SELECT ...)" rather than correlated EXISTS, so the
// database starts from the search index and looks the few matching resources up by key,
// instead of testing every resource of the type.
func (b *sqlBuilder) clause(c *search.Clause, r, typ string) (string, error) {
	if len(c.Chain) == 0 {
		return b.test(c, r, typ)
	}
	// Build from the outermost hop inwards; each hop selects keys of the resources it starts
	// from, given the resources reached.
	var open []string
	var closeWith []string
	cur, curType := r, typ
	for _, l := range c.Chain {
		ref, nr := b.next("c"), b.next("r")
		if l.Reverse {
			// Resources of l.Type whose reference l.Param points at the current resource.
			cond := fmt.Sprintf("%s.res_id IN (SELECT %s.target_id FROM idx_ref %s JOIN resources %s ON %s.rid = %s.rid WHERE %s.res_type = %s AND %s.param = %s",
				cur, ref, ref, nr, nr, ref, ref, b.arg(l.Type), ref, b.arg(l.Param.Code))
			if curType != "" {
				cond += fmt.Sprintf(" AND %s.target_type = %s", ref, b.arg(curType))
			} else {
				cond += fmt.Sprintf(" AND %s.target_type = %s.res_type", ref, cur)
			}
			open = append(open, cond+" AND NOT "+nr+".deleted AND ")
		} else {
			// The current resource's reference l.Param points at a resource of l.Type.
			cond := fmt.Sprintf("%s.rid IN (SELECT %s.rid FROM idx_ref %s JOIN resources %s ON %s.res_type = %s.target_type AND %s.res_id = %s.target_id WHERE %s.param = %s AND %s.target_type = %s",
				cur, ref, ref, nr, nr, ref, nr, ref, ref, b.arg(l.Param.Code), ref, b.arg(l.Type))
			if curType != "" {
				cond += fmt.Sprintf(" AND %s.res_type = %s", ref, b.arg(curType))
			}
			open = append(open, cond+" AND NOT "+nr+".deleted AND ")
		}
		closeWith = append(closeWith, ")")
		cur, curType = nr, l.Type
	}
	inner, err := b.test(c, cur, curType)
	if err != nil {
		return "", err
	}
	return strings.Join(open, "") + inner + strings.Join(closeWith, ""), nil
}

// indexTable names the table and the alias-free columns a parameter type is indexed in.
func indexTable(t searchparam.Type) (string, error) {
	switch t {
	case searchparam.Token:
		return "idx_token", nil
	case searchparam.String:
		return "idx_string", nil
	case searchparam.Date:
		return "idx_date", nil
	case searchparam.Reference:
		return "idx_ref", nil
	case searchparam.Number, searchparam.Quantity:
		return "idx_number", nil
	case searchparam.URI:
		return "idx_uri", nil
	}
	return "", fmt.Errorf("search parameters of type %s cannot be searched", t)
}

// IdentifierParam is the index name of a reference parameter's Reference.identifier values,
// searched with the :identifier modifier.
func IdentifierParam(code string) string { return code + ":identifier" }

// OfTypeParam is the index name of an identifier parameter's type|value pairs (:of-type).
func OfTypeParam(code string) string { return code + ":of-type" }

// test compiles the clause's own test on the resource aliased r, of type typ when known.
func (b *sqlBuilder) test(c *search.Clause, r, typ string) (string, error) {
	p := c.Param
	// _id and _lastUpdated live on the resources table itself.
	switch p.Code {
	case "_id":
		if c.Modifier == search.ModMissing {
			return b.boolLit(!c.Values[0].Missing), nil
		}
		var ors []string
		for _, v := range c.Values {
			if v.Token != nil {
				ors = append(ors, r+".res_id = "+b.arg(v.Token.Code))
			}
		}
		cond := "(" + orJoin(ors) + ")"
		if c.Modifier == search.ModNot {
			cond = "NOT " + cond
		}
		return cond, nil
	case "_lastUpdated":
		if c.Modifier == search.ModMissing {
			return b.boolLit(!c.Values[0].Missing), nil
		}
		var ors []string
		for _, v := range c.Values {
			ors = append(ors, b.dateCond(v.Date, r+".last_updated", r+".last_updated + 1"))
		}
		return "(" + orJoin(ors) + ")", nil
	}
	table, err := indexTable(p.Type)
	if err != nil {
		return "", err
	}
	param := p.Code
	switch c.Modifier {
	case search.ModIdentifier:
		table, param = "idx_token", IdentifierParam(p.Code)
	case search.ModOfType:
		param = OfTypeParam(p.Code)
	}
	i := b.next("i")
	var head string
	if typ != "" {
		head = fmt.Sprintf("%s.rid IN (SELECT %s.rid FROM %s %s WHERE %s.res_type = %s AND %s.param = %s", r, i, table, i, i, b.arg(typ), i, b.arg(param))
	} else {
		head = fmt.Sprintf("EXISTS (SELECT 1 FROM %s %s WHERE %s.rid = %s.rid AND %s.param = %s", table, i, i, r, i, b.arg(param))
	}
	if c.Modifier == search.ModMissing {
		if c.Values[0].Missing {
			return "NOT " + head + ")", nil
		}
		return head + ")", nil
	}
	var ors []string
	for _, v := range c.Values {
		cond, err := b.value(p, c.Modifier, v, i)
		if err != nil {
			return "", err
		}
		ors = append(ors, cond)
	}
	cond := head + " AND (" + orJoin(ors) + "))"
	if c.Modifier == search.ModNot {
		return "NOT " + cond, nil
	}
	return cond, nil
}

func (b *sqlBuilder) boolLit(v bool) string {
	if v {
		return "1 = 1"
	}
	return "1 = 0"
}

func orJoin(ors []string) string {
	if len(ors) == 0 {
		return "1 = 0"
	}
	return strings.Join(ors, " OR ")
}

// value compiles one OR-ed value against the index row aliased i.
func (b *sqlBuilder) value(p *searchparam.Param, mod search.Modifier, v search.Value, i string) (string, error) {
	switch mod {
	case search.ModText:
		return i + ".text " + b.d.likeOp + " " + b.arg(b.d.prefixPattern(v.Text)), nil
	case search.ModIn, search.ModNotIn:
		return "", fmt.Errorf("the :%s modifier needs value set expansion, which this server does not do", mod)
	case search.ModIdentifier, search.ModOfType:
		return b.token(v.Token, i, v.OfTypeValue, mod == search.ModOfType), nil
	}
	switch p.Type {
	case searchparam.Token:
		if v.Token == nil {
			return "", fmt.Errorf("token value %q could not be read", v.Raw)
		}
		return b.token(v.Token, i, "", false), nil
	case searchparam.String:
		switch mod {
		case search.ModExact:
			return i + ".exact = " + b.arg(v.String), nil
		case search.ModContains:
			return i + ".norm " + b.d.likeOp + " " + b.arg(b.d.containsPattern(v.Text)), nil
		}
		if v.Text == "" {
			return "1 = 1", nil
		}
		return i + ".norm " + b.d.likeOp + " " + b.arg(b.d.prefixPattern(v.Text)), nil
	case searchparam.Date:
		return b.dateCond(v.Date, i+".lo", i+".hi"), nil
	case searchparam.Number:
		return b.numberCond(v.Number, i+".value"), nil
	case searchparam.Quantity:
		q := v.Quantity
		cond := b.numberCond(&q.Number, i+".value")
		switch {
		case q.System != "" && q.Code != "":
			cond += " AND " + i + ".system = " + b.arg(q.System) + " AND " + i + ".code = " + b.arg(q.Code)
		case q.Code != "":
			cond += " AND (" + i + ".code = " + b.arg(q.Code) + " OR " + i + ".unit = " + b.arg(q.Code) + ")"
		}
		return "(" + cond + ")", nil
	case searchparam.Reference:
		ref := v.Reference
		if ref == nil {
			return "", fmt.Errorf("reference value %q could not be read", v.Raw)
		}
		if ref.URL != "" {
			return i + ".url = " + b.arg(ref.URL), nil
		}
		cond := i + ".target_id = " + b.arg(ref.ID)
		if ref.Type != "" {
			cond += " AND " + i + ".target_type = " + b.arg(ref.Type)
		}
		return "(" + cond + ")", nil
	case searchparam.URI:
		switch mod {
		case search.ModBelow:
			return i + ".uri " + b.d.likeOp + " " + b.arg(b.d.prefixPattern(v.URI)), nil
		case search.ModAbove:
			// The indexed uri is the value or one of its parents at a "/" boundary.
			var ph []string
			for _, pre := range uriParents(v.URI) {
				ph = append(ph, b.arg(pre))
			}
			return i + ".uri IN (" + strings.Join(ph, ",") + ")", nil
		}
		return i + ".uri = " + b.arg(v.URI), nil
	}
	return "", fmt.Errorf("search parameters of type %s cannot be searched", p.Type)
}

func uriParents(u string) []string {
	out := []string{u}
	for {
		j := strings.LastIndexByte(u, '/')
		if j <= 0 || strings.HasSuffix(u[:j], "/") || strings.HasSuffix(u[:j], ":") {
			return out
		}
		u = u[:j]
		out = append(out, u)
	}
}

func (b *sqlBuilder) token(t *search.Token, i, ofTypeValue string, ofType bool) string {
	code := t.Code
	if ofType {
		code = t.Code + "|" + ofTypeValue
	}
	switch {
	case t.AnySystem:
		return i + ".code = " + b.arg(code)
	case t.System != "" && code == "":
		return i + ".system = " + b.arg(t.System)
	default:
		return "(" + i + ".system = " + b.arg(t.System) + " AND " + i + ".code = " + b.arg(code) + ")"
	}
}

// dateCond reproduces search.Date.Matches in SQL over an indexed range [lo, hi).
func (b *sqlBuilder) dateCond(d *search.Date, lo, hi string) string {
	sLo, sHi := d.Range.Low, d.Range.High
	eq := func() string {
		return "(" + lo + " >= " + b.arg(sLo) + " AND " + hi + " <= " + b.arg(sHi) + ")"
	}
	switch d.Prefix {
	case search.PrefixNe:
		return "NOT " + eq()
	case search.PrefixGt:
		return hi + " > " + b.arg(sHi)
	case search.PrefixLt:
		return lo + " < " + b.arg(sLo)
	case search.PrefixGe:
		return "(" + hi + " > " + b.arg(sHi) + " OR " + eq() + ")"
	case search.PrefixLe:
		return "(" + lo + " < " + b.arg(sLo) + " OR " + eq() + ")"
	case search.PrefixSa:
		return lo + " >= " + b.arg(sHi)
	case search.PrefixEb:
		return hi + " <= " + b.arg(sLo)
	case search.PrefixAp:
		return "(" + lo + " < " + b.arg(sHi) + " AND " + hi + " > " + b.arg(sLo) + ")"
	}
	return eq()
}

// numberCond reproduces search.Number.Matches in SQL.
func (b *sqlBuilder) numberCond(n *search.Number, col string) string {
	switch n.Prefix {
	case search.PrefixNe:
		return "NOT (" + col + " >= " + b.arg(n.Low) + " AND " + col + " < " + b.arg(n.High) + ")"
	case search.PrefixGt, search.PrefixSa:
		return col + " > " + b.arg(n.Value)
	case search.PrefixLt, search.PrefixEb:
		return col + " < " + b.arg(n.Value)
	case search.PrefixGe:
		return col + " >= " + b.arg(n.Value)
	case search.PrefixLe:
		return col + " <= " + b.arg(n.Value)
	}
	return "(" + col + " >= " + b.arg(n.Low) + " AND " + col + " < " + b.arg(n.High) + ")"
}

// orderBy renders _sort. Resources without a value for a key sort after those with one; the
// internal key breaks ties so pages are stable.
func (b *sqlBuilder) orderBy(keys []search.Sort) (string, []any) {
	var parts []string
	var args []any
	for _, k := range keys {
		dir := ""
		agg := "MIN"
		if k.Desc {
			dir, agg = " DESC", "MAX"
		}
		var expr string
		switch k.Param.Code {
		case "_id":
			expr = "r.res_id" + b.d.binary
		case "_lastUpdated":
			expr = "r.last_updated"
		default:
			table, err := indexTable(k.Param.Type)
			if err != nil {
				continue
			}
			col := "s." + map[string]string{"idx_token": "code", "idx_string": "norm", "idx_date": "lo", "idx_ref": "target_id", "idx_number": "value", "idx_uri": "uri"}[table]
			switch table {
			case "idx_date":
				if k.Desc {
					col = "s.hi"
				}
			case "idx_number":
			default:
				col += b.d.binary
			}
			expr = fmt.Sprintf("(SELECT %s(%s) FROM %s s WHERE s.rid = r.rid AND s.param = ?)", agg, col, table)
			args = append(args, k.Param.Code)
			parts = append(parts, "("+expr+") IS NULL")
			// the NULL test uses the same parameter once more
			args = append(args, k.Param.Code)
		}
		parts = append(parts, expr+dir)
	}
	parts = append(parts, "r.rid")
	return " ORDER BY " + strings.Join(parts, ", "), args
}

// Referenced implements _include: what the resources from point to.
func (s *SQL) Referenced(ctx context.Context, from []int64, param, targetType string) ([]*Resource, []int64, error) {
	if len(from) == 0 {
		return nil, nil, nil
	}
	args := make([]any, 0, len(from)+2)
	for _, r := range from {
		args = append(args, r)
	}
	q := `SELECT DISTINCT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body
		FROM idx_ref c JOIN resources r ON r.res_type = c.target_type AND r.res_id = c.target_id
		JOIN resource_versions v ON v.seq = r.seq
		WHERE c.rid IN (` + placeholders(len(from)) + `) AND NOT r.deleted`
	if param != "" {
		q += ` AND c.param = ?`
		args = append(args, param)
	}
	if targetType != "" {
		q += ` AND r.res_type = ?`
		args = append(args, targetType)
	}
	return s.collect(ctx, q+` ORDER BY r.rid`, args)
}

// Referencing implements _revinclude: what points to the resources to.
func (s *SQL) Referencing(ctx context.Context, to []Key, srcType, param string) ([]*Resource, []int64, error) {
	if len(to) == 0 {
		return nil, nil, nil
	}
	var ors []string
	var args []any
	for _, k := range to {
		ors = append(ors, "(c.target_type = ? AND c.target_id = ?)")
		args = append(args, k.Type, k.ID)
	}
	q := `SELECT DISTINCT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body
		FROM idx_ref c JOIN resources r ON r.rid = c.rid
		JOIN resource_versions v ON v.seq = r.seq
		WHERE (` + strings.Join(ors, " OR ") + `) AND NOT r.deleted`
	if srcType != "" {
		q += ` AND c.res_type = ?`
		args = append(args, srcType)
	}
	if param != "" {
		q += ` AND c.param = ?`
		args = append(args, param)
	}
	return s.collect(ctx, q+` ORDER BY r.rid`, args)
}

func (s *SQL) collect(ctx context.Context, q string, args []any) ([]*Resource, []int64, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("following references: %w", err)
	}
	defer rows.Close()
	var out []*Resource
	var rids []int64
	for rows.Next() {
		res, rid, err := scanResource(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("following references: %w", err)
		}
		out = append(out, res)
		rids = append(rids, rid)
	}
	return out, rids, rows.Err()
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// SearchJSON runs q and decodes up to limit matches, for callers that read resources rather
// than serve them (Consents for a disclosure decision, Subscriptions for routing).
func SearchJSON(ctx context.Context, r Reader, q *search.Query, limit int) ([]map[string]any, error) {
	page, err := r.Search(ctx, q, SearchOptions{Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(page.Entries))
	for _, e := range page.Entries {
		var m map[string]any
		if err := json.Unmarshal(e.Body, &m); err != nil {
			return nil, fmt.Errorf("reading %s/%s: %w", e.Type, e.ID, err)
		}
		out = append(out, m)
	}
	return out, nil
}

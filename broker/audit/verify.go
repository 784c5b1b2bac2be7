package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// BreakKind says what is wrong at a broken link.
type BreakKind string

// Kinds of break.
const (
	// BreakContentChanged: the stored AuditEvent no longer hashes to the row's hash, and the
	// next link still confirms that hash, so the content was edited.
	BreakContentChanged BreakKind = "content changed"
	// BreakRowMissing: a seq is missing (a row was deleted), in the middle or at the end.
	BreakRowMissing BreakKind = "row deleted or sequence gap"
	// BreakHashMismatch: the row's stored hash is wrong (edited) or disagrees with its
	// successor's prev_hash.
	BreakHashMismatch BreakKind = "hash mismatch"
	// BreakLinkMismatch: the row's prev_hash is not the previous row's hash.
	BreakLinkMismatch BreakKind = "prev_hash does not link to the previous row"
	// BreakIndexMismatch: a searchable column disagrees with the hashed content.
	BreakIndexMismatch BreakKind = "index columns differ from the hashed content"
	// BreakOutsideChain: a row exists beyond the chain head (inserted without appending).
	BreakOutsideChain BreakKind = "row outside the chain"
)

// Break is the first broken link found.
type Break struct {
	Seq    int64
	Kind   BreakKind
	Detail string
}

func (b Break) String() string { return fmt.Sprintf("seq %d: %s: %s", b.Seq, b.Kind, b.Detail) }

// Report is the outcome of Verify.
type Report struct {
	OK bool
	// Count is the number of rows checked.
	Count int64
	// HeadSeq and Head are the chain head when the walk started; record Head elsewhere to
	// detect a wholesale rewrite of the chain later.
	HeadSeq int64
	Head    string
	// Break is the first broken link; nil when OK.
	Break *Break
}

type vrow struct {
	seq, recorded                            int64
	action, outcome, client, agency, eventID string
	body, prev, hash                         string
	patients                                 []string
}

const verifyPage = 1000

// Verify walks the chain from the first event to the head and reports the first broken link.
// Events appended while it runs are left for the next run. The error is for failures to read.
func (t *Trail) Verify(ctx context.Context) (Report, error) {
	var rep Report
	if err := t.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_chain_head WHERE id = 1`).Scan(&rep.HeadSeq, &rep.Head); err != nil {
		return rep, fmt.Errorf("audit verify: reading chain head: %w", err)
	}
	expected, prevHash := int64(1), GenesisHash
	var pending *vrow
	// check judges row r once its successor's prev_hash (or the head's hash, for the last
	// row) is known, which tells an edited body from an edited hash.
	check := func(r *vrow, nextSeq int64, nextPrev string) *Break {
		if r.seq != expected {
			return &Break{Seq: expected, Kind: BreakRowMissing,
				Detail: fmt.Sprintf("seq %d to %d missing before seq %d", expected, r.seq-1, r.seq)}
		}
		if r.prev != prevHash {
			return &Break{Seq: r.seq, Kind: BreakLinkMismatch,
				Detail: fmt.Sprintf("prev_hash %s, but seq %d has hash %s", short(r.prev), r.seq-1, short(prevHash))}
		}
		computed, err := chainHash(r.prev, []byte(r.body))
		if err != nil {
			return &Break{Seq: r.seq, Kind: BreakLinkMismatch, Detail: err.Error()}
		}
		if computed != r.hash {
			switch {
			case nextSeq == r.seq+1 && nextPrev == r.hash:
				return &Break{Seq: r.seq, Kind: BreakContentChanged,
					Detail: fmt.Sprintf("the stored event hashes to %s, not the recorded %s", short(computed), short(r.hash))}
			case nextSeq == r.seq+1 && nextPrev == computed:
				return &Break{Seq: r.seq, Kind: BreakHashMismatch,
					Detail: fmt.Sprintf("stored hash %s was edited; the chain recorded %s", short(r.hash), short(computed))}
			default:
				return &Break{Seq: r.seq, Kind: BreakHashMismatch,
					Detail: fmt.Sprintf("stored hash %s, computed %s", short(r.hash), short(computed))}
			}
		}
		if msg := indexProblem(r); msg != "" {
			return &Break{Seq: r.seq, Kind: BreakIndexMismatch, Detail: msg}
		}
		rep.Count++
		expected, prevHash = r.seq+1, r.hash
		return nil
	}
	fail := func(b *Break) (Report, error) {
		rep.Break = b
		return rep, nil
	}
	after := int64(0)
	for after < rep.HeadSeq {
		page, err := t.page(ctx, after, rep.HeadSeq)
		if err != nil {
			return rep, err
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			r := &page[i]
			if pending != nil {
				if b := check(pending, r.seq, r.prev); b != nil {
					return fail(b)
				}
			}
			pending = r
		}
		after = page[len(page)-1].seq
	}
	if pending != nil {
		// The head plays the successor's part for the last row.
		if b := check(pending, rep.HeadSeq+1, rep.Head); b != nil {
			return fail(b)
		}
		if pending.seq == rep.HeadSeq && pending.hash != rep.Head {
			return fail(&Break{Seq: pending.seq, Kind: BreakHashMismatch,
				Detail: fmt.Sprintf("chain head records hash %s for seq %d, the row has %s", short(rep.Head), pending.seq, short(pending.hash))})
		}
	}
	if expected <= rep.HeadSeq {
		return fail(&Break{Seq: expected, Kind: BreakRowMissing,
			Detail: fmt.Sprintf("seq %d to %d missing at the end of the chain (head is seq %d)", expected, rep.HeadSeq, rep.HeadSeq)})
	}
	// Rows appended since the walk began moved the head; anything beyond the current head
	// was written outside the chain.
	var head2 int64
	if err := t.db.QueryRowContext(ctx, `SELECT seq FROM audit_chain_head WHERE id = 1`).Scan(&head2); err != nil {
		return rep, fmt.Errorf("audit verify: reading chain head: %w", err)
	}
	var extra sql.NullInt64
	if err := t.db.QueryRowContext(ctx, t.rebind(`SELECT MIN(seq) FROM audit_events WHERE seq > ?`), head2).Scan(&extra); err != nil {
		return rep, fmt.Errorf("audit verify: %w", err)
	}
	if extra.Valid {
		return fail(&Break{Seq: extra.Int64, Kind: BreakOutsideChain,
			Detail: fmt.Sprintf("seq %d is beyond the chain head (seq %d)", extra.Int64, head2)})
	}
	rep.OK = true
	return rep, nil
}

// page reads up to verifyPage rows with after < seq <= upto, with their patient rows.
func (t *Trail) page(ctx context.Context, after, upto int64) ([]vrow, error) {
	rows, err := t.db.QueryContext(ctx, t.rebind(`SELECT seq, recorded, action, outcome, client, agency, event_id, body, prev_hash, hash
		FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`), after, upto, verifyPage)
	if err != nil {
		return nil, fmt.Errorf("audit verify: reading events: %w", err)
	}
	var page []vrow
	for rows.Next() {
		var r vrow
		if err := rows.Scan(&r.seq, &r.recorded, &r.action, &r.outcome, &r.client, &r.agency, &r.eventID, &r.body, &r.prev, &r.hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("audit verify: reading events: %w", err)
		}
		page = append(page, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit verify: reading events: %w", err)
	}
	if len(page) == 0 {
		return nil, nil
	}
	pos := make(map[int64]int, len(page))
	for i, r := range page {
		pos[r.seq] = i
	}
	last := page[len(page)-1].seq
	prs, err := t.db.QueryContext(ctx, t.rebind(`SELECT seq, patient FROM audit_patient_index
		WHERE bucket >= ? AND bucket <= ? AND seq > ? AND seq <= ? ORDER BY seq, patient`),
		patientBucket(after+1), patientBucket(last), after, last)
	if err != nil {
		return nil, fmt.Errorf("audit verify: reading patient index: %w", err)
	}
	defer prs.Close()
	for prs.Next() {
		var seq int64
		var p string
		if err := prs.Scan(&seq, &p); err != nil {
			return nil, fmt.Errorf("audit verify: reading patient index: %w", err)
		}
		if i, ok := pos[seq]; ok {
			page[i].patients = append(page[i].patients, p)
		}
	}
	return page, prs.Err()
}

// indexProblem compares a row's searchable columns with what its hashed body says.
func indexProblem(r *vrow) string {
	var want indexFields
	if isRecord([]byte(r.body)) {
		id, e, err := decodeRecord([]byte(r.body))
		if err != nil {
			return "body is not an event record this broker wrote: " + err.Error()
		}
		want = recordIndex(e)
		want.id = id
	} else {
		var ae map[string]any
		if err := json.Unmarshal([]byte(r.body), &ae); err != nil {
			return "body is not JSON: " + err.Error()
		}
		var err error
		if want, err = indexOf(ae); err != nil {
			return "body is not an AuditEvent this broker wrote: " + err.Error()
		}
	}
	slices.Sort(want.patients)
	got := indexFields{r.eventID, r.recorded, r.action, r.outcome, r.client, r.agency, r.patients}
	var diffs []error
	cmp := func(col string, g, w any) {
		if g != w {
			diffs = append(diffs, fmt.Errorf("%s is %v, the hashed event says %v", col, g, w))
		}
	}
	cmp("event_id", got.id, want.id)
	cmp("recorded", got.recorded, want.recorded)
	cmp("action", got.action, want.action)
	cmp("outcome", got.outcome, want.outcome)
	cmp("client", got.client, want.client)
	cmp("agency", got.agency, want.agency)
	if !slices.Equal(got.patients, want.patients) {
		diffs = append(diffs, fmt.Errorf("patients are %v, the hashed event says %v", got.patients, want.patients))
	}
	if len(diffs) == 0 {
		return ""
	}
	return errors.Join(diffs...).Error()
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

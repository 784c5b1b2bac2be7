package audit

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hjbroker/hjbroker/broker/store"
)

// GenesisHash is the prev_hash of the first event: 32 zero bytes, in hex.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Migrations returns the audit tables, for store.Options.Migrations.
//
// audit_events keeps the chain: hash = SHA-256(prev_hash bytes || body), where body is the
// event's compact record (record.go) exactly as stored; the AuditEvent is rendered from it. audit_chain_head is a single row naming
// the last seq and hash; every append locks it, which keeps one linear chain however many
// broker nodes write, and lets Verify notice rows deleted from the end.
func Migrations() []store.Migration {
	return []store.Migration{{
		Version: 200,
		Name:    "audit trail",
		Statements: func(dialect string) []string {
			seq := "BIGINT PRIMARY KEY"
			if dialect == "sqlite" {
				seq = "INTEGER PRIMARY KEY" // the rowid: no second index
			}
			return []string{
				`CREATE TABLE audit_chain_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)`,
				`INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, '` + GenesisHash + `')`,
				`CREATE TABLE audit_events (
					seq ` + seq + `,
					recorded BIGINT NOT NULL,
					action TEXT NOT NULL,
					outcome TEXT NOT NULL,
					client TEXT NOT NULL,
					agency TEXT NOT NULL,
					body TEXT NOT NULL,
					prev_hash TEXT NOT NULL,
					hash TEXT NOT NULL)`,
				`CREATE INDEX audit_events_recorded ON audit_events (recorded)`,
				`CREATE INDEX audit_events_agency ON audit_events (agency, recorded)`,
				`CREATE INDEX audit_events_client ON audit_events (client, recorded)`,
				`CREATE TABLE audit_event_patients (seq BIGINT NOT NULL, patient TEXT NOT NULL, PRIMARY KEY (seq, patient))`,
				`CREATE INDEX audit_event_patients_patient ON audit_event_patients (patient, seq)`,
			}
		},
	}, {
		// The event's id, so GET AuditEvent/{id} finds it; filled in for events already stored.
		Version: 201,
		Name:    "audit event ids",
		Statements: func(dialect string) []string {
			backfill := `UPDATE audit_events SET event_id = json_extract(body, '$.id')`
			if dialect == "postgres" {
				backfill = `UPDATE audit_events SET event_id = body::json->>'id'`
			}
			return []string{
				`ALTER TABLE audit_events ADD COLUMN event_id TEXT NOT NULL DEFAULT ''`,
				backfill,
				`CREATE INDEX audit_events_event_id ON audit_events (event_id)`,
			}
		},
	}, {
		// The patient index keyed by bucket first (patientBucket), so that a flush writes
		// into the few pages of the current bucket rather than one random page per event.
		Version: 202,
		Name:    "audit patient index by bucket",
		Statements: func(dialect string) []string {
			table := `CREATE TABLE audit_patient_index (bucket BIGINT NOT NULL, patient TEXT NOT NULL, seq BIGINT NOT NULL,
				PRIMARY KEY (bucket, patient, seq))`
			if dialect == "sqlite" {
				table += ` WITHOUT ROWID` // the key is the row: one B-tree, not three
			}
			return []string{
				table,
				`INSERT INTO audit_patient_index (bucket, patient, seq)
					SELECT seq / ` + bucketSizeSQL + `, patient, seq FROM audit_event_patients`,
				`DROP TABLE audit_event_patients`,
			}
		},
	}}
}

// patientBucketSize is how many consecutive events share a bucket of the patient index. A
// flush of a few hundred read events touches only the pages of the current bucket (tens)
// instead of one random page of a large index per event, which was most of what auditing a
// read cost. A search by patient looks in every bucket, one index seek each: a thousand
// seeks per four million events.
const patientBucketSize = 4096

var bucketSizeSQL = strconv.Itoa(patientBucketSize)

func patientBucket(seq int64) int64 { return seq / patientBucketSize }

// Database is what the trail needs from the store; *store.SQL provides it.
type Database interface {
	DB() *sql.DB
	Rebind(q string) string
	Dialect() string
}

// Trail appends to, searches and verifies the audit trail.
type Trail struct {
	db     *sql.DB
	rebind func(string) string
	pg     bool

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // prepareStatements
}

// NewTrail returns the trail kept in db's database (migrated with Migrations).
func NewTrail(db Database) *Trail {
	return &Trail{db: db.DB(), rebind: db.Rebind, pg: db.Dialect() == "postgres"}
}

// prepared is an event rendered and ready to chain.
type prepared struct {
	body []byte
	idx  indexFields
}

// prepare renders e as its stored record with a fresh id. It runs in the caller's goroutine
// so the flusher only does database work.
func prepare(e Event) (prepared, error) {
	if err := e.check(); err != nil {
		return prepared{}, err
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	// Time-ordered ids (UUID version 7) keep the id index growing at its end, like seq.
	u, err := uuid.NewV7()
	if err != nil {
		return prepared{}, fmt.Errorf("audit: event id: %w", err)
	}
	id := u.String()
	body, err := encodeRecord(id, e)
	if err != nil {
		return prepared{}, err
	}
	idx := recordIndex(e)
	idx.id = id
	return prepared{body: body, idx: idx}, nil
}

// chainHash is SHA-256(prev || body) with prev decoded from hex.
func chainHash(prevHex string, body []byte) (string, error) {
	prev, err := hex.DecodeString(prevHex)
	if err != nil || len(prev) != sha256.Size {
		return "", fmt.Errorf("prev_hash %q is not a SHA-256 in hex", prevHex)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Append writes events to the chain in a transaction of its own.
func (t *Trail) Append(ctx context.Context, events ...Event) error {
	ps, err := prepareAll(events)
	if err != nil {
		return err
	}
	return t.appendPrepared(ctx, ps)
}

// AppendTx writes events in the caller's transaction, so they commit or roll back with the
// data. It locks the chain head until tx ends: call it last, just before Commit.
func (t *Trail) AppendTx(ctx context.Context, tx *sql.Tx, events ...Event) error {
	ps, err := prepareAll(events)
	if err != nil {
		return err
	}
	return t.appendTx(ctx, tx, ps)
}

func prepareAll(events []Event) ([]prepared, error) {
	ps := make([]prepared, 0, len(events))
	for _, e := range events {
		p, err := prepare(e)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (t *Trail) appendPrepared(ctx context.Context, ps []prepared) error {
	if len(ps) == 0 {
		return nil
	}
	t.prepareStatements(ctx)
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("audit: beginning transaction: %w", err)
	}
	if err := t.appendTx(ctx, tx, ps); err != nil {
		tx.Rollback() //nolint:errcheck
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: committing %d events: %w", len(ps), err)
	}
	return nil
}

type patientEntry struct {
	seq     int64
	patient string
}

// rowsPerInsert bounds a multi-row INSERT well under both backends' parameter limits.
const rowsPerInsert = 200

func insertEventsSQL(n int) string {
	return `INSERT INTO audit_events (seq, recorded, action, outcome, client, agency, event_id, body, prev_hash, hash) VALUES ` +
		strings.TrimSuffix(strings.Repeat(`(?,?,?,?,?,?,?,?,?,?),`, n), ",")
}

func insertPatientsSQL(n int) string {
	return `INSERT INTO audit_patient_index (bucket, patient, seq) VALUES ` + strings.TrimSuffix(strings.Repeat(`(?,?,?),`, n), ",")
}

// exec runs q in tx, through a statement prepared once when q is a full chunk and the trail
// has prepared them (prepareStatements).
func (t *Trail) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	t.mu.Lock()
	st := t.stmts[q]
	t.mu.Unlock()
	if st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, t.rebind(q), args...)
}

// prepareStatements prepares the full-chunk INSERTs on SQLite, whose parsing of them again
// for every chunk cost a tenth of a flush; PostgreSQL's driver caches statements itself. It
// must run outside a transaction: SQLite's writer pool has one connection, which a
// transaction holds.
func (t *Trail) prepareStatements(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pg || t.stmts != nil {
		return
	}
	stmts := map[string]*sql.Stmt{}
	for _, q := range []string{insertEventsSQL(rowsPerInsert), insertPatientsSQL(rowsPerInsert)} {
		st, err := t.db.PrepareContext(ctx, q)
		if err != nil {
			return // tried again at the next flush; meanwhile statements are parsed each time
		}
		stmts[q] = st
	}
	t.stmts = stmts
}

func (t *Trail) appendTx(ctx context.Context, tx *sql.Tx, ps []prepared) error {
	if len(ps) == 0 {
		return nil
	}
	// The row lock orders appenders on PostgreSQL (a waiter re-reads the committed head);
	// SQLite write transactions are already exclusive (BEGIN IMMEDIATE).
	q := `SELECT seq, hash FROM audit_chain_head WHERE id = 1`
	if t.pg {
		q += ` FOR UPDATE`
	}
	var seq int64
	var prev string
	if err := tx.QueryRowContext(ctx, q).Scan(&seq, &prev); err != nil {
		return fmt.Errorf("audit: locking chain head: %w", err)
	}
	type row struct {
		seq        int64
		prev, hash string
		p          prepared
	}
	rows := make([]row, len(ps))
	for i, p := range ps {
		h, err := chainHash(prev, p.body)
		if err != nil {
			return fmt.Errorf("audit: chain head: %w", err)
		}
		seq++
		rows[i] = row{seq, prev, h, p}
		prev = h
	}
	var patients []patientEntry
	for start := 0; start < len(rows); start += rowsPerInsert {
		chunk := rows[start:min(start+rowsPerInsert, len(rows))]
		args := make([]any, 0, len(chunk)*10)
		for _, r := range chunk {
			args = append(args, r.seq, r.p.idx.recorded, r.p.idx.action, r.p.idx.outcome, r.p.idx.client, r.p.idx.agency,
				r.p.idx.id, string(r.p.body), r.prev, r.hash)
			for _, pt := range r.p.idx.patients {
				patients = append(patients, patientEntry{r.seq, pt})
			}
		}
		if _, err := t.exec(ctx, tx, insertEventsSQL(len(chunk)), args...); err != nil {
			return fmt.Errorf("audit: inserting events: %w", err)
		}
	}
	// In key order, so each insert lands beside the one before.
	slices.SortFunc(patients, func(a, b patientEntry) int {
		if c := cmp.Compare(patientBucket(a.seq), patientBucket(b.seq)); c != 0 {
			return c
		}
		if c := strings.Compare(a.patient, b.patient); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for start := 0; start < len(patients); start += rowsPerInsert {
		chunk := patients[start:min(start+rowsPerInsert, len(patients))]
		args := make([]any, 0, 3*len(chunk))
		for _, p := range chunk {
			args = append(args, patientBucket(p.seq), p.patient, p.seq)
		}
		if _, err := t.exec(ctx, tx, insertPatientsSQL(len(chunk)), args...); err != nil {
			return fmt.Errorf("audit: indexing patients: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, t.rebind(`UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1`), seq, prev); err != nil {
		return fmt.Errorf("audit: moving chain head: %w", err)
	}
	return nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// SQL is the store over database/sql, for SQLite and PostgreSQL.
type SQL struct {
	d dialect
	// w takes write transactions; r serves reads. For SQLite w has a single connection (SQLite
	// has one writer at a time) and r a pool of read connections over WAL. For PostgreSQL they
	// are the same pool.
	w, r *sql.DB
	// pages keeps saved searches. For PostgreSQL it is w. For SQLite it is a database file of
	// its own: a search saved while a write transaction is open (the search entry of a
	// transaction Bundle) would otherwise wait for the single writer that transaction holds.
	pages *sql.DB
	// ckpt is the embedded store's checkpointing connection (checkpointer); nil on PostgreSQL.
	ckpt               *sql.DB
	ckptStop, ckptDone chan struct{}
	ckptOnce           sync.Once // Close may be called more than once
	// readCurrent is the read by id, prepared once: parsing the SQL again for every read
	// costs as much as running it.
	readCurrent *sql.Stmt
	// cache serves reads by id on the embedded store; nil on PostgreSQL, whose other nodes
	// write without telling this one, and when Options.ReadCacheBytes is 0.
	cache *readCache
	// lock is the embedded store's data directory lock, held while the cache is in use.
	lock *flock.Flock
	// wstmts are the writer's statements of fixed text, prepared once on SQLite's single
	// write connection: parsing them again for every row cost a seventh of a Bundle's write.
	// PostgreSQL's driver keeps its own statement cache.
	wstmts map[string]*sql.Stmt
}

// writerStmt returns q prepared on the SQLite writer when it is one of writerStatements,
// else nil (the caller runs q directly).
func (s *SQL) writerStmt(q string) *sql.Stmt {
	return s.wstmts[q]
}

// writerStatements are the statements a write transaction runs once per resource or per
// full chunk of index rows.
func writerStatements() []string {
	qs := []string{insertVersionSQL, insertResourceSQL, updateResourceSQL}
	for _, tbl := range indexTables {
		qs = append(qs, `DELETE FROM `+tbl+` WHERE rid = ?`, indexInsertSQL(tbl, indexChunk))
	}
	return qs
}

// prepareWriter prepares writerStatements before any transaction holds the single writer
// connection (preparing on the pool inside one would wait for it forever).
func (s *SQL) prepareWriter(ctx context.Context) error {
	s.wstmts = map[string]*sql.Stmt{}
	for _, q := range writerStatements() {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("preparing %.60s: %w", q, err)
		}
		s.wstmts[q] = st
	}
	return nil
}

// Options tune a store.
type Options struct {
	// MaxConns bounds the connection pool (PostgreSQL) or the read pool (SQLite).
	MaxConns int
	// Migrations are other packages' schema steps (audit, auth, outbox), applied after the
	// core schema.
	Migrations []Migration
	// ReadCacheBytes sizes the embedded store's cache of current versions (0: none; PostgreSQL
	// has none, its other nodes write without telling this one). A store opened with a cache
	// takes its database's lock file, so that no other process writing resources can leave
	// the cache stale: a second one fails to open.
	ReadCacheBytes int64
}

// Open opens the store named by url: a postgres:// or postgresql:// URL selects PostgreSQL;
// otherwise dataDir holds the embedded SQLite database. The schema is migrated before return.
func Open(ctx context.Context, storeURL, dataDir string, opts Options) (*SQL, error) {
	pg := strings.HasPrefix(storeURL, "postgres://") || strings.HasPrefix(storeURL, "postgresql://")
	if opts.MaxConns <= 0 {
		// Each SQLite read connection keeps its own page cache outside the Go heap, and reads
		// are CPU-bound: two per core serve as many requests as sixteen, in far less memory.
		opts.MaxConns = 2 * runtime.GOMAXPROCS(0)
		if pg {
			opts.MaxConns = 16
		}
	}
	var s *SQL
	var err error
	if strings.HasPrefix(storeURL, "postgres://") || strings.HasPrefix(storeURL, "postgresql://") {
		s, err = openPostgres(storeURL, opts)
	} else if storeURL != "" && !strings.HasPrefix(storeURL, "sqlite:") {
		return nil, fmt.Errorf("store URL %q: want postgres://... or empty for the embedded store", redact(storeURL))
	} else {
		path := strings.TrimPrefix(storeURL, "sqlite:")
		if path == "" {
			path = filepath.Join(dataDir, SQLiteFile)
		}
		s, err = openSQLite(path, opts)
		if err == nil && opts.ReadCacheBytes > 0 {
			if err = s.lockDatabase(path); err != nil {
				s.Close()
				return nil, err
			}
			s.cache = newReadCache(opts.ReadCacheBytes)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := migrate(ctx, s.w, s.d, opts.Migrations); err != nil {
		s.Close()
		return nil, err
	}
	stmt, err := s.r.PrepareContext(ctx, s.d.rebind(currentSelect+` WHERE r.res_type = ? AND r.res_id = ?`))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("preparing the read by id: %w", err)
	}
	s.readCurrent = stmt
	if s.d.name == "sqlite" {
		if err := s.prepareWriter(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	return p.Redacted()
}

// ErrLocked is returned when another process holds the embedded store's lock.
var ErrLocked = errors.New("the embedded store is in use by another broker process")

// lockDatabase takes path's lock file ("x.db" is locked by "x.db.lock") without waiting. The
// operating system releases it when the process ends, however it ends.
func (s *SQL) lockDatabase(path string) error {
	l := flock.New(path + ".lock")
	ok, err := l.TryLock()
	if err != nil {
		return fmt.Errorf("locking %s: %w", path, err)
	}
	if !ok {
		return fmt.Errorf("%w (%s is locked; stop the other broker or give this one its own --data-dir)", ErrLocked, l.Path())
	}
	s.lock = l
	return nil
}

// SQLiteFile is the embedded store's database file in its data directory.
const SQLiteFile = "hjbroker.db"

func openSQLite(path string, opts Options) (*SQL, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	// synchronous(FULL) makes every commit durable before the response is sent.
	common := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=cache_size(-32768)"
	// The writer does not checkpoint: copying WAL frames into the database inside a commit
	// made every thousandth write wait for it. The checkpointer does it in the background.
	w, err := sql.Open("sqlite", "file:"+path+"?"+common+"&_txlock=immediate&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", "file:"+path+"?"+common+"&_pragma=query_only(true)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	r.SetMaxOpenConns(opts.MaxConns)
	r.SetMaxIdleConns(opts.MaxConns)
	r.SetConnMaxIdleTime(0)
	// The writer must create the file and switch to WAL before readers attach.
	if _, err := w.Exec("SELECT 1"); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	pages, err := openSQLitePages(path)
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	ck, err := sql.Open("sqlite", "file:"+path+"?"+common+"&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		w.Close()
		r.Close()
		pages.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetConnMaxIdleTime(0)
	s := &SQL{d: sqliteDialect, w: w, r: r, pages: pages, ckpt: ck, ckptStop: make(chan struct{}), ckptDone: make(chan struct{})}
	go s.checkpointer()
	return s, nil
}

// checkpointInterval is how often the checkpointer copies committed WAL frames into the
// database file. At 2,500 resources/s the WAL grows by about 3 MB in that time; checkpoints
// much further apart made the writer's own WAL syncs wait behind larger ones.
const checkpointInterval = 100 * time.Millisecond

// checkpointer runs passive checkpoints on a connection of its own until Close. A passive
// checkpoint waits for nobody: readers and the writer go on while it copies frames, and
// SQLite starts the WAL again from the top once a checkpoint has copied it all.
func (s *SQL) checkpointer() {
	defer close(s.ckptDone)
	tick := time.NewTicker(checkpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.ckptStop:
			return
		case <-tick.C:
			// A failure (the database busy or gone) is retried at the next tick; the WAL
			// only grows meanwhile.
			s.ckpt.Exec(`PRAGMA wal_checkpoint(PASSIVE)`) //nolint:errcheck
		}
	}
}

// openSQLitePages opens the saved-search database beside the main one ("x.db" keeps them in
// "x-pages.db"). Saved searches expire within minutes, so it needs no migrations and no
// synchronous commits; one connection serialises its writers.
func openSQLitePages(path string) (*sql.DB, error) {
	ext := filepath.Ext(path)
	pagesPath := strings.TrimSuffix(path, ext) + "-pages" + ext
	db, err := sql.Open("sqlite", "file:"+pagesPath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", pagesPath, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	for _, stmt := range savedSearchSchema(sqliteDialect) {
		if _, err := db.Exec(stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("preparing %s: %w", pagesPath, err)
		}
	}
	return db, nil
}

func openPostgres(u string, opts Options) (*SQL, error) {
	db, err := sql.Open("pgx", u)
	if err != nil {
		return nil, fmt.Errorf("opening PostgreSQL %s: %w", redact(u), err)
	}
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	return &SQL{d: postgresDialect, w: db, r: db, pages: db}, nil
}

// Backend names the backend.
func (s *SQL) Backend() string { return s.d.name }

// Ping checks that the database answers.
func (s *SQL) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("%s store unreachable: %w", s.d.name, err)
	}
	return nil
}

// Close closes the pools.
func (s *SQL) Close() error {
	if s.readCurrent != nil {
		s.readCurrent.Close()
	}
	for _, st := range s.wstmts {
		st.Close()
	}
	if s.ckpt != nil {
		s.ckptOnce.Do(func() {
			close(s.ckptStop)
			<-s.ckptDone
			s.ckpt.Close()
		})
	}
	err := s.w.Close()
	for _, db := range []*sql.DB{s.r, s.pages} {
		if db != s.w {
			if e := db.Close(); err == nil {
				err = e
			}
		}
	}
	if s.lock != nil {
		if e := s.lock.Unlock(); err == nil {
			err = e
		}
	}
	return err
}

// DB exposes the write pool to packages that keep their own tables in the same database and
// transaction (outbox, audit).
func (s *SQL) DB() *sql.DB { return s.w }

// Dialect names the SQL dialect ("sqlite" or "postgres").
func (s *SQL) Dialect() string { return s.d.name }

// queryer is what *sql.DB and *sql.Tx share.
type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

const currentSelect = `SELECT r.rid, r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.method, v.body
	FROM resources r JOIN resource_versions v ON v.seq = r.seq`

func scanResource(row interface{ Scan(...any) error }) (*Resource, int64, error) {
	var res Resource
	var rid, lu int64
	if err := row.Scan(&rid, &res.Type, &res.ID, &res.Version, &lu, &res.Deleted, &res.Method, &res.Body); err != nil {
		return nil, 0, err
	}
	res.LastUpdated = time.UnixMicro(lu).UTC()
	return &res, rid, nil
}

func current(ctx context.Context, q queryer, d dialect, typ, id, suffix string) (*Resource, error) {
	row := q.QueryRowContext(ctx, d.rebind(currentSelect+` WHERE r.res_type = ? AND r.res_id = ?`+suffix), typ, id)
	res, _, err := scanResource(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", typ, id, err)
	}
	return res, nil
}

// Current returns the current version of a resource.
func (s *SQL) Current(ctx context.Context, typ, id string) (*Resource, error) {
	if s.readCurrent == nil {
		return current(ctx, s.r, s.d, typ, id, "")
	}
	var gen uint64
	if s.cache != nil {
		if res, ok := s.cache.get(typ, id); ok {
			return res, nil
		}
		gen = s.cache.generation()
	}
	res, _, err := scanResource(s.readCurrent.QueryRowContext(ctx, typ, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", typ, id, err)
	}
	if s.cache != nil {
		s.cache.put(res, gen)
	}
	return res, nil
}

// VRead returns one version.
func (s *SQL) VRead(ctx context.Context, typ, id string, version int64) (*Resource, error) {
	row := s.r.QueryRowContext(ctx, s.d.rebind(`SELECT seq, res_type, res_id, version, last_updated, deleted, method, body
		FROM resource_versions WHERE res_type = ? AND res_id = ? AND version = ?`), typ, id, version)
	res, _, err := scanResource(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s/_history/%d: %w", typ, id, version, err)
	}
	return res, nil
}

// History returns versions newest first.
func (s *SQL) History(ctx context.Context, q HistoryQuery) (*HistoryPage, error) {
	var where []string
	var args []any
	if q.Type != "" {
		where = append(where, "res_type = ?")
		args = append(args, q.Type)
	}
	if q.ID != "" {
		where = append(where, "res_id = ?")
		args = append(args, q.ID)
	}
	if !q.Since.IsZero() {
		where = append(where, "last_updated >= ?")
		args = append(args, q.Since.UnixMicro())
	}
	if !q.At.IsZero() {
		// The version current at At: recorded by then, and no later version recorded by then.
		at := q.At.UnixMicro()
		where = append(where, "last_updated <= ?", `NOT EXISTS (SELECT 1 FROM resource_versions n
			WHERE n.res_type = v.res_type AND n.res_id = v.res_id AND n.version > v.version AND n.last_updated <= ?)`)
		args = append(args, at, at)
	}
	snapshot := q.Before
	if snapshot == 0 {
		if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM resource_versions`).Scan(&snapshot); err != nil {
			return nil, fmt.Errorf("reading history: %w", err)
		}
	}
	where = append(where, "seq <= ?")
	args = append(args, snapshot)
	cond := " WHERE " + strings.Join(where, " AND ")
	page := &HistoryPage{Snapshot: snapshot}
	if err := s.r.QueryRowContext(ctx, s.d.rebind(`SELECT COUNT(*) FROM resource_versions v`+cond), args...).Scan(&page.Total); err != nil {
		return nil, fmt.Errorf("counting history: %w", err)
	}
	if q.Count <= 0 {
		return page, nil
	}
	// A page continues from a sequence number (keyset), not from a position: a version
	// committed late with a lower number than one already shown cannot shift later pages.
	pageCond, pageArgs, order := cond, slices.Clone(args), "DESC"
	if q.Below > 0 {
		pageCond += " AND seq < ?"
		pageArgs = append(pageArgs, q.Below)
	}
	if q.Above > 0 {
		pageCond += " AND seq > ?"
		pageArgs = append(pageArgs, q.Above)
		if q.Below == 0 {
			order = "ASC" // the page just newer than Above: read upwards, returned newest first
		}
	}
	// One row more than asked says whether there are more in the paging direction.
	rows, err := s.r.QueryContext(ctx, s.d.rebind(`SELECT seq, res_type, res_id, version, last_updated, deleted, method, body
		FROM resource_versions v`+pageCond+` ORDER BY seq `+order+` LIMIT ? OFFSET ?`), append(pageArgs, q.Count+1, q.Offset)...)
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	defer rows.Close()
	var seqs []int64
	for rows.Next() {
		res, seq, err := scanResource(rows)
		if err != nil {
			return nil, fmt.Errorf("reading history: %w", err)
		}
		page.Entries = append(page.Entries, res)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	more := len(page.Entries) > q.Count
	if more {
		page.Entries, seqs = page.Entries[:q.Count], seqs[:q.Count]
	}
	if order == "ASC" {
		slices.Reverse(page.Entries)
		slices.Reverse(seqs)
	}
	if len(seqs) == 0 {
		return page, nil
	}
	page.First, page.Last = seqs[0], seqs[len(seqs)-1]
	// The other direction: is anything within the snapshot newer than the first entry (older
	// than the last, when paging upwards)?
	other, otherArg := " AND seq > ?", page.First
	if order == "ASC" {
		page.Newer = more
		other, otherArg = " AND seq < ?", page.Last
	} else {
		page.Older = more
	}
	var found bool
	if err := s.r.QueryRowContext(ctx, s.d.rebind(`SELECT EXISTS (SELECT 1 FROM resource_versions v`+cond+other+`)`),
		append(slices.Clone(args), otherArg)...).Scan(&found); err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	if order == "ASC" {
		page.Older = found
	} else {
		page.Newer = found
	}
	return page, nil
}

// Update runs fn in a write transaction, retrying when a concurrent writer won a race.
func (s *SQL) Update(ctx context.Context, fn func(tx Tx) error) error {
	const attempts = 8
	for attempt := 1; ; attempt++ {
		err := s.update(ctx, fn)
		if err == nil {
			return nil
		}
		if attempt < attempts && (errors.Is(err, ErrRetry) || s.d.isConflict(err)) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt*attempt) * time.Millisecond):
			}
			continue
		}
		if s.d.isConflict(err) {
			return fmt.Errorf("%w: %v", ErrRetry, err)
		}
		return err
	}
}

func (s *SQL) update(ctx context.Context, fn func(tx Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting transaction: %w", err)
	}
	// A no-op after Commit. If fn panics it ends the transaction, which would otherwise hold
	// its locks (on SQLite, the only writer) until ctx ends, perhaps never.
	defer tx.Rollback() //nolint:errcheck
	t := &sqlTx{s: s, tx: tx}
	if s.cache != nil {
		// Deferred after Rollback, so it runs once the transaction has ended either way.
		defer func() {
			if len(t.wrote) > 0 {
				s.cache.invalidate(t.wrote)
			}
		}()
	}
	if err := fn(t); err != nil {
		return err
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

type sqlTx struct {
	s  *SQL
	tx *sql.Tx
	// wrote names the resources Put in the transaction, for the read cache.
	wrote []Key
	// index holds the index rows of the transaction's Puts until something could read them
	// (a search, another package's statement, a later version's delete, the commit): a
	// Bundle's rows then go in a few large INSERTs instead of several per resource.
	index batchInsert
	// err is a failed flush of index rows where no error could be returned (SQLTx); the
	// transaction then fails.
	err error
}

// flush writes the pending index rows.
func (t *sqlTx) flush(ctx context.Context) error {
	if t.err != nil {
		return t.err
	}
	if err := t.index.flush(ctx, t); err != nil {
		t.err = err
		return err
	}
	return nil
}

// Current reads the current version and, on PostgreSQL, locks the row until commit.
func (t *sqlTx) Current(ctx context.Context, typ, id string) (*Resource, error) {
	if t.s.d.forUpdate != "" {
		// Lock the resources row on its own first. Locking it through the join to its version
		// would, when a concurrent writer commits a new version while this one waits, re-check
		// the join against the old version row and find nothing: an existing resource would
		// read as not found. The read below is a new statement, so it sees that commit.
		var rid int64
		err := t.tx.QueryRowContext(ctx, t.s.d.rebind(`SELECT rid FROM resources WHERE res_type = ? AND res_id = ?`+t.s.d.forUpdate), typ, id).Scan(&rid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("locking %s/%s: %w", typ, id, err)
		}
	}
	return current(ctx, t.tx, t.s.d, typ, id, "")
}

// Lock takes a transaction-scoped lock on key. SQLite needs none: it has one writer at a time.
func (t *sqlTx) Lock(ctx context.Context, key string) error {
	if !t.s.d.dollar {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	if _, err := t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
		return fmt.Errorf("locking %q: %w", key, err)
	}
	return nil
}

// Put stores a new version and replaces the index rows.
func (t *sqlTx) Put(ctx context.Context, w *Write) error {
	d := t.s.d
	if t.s.cache != nil {
		t.wrote = append(t.wrote, Key{Type: w.Type, ID: w.ID})
	}
	var body any = w.Body
	if w.Deleted {
		body = nil
	}
	var seq int64
	err := t.queryRow(ctx, insertVersionSQL, w.Type, w.ID, w.Version, w.LastUpdated.UnixMicro(), w.Deleted, w.Method, body).Scan(&seq)
	if err != nil {
		if d.isConflict(err) {
			return ErrRetry
		}
		return fmt.Errorf("storing %s/%s version %d: %w", w.Type, w.ID, w.Version, err)
	}
	var rid int64
	if w.Version == 1 {
		err = t.queryRow(ctx, insertResourceSQL, w.Type, w.ID, w.Version, seq, w.LastUpdated.UnixMicro(), w.Deleted).Scan(&rid)
	} else {
		err = t.queryRow(ctx, updateResourceSQL, w.Version, seq, w.LastUpdated.UnixMicro(), w.Deleted, w.Type, w.ID, w.Version-1).Scan(&rid)
	}
	if errors.Is(err, sql.ErrNoRows) || (err != nil && d.isConflict(err)) {
		return ErrRetry
	}
	if err != nil {
		return fmt.Errorf("storing %s/%s: %w", w.Type, w.ID, err)
	}
	if w.Version > 1 {
		// The rows of a version written earlier in this transaction go too.
		if err := t.flush(ctx); err != nil {
			return err
		}
		for _, tbl := range indexTables {
			if _, err := t.exec(ctx, `DELETE FROM `+tbl+` WHERE rid = ?`, rid); err != nil {
				return fmt.Errorf("clearing index of %s/%s: %w", w.Type, w.ID, err)
			}
		}
	}
	if w.Deleted {
		return nil
	}
	t.addIndex(rid, w.Type, &w.Index)
	return nil
}

const (
	insertVersionSQL = `INSERT INTO resource_versions (res_type, res_id, version, last_updated, deleted, method, body)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq`
	insertResourceSQL = `INSERT INTO resources (res_type, res_id, version, seq, last_updated, deleted)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING rid`
	updateResourceSQL = `UPDATE resources SET version = ?, seq = ?, last_updated = ?, deleted = ?
		WHERE res_type = ? AND res_id = ? AND version = ? RETURNING rid`
)

// queryRow runs a statement of fixed text through the writer's prepared statements.
func (t *sqlTx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.s.writerStmt(q); st != nil {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, t.s.d.rebind(q), args...)
}

func (t *sqlTx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.s.writerStmt(q); st != nil {
		return t.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, t.s.d.rebind(q), args...)
}

var indexTables = []string{"idx_token", "idx_string", "idx_date", "idx_ref", "idx_number", "idx_uri"}

// addIndex queues a resource's index rows for the next flush.
func (t *sqlTx) addIndex(rid int64, typ string, ix *Index) {
	ins := &t.index
	for _, r := range ix.Tokens {
		ins.add("idx_token", rid, typ, r.Param, r.System, r.Code, r.Text)
	}
	for _, r := range ix.Strings {
		ins.add("idx_string", rid, typ, r.Param, r.Norm, r.Exact)
	}
	for _, r := range ix.Dates {
		ins.add("idx_date", rid, typ, r.Param, r.Lo, r.Hi)
	}
	for _, r := range ix.Refs {
		ins.add("idx_ref", rid, typ, r.Param, r.TargetType, r.TargetID, r.URL)
	}
	for _, r := range ix.Numbers {
		ins.add("idx_number", rid, typ, r.Param, r.Value, r.System, r.Code, r.Unit)
	}
	for _, r := range ix.URIs {
		ins.add("idx_uri", rid, typ, r.Param, r.URI)
	}
}

// indexColumns are each index table's own columns, after rid, res_type and param.
var indexColumns = map[string][]string{
	"idx_token":  {"system", "code", "text"},
	"idx_string": {"norm", "exact"},
	"idx_date":   {"lo", "hi"},
	"idx_ref":    {"target_type", "target_id", "url"},
	"idx_number": {"value", "system", "code", "unit"},
	"idx_uri":    {"uri"},
}

// indexInsertSQL inserts n rows into an index table.
func indexInsertSQL(table string, n int) string {
	cols := indexColumns[table]
	ph := "(" + strings.TrimSuffix(strings.Repeat("?,", 3+len(cols)), ",") + ")"
	return "INSERT INTO " + table + " (rid, res_type, param, " + strings.Join(cols, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat(ph+",", n), ",")
}

// batchInsert groups rows per table into multi-row INSERT statements.
type batchInsert struct {
	tables []string
	width  map[string]int
	args   map[string][]any // rows of each table, flattened
}

// add queues one row: rid, res_type, param and the table's indexColumns.
func (b *batchInsert) add(table string, vals ...any) {
	if b.args == nil {
		b.args, b.width = map[string][]any{}, map[string]int{}
	}
	if _, ok := b.width[table]; !ok {
		b.tables = append(b.tables, table)
		b.width[table] = len(vals)
	}
	b.args[table] = append(b.args[table], vals...)
}

// indexChunk is the row count of full multi-row INSERTs, under SQLite's 32,766 and
// PostgreSQL's 65,535 parameters at the widest table (7 columns). Full chunks reuse one
// prepared statement; the remainder of each table is prepared on its own.
const indexChunk = 256

func (b *batchInsert) flush(ctx context.Context, t *sqlTx) error {
	for _, table := range b.tables {
		args, width := b.args[table], b.width[table]
		for len(args) > 0 {
			n := min(len(args)/width, indexChunk)
			chunk := args[:n*width]
			args = args[n*width:]
			if _, err := t.exec(ctx, indexInsertSQL(table, n), chunk...); err != nil {
				return fmt.Errorf("indexing into %s: %w", table, err)
			}
		}
	}
	*b = batchInsert{}
	return nil
}

// SaveSearch keeps the full result list of a search so later pages are served from it and
// stay consistent while writes happen.
func (s *SQL) SaveSearch(ctx context.Context, id string, keys []int64, total int, expires time.Time) error {
	buf := make([]byte, 0, len(keys)*8)
	for _, k := range keys {
		buf = strconv.AppendInt(buf, k, 36)
		buf = append(buf, ',')
	}
	if _, err := s.pages.ExecContext(ctx, s.d.rebind(`DELETE FROM saved_searches WHERE expires < ?`), time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("expiring saved searches: %w", err)
	}
	if _, err := s.pages.ExecContext(ctx, s.d.rebind(`INSERT INTO saved_searches (id, total, expires, keys) VALUES (?, ?, ?, ?)`),
		id, total, expires.UnixMicro(), buf); err != nil {
		return fmt.Errorf("saving search: %w", err)
	}
	return nil
}

// LoadSearch returns the current versions of a slice of a saved result list. Resources deleted
// since the search ran are left out of the page.
func (s *SQL) LoadSearch(ctx context.Context, id string, offset, count int) ([]*Resource, int, int, error) {
	var buf []byte
	var total int
	var expires int64
	err := s.pages.QueryRowContext(ctx, s.d.rebind(`SELECT total, expires, keys FROM saved_searches WHERE id = ?`), id).Scan(&total, &expires, &buf)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && expires < time.Now().UnixMicro()) {
		return nil, 0, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("loading saved search: %w", err)
	}
	if len(buf) == 0 {
		return nil, total, 0, nil
	}
	fields := strings.Split(strings.TrimSuffix(string(buf), ","), ",")
	saved := len(fields)
	if offset >= saved {
		return nil, total, saved, nil
	}
	fields = fields[offset:min(len(fields), offset+count)]
	rids := make([]int64, 0, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseInt(f, 36, 64)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("saved search %s is corrupt", id)
		}
		rids = append(rids, n)
	}
	res, err := s.byRID(ctx, s.r, rids)
	return res, total, saved, err
}

// byRID loads current versions by internal key, in the order given, skipping deletions.
func (s *SQL) byRID(ctx context.Context, q queryer, rids []int64) ([]*Resource, error) {
	if len(rids) == 0 {
		return nil, nil
	}
	args := make([]any, len(rids))
	for i, r := range rids {
		args[i] = r
	}
	rows, err := q.QueryContext(ctx, s.d.rebind(currentSelect+` WHERE r.rid IN (`+strings.TrimSuffix(strings.Repeat("?,", len(rids)), ",")+`)`), args...)
	if err != nil {
		return nil, fmt.Errorf("loading resources: %w", err)
	}
	defer rows.Close()
	found := make(map[int64]*Resource, len(rids))
	for rows.Next() {
		res, rid, err := scanResource(rows)
		if err != nil {
			return nil, fmt.Errorf("loading resources: %w", err)
		}
		found[rid] = res
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*Resource, 0, len(rids))
	for _, r := range rids {
		if res, ok := found[r]; ok && !res.Deleted {
			out = append(out, res)
		}
	}
	return out, nil
}

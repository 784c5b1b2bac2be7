// Package store keeps resource versions, their search index rows and (later) outbox and audit
// rows. One SQL implementation serves both backends: embedded SQLite (pure Go, no cgo) and
// PostgreSQL; they differ only in a small dialect.
package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/hjbroker/hjbroker/broker/search"
)

// Errors the interaction engine maps to HTTP statuses.
var (
	// ErrNotFound: no resource with that type and id (or version) was ever stored.
	ErrNotFound = errors.New("not found")
	// ErrRetry: a concurrent writer won a race; the whole transaction may be run again.
	ErrRetry = errors.New("concurrent write, retry")
)

// Resource is one stored version of a resource.
type Resource struct {
	Type        string
	ID          string
	Version     int64
	LastUpdated time.Time
	Deleted     bool
	// Method is the interaction that produced the version: POST, PUT, PATCH or DELETE.
	Method string
	// Body is the resource JSON as served, with meta.versionId and meta.lastUpdated set;
	// empty for a deletion.
	Body []byte
}

// Key names a resource.
type Key struct {
	Type string
	ID   string
}

// Write is one new version to store together with its search index rows.
type Write struct {
	Type        string
	ID          string
	Version     int64
	LastUpdated time.Time
	Method      string
	Deleted     bool
	Body        []byte
	Index       Index
}

// Index holds the search index rows of one resource version, grouped by value kind.
type Index struct {
	Tokens  []TokenRow
	Strings []StringRow
	Dates   []DateRow
	Refs    []RefRow
	Numbers []NumberRow
	URIs    []URIRow
}

// TokenRow indexes a code, an identifier, a boolean or an id. Text holds the normalised
// display/text used by the :text modifier.
type TokenRow struct {
	Param  string
	System string
	Code   string
	Text   string
}

// StringRow indexes a string: Norm is the case- and accent-folded form used by the default and
// :contains searches, Exact the value as written (:exact).
type StringRow struct {
	Param string
	Norm  string
	Exact string
}

// DateRow indexes a date, dateTime, instant or Period as the half-open range [Lo, Hi) in unix
// microseconds (UTC).
type DateRow struct {
	Param string
	Lo    int64
	Hi    int64
}

// RefRow indexes a reference: a local one by target type and id, an absolute or canonical one
// by URL.
type RefRow struct {
	Param      string
	TargetType string
	TargetID   string
	URL        string
}

// NumberRow indexes a number or a quantity.
type NumberRow struct {
	Param  string
	Value  float64
	System string
	Code   string
	Unit   string
}

// URIRow indexes a uri, url or canonical.
type URIRow struct {
	Param string
	URI   string
}

// HistoryQuery selects versions for instance, type or system history.
type HistoryQuery struct {
	Type  string // empty for system history
	ID    string // empty for type or system history
	Since time.Time
	// At, when set, keeps only the version of each resource that was current at that
	// instant: the last one recorded at or before it (a deletion, when the resource was
	// deleted then). An instance history with At is the resource as it stood at At.
	At time.Time
	// Before bounds the result to versions with sequence numbers at most Before so that paging
	// stays stable while writes happen; zero means no bound.
	Before int64
	// Below and Above page by sequence number: the page holds the Count versions just below
	// Below (the Last of the page before: the next page) or, with Above alone, just above
	// Above (the First of the page after: the previous page). A version that commits late,
	// with a lower sequence number than one already shown, cannot shift such pages as it
	// shifts Offset ones. Zero means no bound.
	Below, Above int64
	Offset       int
	Count        int
}

// HistoryPage is a page of history, newest first.
type HistoryPage struct {
	Entries []*Resource
	// Total counts the whole history within the snapshot, not the page's bounds.
	Total int
	// Snapshot is the highest sequence number included; pass it back as Before for later pages.
	Snapshot int64
	// First and Last are the sequence numbers of the first and last entry (zero when there
	// are none): pass Last as Below for the next page, First as Above for the previous one.
	First, Last int64
	// Newer and Older say whether the snapshot holds versions newer than First or older
	// than Last (in the query's bounds other than Below and Above).
	Newer, Older bool
}

// Reader is what both a transaction and the store itself can answer.
type Reader interface {
	// Current returns the current version, which may be a deletion (Deleted true).
	Current(ctx context.Context, typ, id string) (*Resource, error)
	// Search runs a parsed search against current, non-deleted resources.
	Search(ctx context.Context, q *search.Query, o SearchOptions) (*SearchPage, error)
}

// Tx is a write transaction: everything in it commits or nothing does.
type Tx interface {
	Reader
	// Put stores a new version and replaces the resource's search index rows.
	Put(ctx context.Context, w *Write) error
	// Lock serialises transactions that use the same key until they commit; conditional
	// creates lock on their type and canonical criteria so two racing ones create one resource.
	Lock(ctx context.Context, key string) error
	// Exec runs a statement of another package's tables (outbox, audit) inside the
	// transaction, so its rows commit or roll back with the resources. Placeholders are "?".
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	// SQLTx exposes the transaction to packages that need several statements in it.
	SQLTx() *sql.Tx
	// Dialect names the SQL dialect ("sqlite" or "postgres").
	Dialect() string
}

// Store is a resource store backend.
type Store interface {
	Reader
	VRead(ctx context.Context, typ, id string, version int64) (*Resource, error)
	History(ctx context.Context, q HistoryQuery) (*HistoryPage, error)
	// Update runs fn in one write transaction, running it again when it returns ErrRetry
	// because a concurrent transaction won a race.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// SaveSearch keeps a result list for paging; LoadSearch returns a slice of it, the total
	// saved with it and how many ids the list holds.
	SaveSearch(ctx context.Context, id string, rids []int64, total int, expires time.Time) error
	LoadSearch(ctx context.Context, id string, offset, count int) (res []*Resource, total, saved int, err error)
	// Referenced returns the current resources that the resources from refer to through the
	// reference parameter param ("" for any), optionally only those of targetType.
	Referenced(ctx context.Context, from []int64, param, targetType string) ([]*Resource, []int64, error)
	// Referencing returns the current resources of srcType ("" for any) that refer to one of to
	// through param ("" for any).
	Referencing(ctx context.Context, to []Key, srcType, param string) ([]*Resource, []int64, error)
	// ByRIDs loads current versions by internal key in the order given, leaving out deleted
	// resources, and returns the keys of those it loaded.
	ByRIDs(ctx context.Context, rids []int64) ([]*Resource, []int64, error)
	Ping(ctx context.Context) error
	Close() error
	// Backend names the backend ("sqlite" or "postgres") for metrics and the CapabilityStatement.
	Backend() string
}

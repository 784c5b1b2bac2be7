package store

import (
	"sync"
	"sync/atomic"

	"github.com/maypok86/otter/v2"
)

// DefaultReadCacheBytes is the embedded store's read cache when Options.ReadCacheBytes is 0.
const DefaultReadCacheBytes = 64 << 20

// maxCachedBody keeps large resources (attachments, big Bundles) out of the cache, so a few of
// them cannot push out thousands of ordinary ones.
const maxCachedBody = 256 << 10

// entryOverhead is what an entry costs beside its body: the Resource, its strings and the
// cache's own bookkeeping, roughly.
const entryOverhead = 256

// readCache keeps current versions of the embedded store's resources in memory. On SQLite
// every write commit makes each read connection drop its page cache, so a read by id would
// otherwise fetch its pages again from the file: a fifth of a read's cost.
//
// It is only correct while this process is the store's only writer, which the embedded store
// ensures with its data directory lock. Every commit that wrote resources drops their entries
// and moves the generation on; a read that started before a commit must not put what it read
// after that commit dropped the entry, so puts carry the generation seen before the database
// read and are refused when it has moved.
type readCache struct {
	c   *otter.Cache[Key, *Resource]
	mu  sync.Mutex    // orders puts against invalidations
	gen atomic.Uint64 // written under mu

	hits, misses atomic.Uint64
}

func newReadCache(maxBytes int64) *readCache {
	return &readCache{c: otter.Must(&otter.Options[Key, *Resource]{
		MaximumWeight: uint64(maxBytes),
		Weigher: func(k Key, r *Resource) uint32 {
			return uint32(entryOverhead + len(k.Type) + len(k.ID) + len(r.Body))
		},
	})}
}

// get returns a copy of the cached version, so callers may change its fields; the Body is
// shared and must not be written to, as for any Resource the store returns.
func (c *readCache) get(typ, id string) (*Resource, bool) {
	r, ok := c.c.GetIfPresent(Key{Type: typ, ID: id})
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	cp := *r
	return &cp, true
}

// generation is taken before reading the database for a put.
func (c *readCache) generation() uint64 { return c.gen.Load() }

// put keeps r unless a commit has invalidated entries since gen was taken.
func (c *readCache) put(r *Resource, gen uint64) {
	if len(r.Body) > maxCachedBody {
		return
	}
	cp := *r
	c.mu.Lock()
	if c.gen.Load() == gen {
		c.c.Set(Key{Type: r.Type, ID: r.ID}, &cp)
	}
	c.mu.Unlock()
}

// invalidate drops keys once their transaction has ended, committed or not.
func (c *readCache) invalidate(keys []Key) {
	c.mu.Lock()
	c.gen.Add(1)
	for _, k := range keys {
		c.c.Invalidate(k)
	}
	c.mu.Unlock()
}

// CacheStats describes the read cache.
type CacheStats struct {
	Enabled      bool
	Hits, Misses uint64
	Entries      int
	Bytes        uint64
	MaxBytes     uint64
}

// ReadCacheStats reports the read cache's use, for metrics; Enabled is false without one.
func (s *SQL) ReadCacheStats() CacheStats {
	c := s.cache
	if c == nil {
		return CacheStats{}
	}
	return CacheStats{Enabled: true, Hits: c.hits.Load(), Misses: c.misses.Load(), Entries: c.c.EstimatedSize(),
		Bytes: c.c.WeightedSize(), MaxBytes: c.c.GetMaximum()}
}

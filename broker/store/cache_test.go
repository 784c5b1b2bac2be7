package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hjbroker/hjbroker/broker/store"
)

func openCached(t *testing.T, dir string) *store.SQL {
	t.Helper()
	s, err := store.Open(context.Background(), "", dir, store.Options{ReadCacheBytes: store.DefaultReadCacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A read that follows a committed write sees it, however many readers raced the writer to
// fill the cache with the version before: the writer's Update returns only once the entry is
// gone, and a reader that read the old version before the commit cannot put it back after.
func TestReadCacheNeverServesAnOverwrittenVersion(t *testing.T) {
	t.Parallel()
	s := openCached(t, t.TempDir())
	ctx := context.Background()
	const versions = 300
	write := func(v int64) error {
		return s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Write{Type: "Patient", ID: "p", Version: v, LastUpdated: t0.Add(time.Duration(v) * time.Second),
				Method: "PUT", Body: body("Patient", "p", v)})
		})
	}
	if err := write(1); err != nil {
		t.Fatal(err)
	}
	var committed atomic.Int64 // the last version whose Update has returned
	committed.Store(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stale atomic.Value
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := committed.Load()
				cur, err := s.Current(ctx, "Patient", "p")
				if err != nil {
					stale.CompareAndSwap(nil, err)
					return
				}
				if cur.Version < floor {
					stale.CompareAndSwap(nil, fmt.Errorf("read version %d after version %d was committed", cur.Version, floor))
					return
				}
				if want := body("Patient", "p", cur.Version); string(cur.Body) != string(want) {
					stale.CompareAndSwap(nil, fmt.Errorf("version %d has body %s", cur.Version, cur.Body))
					return
				}
			}
		})
	}
	for v := int64(2); v <= versions; v++ {
		if err := write(v); err != nil {
			t.Fatal(err)
		}
		committed.Store(v)
	}
	close(stop)
	wg.Wait()
	if err, _ := stale.Load().(error); err != nil {
		t.Fatal(err)
	}
	st := s.ReadCacheStats()
	if !st.Enabled || st.Hits == 0 || st.Misses == 0 {
		t.Errorf("cache stats %+v: the race was not exercised through the cache", st)
	}
}

// A rolled-back transaction leaves the cached version in place and correct; a deletion is
// served as one.
func TestReadCacheRollbackAndDeletion(t *testing.T) {
	t.Parallel()
	s := openCached(t, t.TempDir())
	ctx := context.Background()
	put := func(v int64, deleted bool) error {
		w := &store.Write{Type: "Observation", ID: "o", Version: v, LastUpdated: t0.Add(time.Duration(v) * time.Second), Method: "PUT", Deleted: deleted}
		if !deleted {
			w.Body = body("Observation", "o", v)
		}
		return s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, w) })
	}
	if err := put(1, false); err != nil {
		t.Fatal(err)
	}
	if cur, err := s.Current(ctx, "Observation", "o"); err != nil || cur.Version != 1 {
		t.Fatalf("Current = %+v, %v", cur, err)
	}
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(ctx, &store.Write{Type: "Observation", ID: "o", Version: 2, LastUpdated: t0.Add(time.Hour), Method: "PUT",
			Body: body("Observation", "o", 2)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	for range 2 { // from the database, then from the cache
		if cur, err := s.Current(ctx, "Observation", "o"); err != nil || cur.Version != 1 {
			t.Fatalf("after rollback Current = %+v, %v; want version 1", cur, err)
		}
	}
	// A caller changing the Resource it was given does not change what the next one gets.
	cur, _ := s.Current(ctx, "Observation", "o")
	cur.Version, cur.Deleted = 99, true
	if again, _ := s.Current(ctx, "Observation", "o"); again.Version != 1 || again.Deleted {
		t.Fatalf("cached entry changed through a returned copy: %+v", again)
	}
	if err := put(2, true); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if cur, err := s.Current(ctx, "Observation", "o"); err != nil || !cur.Deleted || cur.Version != 2 {
			t.Fatalf("after deletion Current = %+v, %v", cur, err)
		}
	}
}

// A store with a read cache must be its database's only writer: a second one is refused with
// a message saying why, and opens once the first has closed. Stores without a cache (the
// command-line tools that read the trail or mint tokens) still open beside it.
func TestReadCacheTakesTheDataDirectoryLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	first, err := store.Open(ctx, "", dir, store.Options{ReadCacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(ctx, "", dir, store.Options{ReadCacheBytes: 1 << 20})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second cached store: %v, want ErrLocked", err)
	}
	if want := filepath.Join(dir, store.SQLiteFile+".lock"); !contains(err.Error(), want) {
		t.Errorf("error %q does not name the lock file %s", err, want)
	}
	tool, err := store.Open(ctx, "", dir, store.Options{})
	if err != nil {
		t.Fatalf("store without a cache beside a cached one: %v", err)
	}
	tool.Close()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := store.Open(ctx, "", dir, store.Options{ReadCacheBytes: 1 << 20})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// Large resources stay out of the cache so a few cannot push out thousands of small ones.
func TestReadCacheKeepsLargeResourcesOut(t *testing.T) {
	t.Parallel()
	s := openCached(t, t.TempDir())
	ctx := context.Background()
	big := make([]byte, 512<<10)
	for i := range big {
		big[i] = 'a'
	}
	raw := fmt.Appendf(nil, `{"resourceType":"Binary","id":"b","data":"%s"}`, big)
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Write{Type: "Binary", ID: "b", Version: 1, LastUpdated: t0, Method: "PUT", Body: raw})
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if cur, err := s.Current(ctx, "Binary", "b"); err != nil || len(cur.Body) != len(raw) {
			t.Fatalf("Current = %v", err)
		}
	}
	if st := s.ReadCacheStats(); st.Hits != 0 || st.Bytes > 4096 {
		t.Errorf("a 512 KiB resource was cached: %+v", st)
	}
}

// The writer leaves checkpoints to a background checkpointer: committed pages reach the
// database file within moments, without the WAL being checkpointed by a commit or a close.
func TestCheckpointerCopiesTheWALInTheBackground(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openCached(t, dir)
	ctx := context.Background()
	dbFile := filepath.Join(dir, store.SQLiteFile)
	size := func() int64 {
		fi, err := os.Stat(dbFile)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	pad := strings.Repeat("x", 8<<10)
	for i := range 256 { // 2 MiB of bodies
		if err := s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Write{Type: "Basic", ID: fmt.Sprint(i), Version: 1, LastUpdated: t0, Method: "PUT",
				Body: fmt.Appendf(nil, `{"resourceType":"Basic","id":"%d","text":%q}`, i, pad)})
		}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for size() < before+(1<<20) {
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes, %d before 2 MiB of writes: nothing was checkpointed", size(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is returned for events recorded after Close.
var ErrClosed = errors.New("audit recorder closed")

// RecorderOptions tune a Recorder; zero values take the defaults.
type RecorderOptions struct {
	// FlushInterval bounds how long an event waits in the queue (default 50 ms).
	FlushInterval time.Duration
	// BatchSize flushes early once this many events wait (default 500).
	BatchSize int
	// QueueSize bounds the queue (default 16 × BatchSize); Record blocks while it is full.
	QueueSize int
	// OnError, when set, is told of every failed flush (the batch is retried).
	OnError func(error)
}

// Recorder batches events into the trail from a background flusher.
type Recorder struct {
	trail *Trail
	opts  RecorderOptions
	queue chan item

	mu      sync.RWMutex // guards closed against sends on a closed queue
	closed  bool
	closing chan struct{}
	done    chan struct{}

	errMu    sync.Mutex
	failure  error // last flush failure; nil once a flush succeeds
	closeErr error
}

type item struct {
	p    prepared
	done chan error // nil for fire-and-forget events
}

// NewRecorder starts a recorder writing to trail. Close it to flush and stop.
func NewRecorder(trail *Trail, opts RecorderOptions) *Recorder {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 50 * time.Millisecond
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 16 * opts.BatchSize
	}
	r := &Recorder{
		trail:   trail,
		opts:    opts,
		queue:   make(chan item, opts.QueueSize),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go r.run()
	return r
}

// Record queues e; it is written within FlushInterval. An error means the event was not
// queued: it is invalid, the recorder is closed, or the queue is full while the database is
// failing (Err). Callers should then refuse the access: an unaudited access must not happen.
func (r *Recorder) Record(e Event) error {
	p, err := prepare(e)
	if err != nil {
		return err
	}
	return r.enqueue(context.Background(), item{p: p})
}

// RecordWait queues e and returns once the batch holding it has committed.
func (r *Recorder) RecordWait(ctx context.Context, e Event) error {
	p, err := prepare(e)
	if err != nil {
		return err
	}
	it := item{p: p, done: make(chan error, 1)}
	if err := r.enqueue(ctx, it); err != nil {
		return err
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: waiting for the event to be written: %w", ctx.Err())
	}
}

// RecordTx writes e in the caller's transaction (see Trail.AppendTx): last, before Commit.
func (r *Recorder) RecordTx(ctx context.Context, tx *sql.Tx, e Event) error {
	return r.trail.AppendTx(ctx, tx, e)
}

// Err reports the last flush failure, or nil when the last flush succeeded.
func (r *Recorder) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.failure
}

func (r *Recorder) enqueue(ctx context.Context, it item) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	select {
	case r.queue <- it:
		return nil
	default:
	}
	// Full: wait for room, but give up when the database is failing so callers can refuse
	// requests rather than hang.
	tick := time.NewTicker(r.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case r.queue <- it:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("audit: queue full: %w", ctx.Err())
		case <-tick.C:
			if err := r.Err(); err != nil {
				return fmt.Errorf("audit: queue full and writes failing: %w", err)
			}
		}
	}
}

// Close stops taking events, writes those queued and stops the flusher. Its error reports
// events that could not be written.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.closing)
		close(r.queue)
	}
	r.mu.Unlock()
	<-r.done
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.closeErr
}

func (r *Recorder) run() {
	defer close(r.done)
	batch := make([]item, 0, r.opts.BatchSize)
	// The timer starts with a batch's first event, so a batch just flushed for being full is
	// not followed by a flush of the one or two events that arrived meanwhile.
	timer := time.NewTimer(r.opts.FlushInterval)
	timer.Stop()
	var due <-chan time.Time
	flush := func() {
		timer.Stop()
		due = nil
		r.flush(batch)
		batch = batch[:0]
	}
	for {
		select {
		case it, ok := <-r.queue:
			if !ok {
				r.flush(batch)
				return
			}
			batch = append(batch, it)
			if len(batch) == 1 {
				timer.Reset(r.opts.FlushInterval)
				due = timer.C
			}
			if len(batch) >= r.opts.BatchSize {
				flush()
			}
		case <-due:
			flush()
		}
	}
}

// closeAttempts is how many times a batch is tried once Close has been called; before that a
// failing batch is retried until the database comes back.
const closeAttempts = 3

// flush writes the batch in one transaction, retrying with backoff until it succeeds or,
// once Close was called, closeAttempts have failed; then the loss is kept for Close.
func (r *Recorder) flush(batch []item) {
	if len(batch) == 0 {
		return
	}
	ps := make([]prepared, len(batch))
	for i, it := range batch {
		ps[i] = it.p
	}
	backoff := r.opts.FlushInterval
	var err error
	for attempt, closingAttempts := 1, 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = r.trail.appendPrepared(ctx, ps)
		cancel()
		r.errMu.Lock()
		r.failure = err
		r.errMu.Unlock()
		if err == nil {
			break
		}
		err = fmt.Errorf("audit: writing %d events (attempt %d): %w", len(ps), attempt, err)
		if r.opts.OnError != nil {
			r.opts.OnError(err)
		}
		select {
		case <-r.closing:
			closingAttempts++
		default:
		}
		if closingAttempts >= closeAttempts {
			break
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	if err != nil {
		r.errMu.Lock()
		r.closeErr = errors.Join(r.closeErr, err)
		r.errMu.Unlock()
	}
	for _, it := range batch {
		if it.done != nil {
			it.done <- err
		}
	}
}

package pipeline

import (
	"context"
	"fmt"
	"time"
)

// Record is one message bound for Kafka. A nil Value is a tombstone.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Time    time.Time
	Headers map[string]string
	// AllPartitions: the publisher writes one copy to every partition of
	// the topic (a truncate marker, see PartitionsHeader); its budget and
	// batch bytes count once.
	AllPartitions bool
}

// Item is a Record, a Mark (a position the source may acknowledge once
// everything before it is published), or a Barrier (closed by the forwarder
// once everything before it is published).
type Item struct {
	Record  *Record
	Mark    uint64
	Barrier chan struct{}
}

// Publisher durably publishes records: when Publish returns nil, every record
// was acknowledged by all in-sync replicas, in order per key.
type Publisher interface {
	Publish(ctx context.Context, records []Record) error
}

// ForwarderConfig bounds a batch.
type ForwarderConfig struct {
	MaxRecords int           // records per Publish call (default 5000)
	MaxBytes   int           // key+value bytes per Publish call (default 8 MiB)
	Linger     time.Duration // how long to wait for more records before publishing (default 2ms)
	// MaxDelay bounds the lingering (default 20ms): once the batch's first
	// record has waited MaxDelay, the batch is published the next time no
	// record is waiting. Records that keep coming less than Linger apart
	// were otherwise held until the batch was full (5,000 records: 140 ms
	// at 35,000 rows/s). A backlog (a record always waiting) still fills
	// whole batches.
	MaxDelay time.Duration
	// Budget, when set, is released as records are published.
	Budget *Budget
}

func (c *ForwarderConfig) defaults() {
	if c.MaxRecords <= 0 {
		c.MaxRecords = 5000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 8 << 20
	}
	if c.Linger <= 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 20 * time.Millisecond
	}
}

// Forward reads items until in is closed or ctx ends, publishes records in
// batches and calls ack with the highest Mark whose preceding records are all
// published. Memory is bounded by the batch limits and the channel's capacity.
func Forward(ctx context.Context, cfg ForwarderConfig, in <-chan Item, pub Publisher, ack func(uint64)) error {
	cfg.defaults()
	batch := make([]Record, 0, cfg.MaxRecords)
	var bytes int
	var pendingMark, lastAcked uint64
	var due time.Time // when the batch's first record has waited MaxDelay
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() error {
		if len(batch) > 0 {
			if err := pub.Publish(ctx, batch); err != nil {
				return fmt.Errorf("publish %d records: %w", len(batch), err)
			}
			cfg.Budget.Release(int64(bytes))
			clear(batch)
			batch = batch[:0]
			bytes = 0
		}
		if pendingMark > lastAcked {
			lastAcked = pendingMark
			ack(lastAcked)
		}
		return nil
	}
	for {
		var it Item
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case it, ok = <-in:
		default:
			// Nothing waiting: publish what we have after a short linger.
			if len(batch) == 0 {
				if err := flush(); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case it, ok = <-in:
				}
			} else {
				timer.Reset(min(cfg.Linger, max(time.Until(due), 0)))
				select {
				case <-ctx.Done():
					timer.Stop()
					return ctx.Err()
				case it, ok = <-in:
					timer.Stop()
				case <-timer.C:
					if err := flush(); err != nil {
						return err
					}
					continue
				}
			}
		}
		if !ok {
			return flush()
		}
		if it.Record != nil {
			batch = append(batch, *it.Record)
			bytes += len(it.Record.Key) + len(it.Record.Value)
			if len(batch) == 1 {
				due = time.Now().Add(cfg.MaxDelay)
			}
			if len(batch) >= cfg.MaxRecords || bytes >= cfg.MaxBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		if it.Mark > pendingMark {
			pendingMark = it.Mark
		}
		if it.Barrier != nil {
			if err := flush(); err != nil {
				return err
			}
			close(it.Barrier)
		}
	}
}

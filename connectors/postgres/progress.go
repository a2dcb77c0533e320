package postgres

import (
	"sync"
	"time"
)

// SnapshotProgress counts, per table, the rows a snapshot (initial or
// incremental) has read against the planner's estimate of the table's
// size, for `scoop status` and the metrics. The zero value is ready.
type SnapshotProgress struct {
	mu     sync.Mutex
	tables map[TableName]*TableProgress
}

// TableProgress is one table's snapshot as far as it went.
type TableProgress struct {
	Rows int64
	// Estimate is pg_class.reltuples when the snapshot began (0: unknown,
	// the table was never analysed).
	Estimate int64
	Started  time.Time
	Done     bool
}

// Fraction is Rows of Estimate, at most 0.99 until the table is done (an
// estimate is often low); -1 when the estimate is unknown.
func (p TableProgress) Fraction() float64 {
	switch {
	case p.Done:
		return 1
	case p.Estimate <= 0:
		return -1
	}
	return min(float64(p.Rows)/float64(p.Estimate), 0.99)
}

// ETA is the time left at the table's average rate so far (-1: unknown).
func (p TableProgress) ETA(now time.Time) time.Duration {
	f := p.Fraction()
	elapsed := now.Sub(p.Started)
	switch {
	case p.Done:
		return 0
	case f <= 0 || elapsed <= 0:
		return -1
	}
	return time.Duration(float64(elapsed) * (1 - f) / f)
}

// Start records that table's snapshot began (again).
func (s *SnapshotProgress) Start(table TableName, estimate int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tables == nil {
		s.tables = map[TableName]*TableProgress{}
	}
	s.tables[table] = &TableProgress{Estimate: max(estimate, 0), Started: now}
}

// Add counts n more rows read of table.
func (s *SnapshotProgress) Add(table TableName, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.tables[table]; p != nil {
		p.Rows += n
	}
}

// Finish records that every row of table was read.
func (s *SnapshotProgress) Finish(table TableName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.tables[table]; p != nil {
		p.Done = true
	}
}

// Tables returns a copy of every table's progress.
func (s *SnapshotProgress) Tables() map[TableName]TableProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[TableName]TableProgress, len(s.tables))
	for t, p := range s.tables {
		out[t] = *p
	}
	return out
}

// estimateRows is the planner's idea of a table's size (0: never analysed).
const estimateRowsSQL = `SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = $1`

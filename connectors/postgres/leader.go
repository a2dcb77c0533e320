package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease is the leadership of a slot's source: while an instance holds it,
// it alone streams from the slot and changes the publication, the slot and
// the snapshot bookkeeping. It is a session-level advisory lock on a
// session of its own in the monolith, so it ends with that session: when
// the holder dies (the server closes its session) or its session is
// terminated, another instance takes it over within a poll interval.
type Lease struct {
	conn *pgx.Conn
	lost chan struct{}
	stop context.CancelFunc
}

// leaderPoll is how often a standby tries the lock and a holder checks
// that its session is alive.
const leaderPoll = time.Second

// AcquireLease blocks until this instance holds the lease of slot (or ctx
// ends); meanwhile it stands by, trying every second.
func AcquireLease(ctx context.Context, url, slot string, log *slog.Logger) (*Lease, error) {
	standby := false
	for {
		l, err := tryLease(ctx, url, slot)
		if err != nil {
			return nil, err
		}
		if l != nil {
			if standby {
				log.Info("took over the source", "slot", slot)
			}
			return l, nil
		}
		if !standby {
			log.Info("source standby: another instance streams from the slot", "slot", slot)
			standby = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(leaderPoll):
		}
	}
}

func tryLease(ctx context.Context, url, slot string) (*Lease, error) {
	cfg, err := parseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "scoop-leader"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("source leadership: connect to PostgreSQL: %w", err)
	}
	var held bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended('scoop source ' || $1, 0))`, slot).Scan(&held); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("source leadership of slot %s: %w", slot, err)
	}
	if !held {
		conn.Close(context.Background())
		return nil, nil
	}
	wctx, stop := context.WithCancel(context.Background())
	l := &Lease{conn: conn, lost: make(chan struct{}), stop: stop}
	go l.watch(wctx)
	return l, nil
}

// watch closes lost as soon as the lease's session stops answering.
func (l *Lease) watch(ctx context.Context) {
	defer close(l.lost)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(leaderPoll):
		}
		pctx, cancel := context.WithTimeout(ctx, leaderPoll)
		err := l.conn.Ping(pctx)
		cancel()
		if err != nil {
			return
		}
	}
}

// Lost is closed when the lease ended (its session died or Release ran).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up (closing its session releases the lock).
func (l *Lease) Release() {
	l.stop()
	<-l.lost
	l.conn.Close(context.Background())
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5/pgxpool"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

// bench holds the connections of a run and every resource it created, so
// that they are all removed at the end (slots are dropped as soon as their
// phase is over: a leftover slot retains WAL forever).
type bench struct {
	cfg    config
	root   string
	id     string // prefix of every name: bnch_<pid>_<hex>
	logDir string
	bin    string
	mono   *pgxpool.Pool
	svc    *pgxpool.Pool
	kafka  *kafkago.Client
	cass   *gocql.Session
	ks     string // Cassandra keyspace of the run
	res    *results

	mu         sync.Mutex
	slots      []string
	pubs       []string
	monoTables []string
	svcTables  []string
	topics     []string
	groups     []string
	slotsState map[string]bool // slot -> dropped
	procs      map[*scoopProc]bool
}

func newBench(ctx context.Context, cfg config, root string) (*bench, error) {
	id := fmt.Sprintf("bnch_%d_%s", os.Getpid(), randHex(2))
	logDir := filepath.Join(root, "bench", "results", "logs.tmp", id)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, root: root, id: id, logDir: logDir, ks: id, slotsState: map[string]bool{}, procs: map[*scoopProc]bool{}}
	b.res = &results{
		Date:  time.Now().UTC().Format(time.RFC3339),
		Smoke: cfg.smoke,
		Git:   gitDescribe(root),
		Host:  hostInfo(),
		Sizes: map[string]int{
			"insert_rows": cfg.rows, "update_rows": cfg.updateRows, "mix_ops": cfg.mixOps,
			"bigtx_rows": cfg.bigtxRows, "toast_rows": cfg.toastRows, "toast_bytes": cfg.toastBytes,
			"snapshot_rows": cfg.snapshotRows, "reverse_bulk_rows": cfg.reverseRows,
			"verify_rows": cfg.verifyRows,
		},
		Method:   methodNotes,
		ScoopEnv: cfg.scoopEnv,
	}
	logf("run %s; scoop logs in %s", id, logDir)
	var err error
	logf("building scoop")
	if b.bin, err = buildScoop(root, logDir, cfg.scoopBin); err != nil {
		return nil, err
	}
	if b.mono, err = pgxpool.New(ctx, testenv.PGURL("monolith")); err != nil {
		return nil, err
	}
	if b.svc, err = pgxpool.New(ctx, testenv.PGURL("service")); err != nil {
		return nil, err
	}
	b.kafka = &kafkago.Client{Addr: kafkago.TCP(testenv.Broker()), Timeout: 15 * time.Second,
		Transport: &kafkago.Transport{MetadataTTL: time.Second}}
	if err := b.connectCassandra(); err != nil {
		return nil, err
	}
	return b, nil
}

// connectCassandra opens a session configured as scoop's sink does.
func (b *bench) connectCassandra() error {
	cl := gocql.NewCluster("127.0.0.1")
	cl.Port, _ = strconv.Atoi(testenv.CassandraPort)
	cl.Consistency = gocql.LocalQuorum
	cl.Timeout = 10 * time.Second
	cl.ConnectTimeout = 10 * time.Second
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	var err error
	if b.cass, err = cl.CreateSession(); err != nil {
		return fmt.Errorf("cassandra: %w", err)
	}
	return nil
}

func (b *bench) close() {
	for p := range b.procs {
		p.kill()
	}
	if b.cass != nil {
		b.cass.Close()
	}
	if b.mono != nil {
		b.mono.Close()
	}
	if b.svc != nil {
		b.svc.Close()
	}
}

// fail records a failed phase; the run goes on with the next one.
func (b *bench) fail(phase string, err error) {
	msg := fmt.Sprintf("%s: %v", phase, err)
	logf("FAILED %s", msg)
	b.mu.Lock()
	b.res.Errors = append(b.res.Errors, msg)
	b.mu.Unlock()
}

func (b *bench) add(list *[]string, name string) {
	b.mu.Lock()
	*list = append(*list, name)
	b.mu.Unlock()
}

var staleSlotRe = regexp.MustCompile(`^bnch_([0-9]+)_`)

// prepare drops inactive slots of earlier bench runs whose process is gone
// (a killed run cannot clean up after itself) and creates the keyspace.
func (b *bench) prepare(ctx context.Context) error {
	rows, err := b.mono.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'bnch\_%' AND NOT active`)
	if err != nil {
		return err
	}
	var stale []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return err
		}
		if m := staleSlotRe.FindStringSubmatch(s); m != nil {
			if _, err := os.Stat("/proc/" + m[1]); os.IsNotExist(err) {
				stale = append(stale, s)
			}
		}
	}
	rows.Close()
	for _, s := range stale {
		logf("dropping slot %s left by an earlier bench run", s)
		b.mono.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s)
	}
	b.warnRetainingSlots(ctx)
	return b.cass.Query(fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, b.ks)).WithContext(ctx).Exec()
}

// warnRetainingSlots names the inactive slots that are not the bench's and
// keep more than 1 GB of WAL: a full bench writes tens of GB of WAL and
// Kafka log, and a forgotten slot (a demo's, a test's) keeps all of it until
// the disk is full, stopping a run in its middle.
func (b *bench) warnRetainingSlots(ctx context.Context) {
	rows, err := b.mono.Query(ctx, `SELECT slot_name, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))
		FROM pg_replication_slots WHERE NOT active AND slot_name NOT LIKE 'bnch\_%' AND pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) > 1e9`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var slot, size string
		if rows.Scan(&slot, &size) == nil {
			logf("warning: inactive replication slot %s keeps %s of WAL, and everything this run writes (drop it: SELECT pg_drop_replication_slot('%s'); a scoop slot's snapshot is then forgotten with DELETE FROM scoop.source_tables WHERE slot = '%s'; DELETE FROM scoop.source_slots WHERE slot = '%s')", slot, size, slot, slot, slot)
		}
	}
}

// dropSlot drops a slot of this run, retrying while its walsender exits.
func (b *bench) dropSlot(slot string) {
	b.mu.Lock()
	done := b.slotsState[slot]
	b.slotsState[slot] = true
	b.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		_, err = b.mono.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.fail("drop slot "+slot, err)
}

// cleanup removes what the run created (unless BENCH_KEEP=1; slots are
// always dropped).
func (b *bench) cleanup() {
	for p := range b.procs {
		p.stop()
	}
	for _, s := range b.slots {
		b.dropSlot(s)
	}
	if b.cfg.keep {
		logf("BENCH_KEEP=1: keeping tables, topics, keyspace %s and logs in %s", b.ks, b.logDir)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range b.pubs {
		b.mono.Exec(ctx, `DROP PUBLICATION IF EXISTS `+p)
	}
	for _, t := range b.monoTables {
		b.mono.Exec(ctx, `DROP TABLE IF EXISTS `+t)
	}
	if len(b.slots) > 0 {
		// scoop's own state for these slots (snapshot marks, mapping registry)
		for _, t := range []string{"scoop.source_tables", "scoop.source_slots", "scoop.mappings", "scoop.registry"} {
			b.mono.Exec(ctx, `DELETE FROM `+t+` WHERE slot = ANY($1)`, b.slots)
		}
	}
	for _, t := range b.svcTables {
		b.svc.Exec(ctx, `DROP TABLE IF EXISTS `+t)
	}
	if len(b.topics) > 0 {
		b.svc.Exec(ctx, `DELETE FROM scoop.sink_offsets WHERE topic = ANY($1)`, b.topics)
		if _, err := b.kafka.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: b.topics}); err != nil {
			logf("cleanup: delete topics: %v", err)
		}
	}
	if len(b.groups) > 0 {
		if _, err := b.kafka.DeleteGroups(ctx, &kafkago.DeleteGroupsRequest{GroupIDs: b.groups}); err != nil {
			logf("cleanup: delete consumer groups: %v", err)
		}
	}
	qctx, qcancel := context.WithTimeout(ctx, 60*time.Second)
	if err := b.cass.Query(`DROP KEYSPACE IF EXISTS ` + b.ks).WithContext(qctx).Exec(); err != nil {
		logf("cleanup: drop keyspace %s: %v", b.ks, err)
	}
	qcancel()
	if len(b.res.Errors) == 0 {
		os.RemoveAll(b.logDir)
	}
}

package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

var runIDRe = regexp.MustCompile(`^bnch_[0-9]+_[0-9a-f]+$`)

// cleanRun removes what a run kept with BENCH_KEEP=1: `go run ./bench clean
// bnch_<pid>_<hex>`. Everything of a run is named after its id.
func cleanRun(ctx context.Context, id string) error {
	if !runIDRe.MatchString(id) {
		return fmt.Errorf("clean: %q is not a run id (bnch_<pid>_<hex>, printed at the start of a run)", id)
	}
	like := strings.ReplaceAll(id, "_", `\_`) + `\_%`
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	mono, err := pgxpool.New(ctx, testenv.PGURL("monolith"))
	if err != nil {
		return err
	}
	defer mono.Close()
	svc, err := pgxpool.New(ctx, testenv.PGURL("service"))
	if err != nil {
		return err
	}
	defer svc.Close()
	names := func(db *pgxpool.Pool, sql string) []string {
		rows, err := db.Query(ctx, sql, like)
		if err != nil {
			return nil
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if rows.Scan(&s) == nil {
				out = append(out, s)
			}
		}
		return out
	}
	for _, s := range names(mono, `SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active`) {
		if _, err := mono.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s); err != nil {
			return err
		}
		logf("clean: dropped slot %s", s)
	}
	for _, p := range names(mono, `SELECT pubname FROM pg_publication WHERE pubname LIKE $1`) {
		mono.Exec(ctx, `DROP PUBLICATION IF EXISTS `+p)
	}
	for _, t := range []string{"scoop.source_tables", "scoop.source_slots", "scoop.mappings", "scoop.registry"} {
		mono.Exec(ctx, `DELETE FROM `+t+` WHERE slot LIKE $1`, like)
	}
	for _, t := range names(mono, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE $1`) {
		mono.Exec(ctx, `DROP TABLE IF EXISTS `+t)
		logf("clean: dropped monolith table %s", t)
	}
	svc.Exec(ctx, `DELETE FROM scoop.sink_offsets WHERE topic LIKE $1`, like)
	for _, t := range names(svc, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE $1`) {
		svc.Exec(ctx, `DROP TABLE IF EXISTS `+t)
		logf("clean: dropped service table %s", t)
	}
	client := &kafkago.Client{Addr: kafkago.TCP(testenv.Broker()), Timeout: 30 * time.Second}
	if md, err := client.Metadata(ctx, &kafkago.MetadataRequest{}); err == nil {
		var topics []string
		for _, t := range md.Topics {
			if strings.HasPrefix(t.Name, id+"_") {
				topics = append(topics, t.Name)
			}
		}
		if len(topics) > 0 {
			if _, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: topics}); err != nil {
				return err
			}
			logf("clean: deleted %d topics", len(topics))
		}
	}
	if gs, err := client.ListGroups(ctx, &kafkago.ListGroupsRequest{}); err == nil {
		var groups []string
		for _, g := range gs.Groups {
			if strings.HasPrefix(g.GroupID, id+"_") {
				groups = append(groups, g.GroupID)
			}
		}
		if len(groups) > 0 {
			client.DeleteGroups(ctx, &kafkago.DeleteGroupsRequest{GroupIDs: groups})
			logf("clean: deleted %d consumer groups", len(groups))
		}
	}
	b := &bench{}
	if err := b.connectCassandra(); err != nil {
		return err
	}
	defer b.cass.Close()
	if err := b.cass.Query(`DROP KEYSPACE IF EXISTS ` + id).WithContext(ctx).Exec(); err != nil {
		return err
	}
	logf("clean: dropped keyspace %s", id)
	return nil
}

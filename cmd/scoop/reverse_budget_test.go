package main

import (
	"fmt"
	"testing"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestReverseBeyondBuffer: the reverse source hands its records to the
// forwarder within a byte budget (a quarter of SCOOP_BUFFER_MB); the budget
// must come back as records are published, or the reverse flow stops for
// good once the service has written that many bytes. With a 1 MB buffer
// (256 KiB for the reverse source), about 2 MB of service writes in 20
// transactions all reach the monolith.
func TestReverseBeyondBuffer(t *testing.T) {
	table := createTable(t, 0)
	svcTable := table + "_svc"
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: budget, source: public.%s, store: accounts, target: %s, direction: both}
`, table, svcTable))
	testenv.DropSlot(t, e.slot+"_rev_accounts") // the reverse source's, in the service database
	d := startProc(t, append(e.env, "SCOOP_BUFFER_MB=1"))
	rows := func(tbl string) string {
		return fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || md5(coalesce(note, '')) FROM %s`, schema.QuoteIdent(tbl))
	}
	waitEqual(t, d, "service table created", query(t, "monolith", rows(table)), query(t, "service", rows(svcTable)))
	waitReverse(t, d, 1)
	s := testenv.Conn(t, "service")
	for i := 0; i < 20; i++ {
		testenv.Exec(t, s, fmt.Sprintf(`INSERT INTO %s (id, amount, note) SELECT g, g, repeat(md5(g::text), 32) FROM generate_series(%d, %d) g`,
			schema.QuoteIdent(svcTable), i*100+1, i*100+100))
	}
	waitEqual(t, d, "2 MB of service writes -> monolith", query(t, "service", rows(svcTable)), query(t, "monolith", rows(table)))
}

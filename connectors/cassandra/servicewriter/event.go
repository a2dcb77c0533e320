package servicewriter

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/scoop-cdc/scoop/schema"
)

// Connector is source.connector in the events the writer publishes.
const Connector = "scoop-servicewriter"

// event encodes a change as scoop's envelope (docs/events.md): the Kafka
// key is the primary key as a JSON object, in key order; the value carries
// the write's timestamp ts (µs) as source.ts_us and a transaction block of
// one change (total_order and key_order 1), so that scoop's Cassandra sink
// writes it at exactly ts. cells holds the key columns (a delete) or every
// column (an upsert); now is the envelope's own ts_ms.
func (t *table) event(op schema.Op, cells []cell, ts int64, name string, now time.Time) (key, value []byte) {
	key = t.appendObject(nil, cells[:t.nkeys])
	value = append(value, `{"before":null,"after":`...)
	if op == schema.OpDelete {
		value = append(value, "null"...)
	} else {
		value = t.appendObject(value, cells)
	}
	value = append(value, `,"source":{"version":"1","connector":"`+Connector+`","name":`...)
	value = appendString(value, name)
	value = append(value, `,"ts_ms":`...)
	value = strconv.AppendInt(value, floorDiv(ts, 1000), 10)
	value = append(value, `,"ts_us":`...)
	value = strconv.AppendInt(value, ts, 10)
	value = append(value, `,"snapshot":"false","db":`...)
	value = appendString(value, t.keyspace)
	value = append(value, `,"schema":`...)
	value = appendString(value, t.keyspace)
	value = append(value, `,"table":`...)
	value = appendString(value, t.name)
	value = append(value, `},"op":"`...)
	value = append(value, byte(op))
	value = append(value, `","ts_ms":`...)
	value = strconv.AppendInt(value, now.UnixMilli(), 10)
	value = append(value, `,"transaction":{"id":"`...)
	value = strconv.AppendInt(value, ts, 10)
	value = append(value, `","total_order":1,"data_collection_order":1,"key_order":1}}`...)
	return key, value
}

func (t *table) appendObject(dst []byte, cells []cell) []byte {
	dst = append(dst, '{')
	for i, c := range cells {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, t.cols[i].name)
		dst = append(dst, ':')
		dst = append(dst, c.json...)
	}
	return append(dst, '}')
}

func appendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// floorDiv rounds towards minus infinity, as ts_ms of a time before 1970
// must (ts_us -1 is ts_ms -1, not 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

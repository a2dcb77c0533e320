package schema

import (
	"strconv"
	"time"
)

// HeartbeatTopic is the topic of heartbeat records for a topic prefix, named
// as Debezium names its own (topic.heartbeat.prefix's default, a dot, the
// topic.prefix), so tools that watch Debezium's heartbeats find scoop's.
func HeartbeatTopic(prefix string) string { return "__debezium-heartbeat." + prefix }

// Heartbeat returns the key and value of a heartbeat record as Debezium
// writes them: key {"serverName": <name>}, value {"ts_ms": <at>}, wrapped
// with Kafka Connect schemas when the encoder writes them.
func (e *Encoder) Heartbeat(at time.Time) (key, value []byte) {
	if e.cfg.Schemas {
		key = append(key, `{"`+memberSchema+`":{"type":"struct","fields":[{"type":"string","optional":false,"field":"serverName"}],"optional":false,"name":"io.debezium.connector.common.ServerNameKey","version":1},"`+memberPayload+`":`...)
		value = append(value, `{"`+memberSchema+`":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat","version":1},"`+memberPayload+`":`...)
	}
	key = append(key, `{"serverName":`...)
	key = appendString(key, []byte(e.cfg.Name))
	key = append(key, '}')
	value = append(value, `{"ts_ms":`...)
	value = strconv.AppendInt(value, at.UnixMilli(), 10)
	value = append(value, '}')
	if e.cfg.Schemas {
		key = append(key, '}')
		value = append(value, '}')
	}
	return key, value
}

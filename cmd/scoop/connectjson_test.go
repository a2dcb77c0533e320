package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestConnectJSONRoundTrip: Kafka Connect's own JsonConverter (schemas
// enabled, the Kafka jars of the stack) reads every kind of record scoop
// writes with SCOOP_EVENT_SCHEMAS=true, key and value: snapshot reads
// (first, in between, last), an insert, an update, a delete and its
// tombstone, a key change, a truncate and a heartbeat record. Each
// toConnectData must succeed, and fromConnectData of its result must give
// back JSON equal to what scoop wrote: a schema that does not describe its
// payload exactly (a type, a name, an optional flag, a member left out)
// comes back different, or not at all.
func TestConnectJSONRoundTrip(t *testing.T) {
	testenv.Require(t)
	classes := connectJSONClasses(t)
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("cjson")
	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, dbzEnum)
	testenv.Exec(t, testenv.Conn(t, "service"), dbzEnum) // scoop's own sink of the mapping
	testenv.Exec(t, mono, fmt.Sprintf(dbzTable, q))
	t.Cleanup(func() {
		testenv.Exec(t, testenv.Conn(t, "monolith"), `DROP TABLE IF EXISTS `+q)
		testenv.Exec(t, testenv.Conn(t, "service"), `DROP TABLE IF EXISTS `+q)
	})
	testenv.Exec(t, mono, dbzRows(table, 1, 3, "snapshot"))

	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: cjson\n    source: public.%s\n    store: accounts\n", table))
	d := startProc(t, append(e.env, "SCOOP_EVENT_SCHEMAS=true", "SCOOP_HEARTBEAT_RECORDS=true", "SCOOP_TOPIC_PARTITIONS=3"))
	topic := pipeline.TopicFor(e.prefix, "public", table)
	// The changes are made once the snapshot is in Kafka (one table: one
	// worker reads it, in key order).
	// The topic is read only once scoop's own sink has the rows, so that
	// scoop created it: a read before would have the broker create it
	// with one partition.
	start := time.Now()
	for len(rowsJSON(t, "service", table)) != 3 {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the snapshot's 3 rows did not reach the service database\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := map[string]int{"r/first": 1, "r/true": 1, "r/last": 1}
	waitKinds(t, d, topic, want)
	testenv.Exec(t, mono, dbzRows(table, 4, 5, "insert"))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET c_text = 'updated', c_jsonb = '{"u": [1, null]}', c_int_arr = NULL WHERE id = 4`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id = 2`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET id = 1003 WHERE id = 3`, q)) // a delete, its tombstone and a create
	testenv.Exec(t, mono, fmt.Sprintf(`TRUNCATE %s`, q))                          // one per partition
	want["c/false"], want["u/false"], want["d/false"], want["tombstone"], want["t/false"] = 3, 1, 2, 2, 3
	msgs, kinds := waitKinds(t, d, topic, want)
	hb := testenv.ReadTopic(t, schema.HeartbeatTopic(e.prefix), 1, 60*time.Second)
	if len(hb) == 0 {
		t.Fatalf("no heartbeat record in %s\n%s", schema.HeartbeatTopic(e.prefix), tail(d.logs(), 3000))
	}
	msgs = append(msgs, hb[0])

	start = time.Now()
	back := connectJSONRoundTrip(t, classes, msgs)
	took := time.Since(start)
	for i, m := range msgs {
		for j, part := range []struct {
			what string
			orig []byte
		}{{"key", m.Key}, {"value", m.Value}} {
			got := back[i][j]
			if strings.HasPrefix(got, "!") {
				msg, _ := base64.StdEncoding.DecodeString(got[1:])
				t.Fatalf("%s of %s record %d/%d: JsonConverter.toConnectData/fromConnectData failed: %s\n%s", part.what, m.Topic, m.Partition, m.Offset, msg, part.orig)
			}
			if got == "-" {
				if part.orig != nil {
					t.Fatalf("%s of %s record %d/%d: JsonConverter gave back null for\n%s", part.what, m.Topic, m.Partition, m.Offset, part.orig)
				}
				continue
			}
			b, err := base64.StdEncoding.DecodeString(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := jsonDiff(part.orig, b); diff != "" {
				t.Fatalf("%s of %s record %d/%d differs after JsonConverter's round trip: %s\nscoop wrote:\n%s\nJsonConverter wrote:\n%s", part.what, m.Topic, m.Partition, m.Offset, diff, part.orig, b)
			}
		}
	}
	t.Logf("%d records (%s and a heartbeat record) read and written back equal by JsonConverter in %s", len(msgs), strings.Join(kinds, ", "), took.Round(time.Millisecond))
}

// waitKinds waits until topic holds records of the kinds in want
// ("op/source.snapshot" or "tombstone"), at least as many of each as want
// says (a retried produce call may write some twice), and of no other kind;
// it returns the records and their kinds, sorted.
func waitKinds(t *testing.T, d *proc, topic string, want map[string]int) ([]kafkago.Message, []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		msgs := testenv.ReadTopic(t, topic, 1, 30*time.Second)
		have := map[string]int{}
		for _, m := range msgs {
			have[recordKind(t, m)]++
		}
		enough := len(have) == len(want)
		for k, n := range want {
			enough = enough && have[k] >= n
		}
		if enough {
			kinds := map[string]bool{}
			for k := range have {
				kinds[k] = true
			}
			return msgs, sortedSet(kinds)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: records of kinds %v, want %v\nscoop log tail:\n%s", topic, have, want, tail(d.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// recordKind is "op/source.snapshot" of a record written with schemas, or
// "tombstone".
func recordKind(t *testing.T, m kafkago.Message) string {
	if m.Value == nil {
		return "tombstone"
	}
	var v struct {
		Payload struct {
			Op     string `json:"op"`
			Source struct {
				Snapshot string `json:"snapshot"`
			} `json:"source"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(m.Value, &v); err != nil {
		t.Fatalf("record %d/%d is not JSON: %v\n%s", m.Partition, m.Offset, err, m.Value)
	}
	return v.Payload.Op + "/" + v.Payload.Source.Snapshot
}

// connectJSONRoundTrip runs testdata/connectjson/RoundTrip over msgs and
// returns, per message, what came back for its key and its value.
func connectJSONRoundTrip(t *testing.T, classes string, msgs []kafkago.Message) [][2]string {
	t.Helper()
	enc := func(b []byte) string {
		if b == nil {
			return "-"
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	var in bytes.Buffer
	for _, m := range msgs {
		fmt.Fprintf(&in, "%s %s %s\n", m.Topic, enc(m.Key), enc(m.Value))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, javaBin(), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-cp", classes+string(os.PathListSeparator)+filepath.Join(stackJars(t), "kafka", "*"), "RoundTrip")
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("RoundTrip: %v\n%s", err, tail(stderr.String(), 3000))
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(msgs) {
		t.Fatalf("RoundTrip answered %d lines for %d records\n%s", len(lines), len(msgs), tail(stderr.String(), 3000))
	}
	res := make([][2]string, len(lines))
	for i, l := range lines {
		f := strings.Split(l, " ")
		if len(f) != 2 {
			t.Fatalf("RoundTrip line %q", l)
		}
		res[i] = [2]string{f[0], f[1]}
	}
	return res
}

func javaBin() string {
	if j := os.Getenv("SCOOP_JAVA"); j != "" {
		return j
	}
	return "java"
}

// stackJars is the stack's jar cache (SCOOP_STACK_JARS, as scripts/stack
// has it).
func stackJars(t *testing.T) string {
	t.Helper()
	if j := os.Getenv("SCOOP_STACK_JARS"); j != "" {
		return j
	}
	stack := os.Getenv("SCOOP_STACK_DIR")
	if stack == "" {
		stack = filepath.Join(testenv.Root(), ".stack")
	}
	return filepath.Join(stack, "jars")
}

// connectJSONClasses compiles testdata/connectjson/RoundTrip.java against the
// stack's Kafka jars into the jar cache (once per version of the source) and
// returns the directory of its class.
func connectJSONClasses(t *testing.T) string {
	t.Helper()
	kafkaJars := filepath.Join(stackJars(t), "kafka")
	if _, err := os.Stat(filepath.Join(kafkaJars, ".pom.sha256")); err != nil {
		t.Fatalf("the stack's Kafka jars are not in %s (scripts/stack up kafka fetches them): %v", kafkaJars, err)
	}
	src := filepath.Join(testenv.Root(), "cmd", "scoop", "testdata", "connectjson", "RoundTrip.java")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	dir := filepath.Join(stackJars(t), "connectjson-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, "RoundTrip.class")); err == nil {
		return dir
	}
	javac := "javac"
	if j := os.Getenv("SCOOP_JAVA"); strings.ContainsRune(j, os.PathSeparator) {
		javac = filepath.Join(filepath.Dir(j), "javac")
	}
	if _, err := exec.LookPath(javac); err != nil {
		t.Fatalf("%s is needed to compile %s (a JDK, e.g. Debian's openjdk-17-jdk-headless): %v", javac, src, err)
	}
	tmp := fmt.Sprintf("%s.tmp.%d", dir, os.Getpid())
	os.RemoveAll(tmp)
	out, err := exec.Command(javac, "-d", tmp, "-cp", filepath.Join(kafkaJars, "*"), src).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("javac %s: %v\n%s", src, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(dir, "RoundTrip.class")); serr != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// jsonDiff says where two JSON texts differ (numbers compared by value),
// or "" when they are equal.
func jsonDiff(want, got []byte) string {
	parse := func(b []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	}
	w, err := parse(want)
	if err != nil {
		return "scoop's JSON does not parse: " + err.Error()
	}
	g, err := parse(got)
	if err != nil {
		return "JsonConverter's JSON does not parse: " + err.Error()
	}
	return jsonValueDiff("$", w, g)
}

func jsonValueDiff(path string, w, g any) string {
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: object written back as %s", path, short(g))
		}
		keys := map[string]bool{}
		for k := range wv {
			keys[k] = true
		}
		for k := range gv {
			keys[k] = true
		}
		for _, k := range sortedSet(keys) {
			a, inW := wv[k]
			b, inG := gv[k]
			switch {
			case !inW:
				return fmt.Sprintf("%s.%s: not in scoop's record, written back as %s", path, k, short(b))
			case !inG:
				return fmt.Sprintf("%s.%s: %s left out when written back", path, k, short(a))
			}
			if d := jsonValueDiff(path+"."+k, a, b); d != "" {
				return d
			}
		}
		return ""
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			return fmt.Sprintf("%s: %s written back as %s", path, short(w), short(g))
		}
		for i := range wv {
			if d := jsonValueDiff(fmt.Sprintf("%s[%d]", path, i), wv[i], gv[i]); d != "" {
				return d
			}
		}
		return ""
	case json.Number:
		gv, ok := g.(json.Number)
		a, aok := new(big.Rat).SetString(wv.String())
		if ok && aok {
			if b, bok := new(big.Rat).SetString(gv.String()); bok && a.Cmp(b) == 0 {
				return ""
			}
		}
		return fmt.Sprintf("%s: %s written back as %s", path, short(w), short(g))
	default:
		if w != g {
			return fmt.Sprintf("%s: %s written back as %s", path, short(w), short(g))
		}
		return ""
	}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	return tail(string(b), 200)
}

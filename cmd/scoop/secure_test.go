package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestSecure runs against the secure profile of scripts/stack (TLS from a
// throw-away CA with verified hostnames, SCRAM and PLAIN over SASL_SSL,
// PostgreSQL's scram-sha-256 over hostssl only, Cassandra's
// PasswordAuthenticator with required client encryption): the whole path
// works, and each wrong setting is refused with an error naming it. The
// profile is started once for all of it and stopped at the end.
func TestSecure(t *testing.T) {
	s := testenv.StartSecure(t)
	start := time.Now()
	t.Run("whole path", func(t *testing.T) { securePath(t, s) })
	t.Run("postgres refusals", func(t *testing.T) { securePGRefusals(t, s) })
	t.Run("kafka refusals", func(t *testing.T) { secureKafkaRefusals(t, s) })
	t.Run("cassandra refusals", func(t *testing.T) { secureCassandraRefusals(t, s) })
	t.Run("failing start prints no secret", func(t *testing.T) { secureFailingStart(t, s) })
	t.Run("postgres expired certificate", func(t *testing.T) { securePGExpired(t, s) })
	t.Logf("secure tests took %s (after the profile started)", time.Since(start).Round(100*time.Millisecond))
}

// secureE2E is the environment of a scoop against the secure profile.
func secureE2E(t *testing.T, s *testenv.Secure, mappings string) *e2e {
	e := &e2e{prefix: testenv.Name("p"), slot: testenv.Name("s"), keyspace: testenv.Name("ks")}
	e.env = append([]string{
		"SCOOP_SOURCE_URL=" + s.PGURL("monolith"),
		"SCOOP_KAFKA_BROKERS=" + s.Broker(),
		"SCOOP_TOPIC_PREFIX=" + e.prefix, "SCOOP_SLOT=" + e.slot, "SCOOP_PUBLICATION=" + e.slot,
		"SCOOP_MAPPINGS_FILE=" + writeMappings(t, mappings),
		"SCOOP_STORE_ACCOUNTS_URL=" + s.PGURL("service"),
		"SCOOP_STORE_ORDERS_URL=cassandra://" + s.CassandraAddr() + "/" + e.keyspace,
		"SCOOP_ADMIN_ADDR=127.0.0.1:0",
		"SCOOP_HEARTBEAT_INTERVAL=500ms",
	}, s.Env()...)
	return e
}

func securePath(t *testing.T, s *testenv.Secure) {
	mono := s.Conn(t, "monolith")
	table := testenv.Name("sec")
	// public.: role scoop owns a schema named scoop, first on its search_path.
	q := "public." + schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, note text)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, 'n' || g FROM generate_series(1, 50) g`, q))
	e := secureE2E(t, s, "mappings: []\n")
	file := writeMappings(t, fmt.Sprintf("mappings:\n  - name: pg\n    source: public.%[1]s\n    store: accounts\n  - name: cass\n    source: public.%[1]s\n    store: orders\n", table))
	if out, err := e.cli(t, "mappings", "apply", "-f", file); err != nil || strings.Count(out, "add") != 2 {
		t.Fatalf("mappings apply over TLS: %v\n%s", err, out)
	}
	if out, err := e.cli(t, "mappings", "list"); err != nil || !strings.Contains(out, "public."+table) {
		t.Fatalf("mappings list over TLS: %v\n%s", err, out)
	}
	if out, err := e.cli(t, "mappings", "describe", "cass"); err != nil || !strings.Contains(out, `"consumer_group": "`+e.prefix+`.cass"`) {
		t.Fatalf("mappings describe over TLS: %v\n%s", err, out)
	}
	d := startProc(t, e.withoutFile())
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'changed' WHERE id <= 10`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id > 45`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (100, 'streamed')`, q))
	want := secureRows(t, s.PGURL("monolith"), table)
	svc := secureRows(t, s.PGURL("service"), table)
	waitEqual(t, d, "the PostgreSQL store over TLS", want, svc)
	cass := s.Cassandra(t, "")
	cassRows := func() []string {
		var out []string
		it := cass.Query(fmt.Sprintf(`SELECT id, note FROM %s.%s`, schema.QuoteIdent(e.keyspace), schema.QuoteIdent(table))).Iter()
		var id int
		var note string
		for it.Scan(&id, &note) {
			out = append(out, fmt.Sprintf("%d %s", id, note))
		}
		if it.Close() != nil {
			return nil
		}
		sort.Strings(out)
		return out
	}
	waitEqual(t, d, "the Cassandra store over TLS", want, cassRows)

	testenv.Exec(t, s.Conn(t, "service"), fmt.Sprintf(`TRUNCATE %s`, q))
	out, err := e.cli(t, "replay", "pg", "--from-offset", "0", "--wait", "60s")
	if err != nil || !strings.Contains(out, "caught up") {
		t.Fatalf("replay over TLS: %v\n%s", err, out)
	}
	waitEqual(t, d, "the PostgreSQL store replayed over TLS", want, svc)
}

// secureRows is every row of a table as JSON text, sorted, read as role
// scoop over TLS.
func secureRows(t *testing.T, url, table string) func() []string {
	return func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return nil
		}
		defer c.Close(context.Background())
		rows, err := c.Query(ctx, fmt.Sprintf(`SELECT id, note FROM public.%s`, schema.QuoteIdent(table)))
		if err != nil {
			return nil
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id int
			var note string
			if rows.Scan(&id, &note) == nil {
				out = append(out, fmt.Sprintf("%d %s", id, note))
			}
		}
		sort.Strings(out)
		return out
	}
}

// secrets are the profile's passwords and the wrong ones the refusals try:
// none may appear in any output.
func secrets(s *testenv.Secure) []string {
	return []string{s.Get("SCOOP_SECURE_PG_PASSWORD"), s.Get("SCOOP_SECURE_KAFKA_PASSWORD"),
		s.Get("SCOOP_SECURE_CASSANDRA_PASSWORD"), s.Get("SCOOP_SECURE_KAFKA_ADMIN_PASSWORD"), wrongPassword}
}

const wrongPassword = "not-the-password-0123"

func noSecrets(t *testing.T, s *testenv.Secure, what, out string) {
	t.Helper()
	for _, p := range secrets(s) {
		if p != "" && strings.Contains(out, p) {
			t.Fatalf("%s prints a password:\n%s", what, out)
		}
	}
}

type refusal struct {
	name, want string
	env        []string
}

// securePGRefusals: scoop mappings list against the secure PostgreSQL with
// one thing wrong each time.
func securePGRefusals(t *testing.T, s *testenv.Secure) {
	e := secureE2E(t, s, "mappings: []\n")
	pw, ca, port := s.Get("SCOOP_SECURE_PG_PASSWORD"), s.CAFile(), s.Get("SCOOP_SECURE_PG_PORT")
	verify := "sslmode=verify-full&sslrootcert="
	at := "connect to PostgreSQL: failed to connect to `user=scoop database=monolith`: 127.0.0.1:" + port
	cases := []refusal{
		{"wrong CA", at + " (127.0.0.1): failed to write startup message: write failed: tls: failed to verify certificate: x509: certificate signed by unknown authority (fix: the server's certificate is not signed by the CA in the URL's sslrootcert (or, without it, by one of the system's))",
			[]string{"SCOOP_SOURCE_URL=" + s.PGURLWith("monolith", "127.0.0.1", pw, verify+s.OtherCAFile())}},
		{"wrong password", at + ` (127.0.0.1): failed SASL auth: FATAL: password authentication failed for user "scoop" (SQLSTATE 28P01) (fix: the server refused the URL's user and password)`,
			[]string{"SCOOP_SOURCE_URL=" + s.PGURLWith("monolith", "127.0.0.1", wrongPassword, verify+ca)}},
		{"plaintext to the TLS-only port", at + ` (127.0.0.1): server error: FATAL: no pg_hba.conf entry for host "127.0.0.1", user "scoop", database "monolith", no encryption (SQLSTATE 28000) (fix: the server takes this user over TLS only: set sslmode=verify-full and sslrootcert in the URL)`,
			[]string{"SCOOP_SOURCE_URL=" + s.PGURLWith("monolith", "127.0.0.1", pw, "sslmode=disable")}},
		{"certificate for another host", at + " (localhost): failed to write startup message: write failed: tls: failed to verify certificate: x509: certificate is not valid for any names, but wanted to match localhost (fix: the server's certificate does not name the URL's host: connect by a name or address it holds (sslmode=verify-full checks it))",
			[]string{"SCOOP_SOURCE_URL=" + s.PGURLWith("monolith", "localhost", pw, verify+ca)}},
		{"TLS to a plaintext server", "connect to PostgreSQL: failed to connect to `user=postgres database=monolith`: 127.0.0.1:" + testenv.PGPort + " (127.0.0.1): tls error: server refused TLS connection (fix: the server does not offer TLS (ssl is off there) but the URL's sslmode asks for it)",
			[]string{"SCOOP_SOURCE_URL=postgres://postgres:" + wrongPassword + "@127.0.0.1:" + testenv.PGPort + "/monolith?sslmode=require"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := (&e2e{env: append(append([]string{}, e.env...), tc.env...)}).cli(t, "mappings", "list")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
			noSecrets(t, s, "the refusal", out+err.Error())
		})
	}
}

// secureKafkaRefusals: scoop replay against the secure Kafka with one
// setting wrong each time (and SASL PLAIN without TLS, refused before any
// connection).
func secureKafkaRefusals(t *testing.T, s *testenv.Secure) {
	mono := s.Conn(t, "monolith")
	table := testenv.Name("seck")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE public.%s (id int PRIMARY KEY)`, schema.QuoteIdent(table)))
	e := secureE2E(t, s, "mappings: []\n")
	file := writeMappings(t, fmt.Sprintf("mappings:\n  - name: r\n    source: public.%s\n    store: accounts\n", table))
	if _, err := e.cli(t, "mappings", "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	b := s.Broker()
	cases := []refusal{
		{"wrong CA", "kafka: connect to " + b + ": failed to dial: tls: failed to verify certificate: x509: certificate signed by unknown authority (fix: the broker's certificate is not signed by the CA in SCOOP_KAFKA_CA_FILE (or, when that is empty, by one of the system's))",
			[]string{"SCOOP_KAFKA_CA_FILE=" + s.OtherCAFile()}},
		{"wrong password", "kafka: connect to " + b + ": could not successfully authenticate to " + b + " with SASL: [58] SASL Authentication Failed: SASL Authentication failed (fix: the broker refused SCOOP_KAFKA_USERNAME=scoop and SCOOP_KAFKA_PASSWORD for SCOOP_KAFKA_SASL_MECHANISM=scram-sha-512)",
			[]string{"SCOOP_KAFKA_PASSWORD=" + wrongPassword}},
		{"wrong PLAIN password", "kafka: connect to " + b + ": could not successfully authenticate to " + b + " with SASL: [58] SASL Authentication Failed: SASL Authentication failed (fix: the broker refused SCOOP_KAFKA_USERNAME=scoop and SCOOP_KAFKA_PASSWORD for SCOOP_KAFKA_SASL_MECHANISM=plain)",
			[]string{"SCOOP_KAFKA_SASL_MECHANISM=plain", "SCOOP_KAFKA_PASSWORD=" + wrongPassword}},
		{"mechanism the broker does not offer", "kafka: connect to " + b + ": could not successfully authenticate to " + b + " with SASL: SASL handshake failed: [33] Unsupported SASL Mechanism: the broker does not support the requested SASL mechanism (fix: the broker does not offer SCOOP_KAFKA_SASL_MECHANISM=scram-sha-256)",
			[]string{"SCOOP_KAFKA_SASL_MECHANISM=scram-sha-256"}},
		{"plaintext to the TLS port", "kafka: connect to " + b + ": could not successfully authenticate to " + b + " with SASL: SASL handshake failed: EOF (fix: the broker hung up: if its listener in SCOOP_KAFKA_BROKERS is SSL or SASL_SSL, set SCOOP_KAFKA_TLS=true)",
			[]string{"SCOOP_KAFKA_TLS=false", "SCOOP_KAFKA_CA_FILE="}},
		{"TLS to a plaintext broker", "kafka: connect to " + testenv.Broker() + ": failed to dial: EOF (fix: the broker hung up on the TLS handshake: its listener in SCOOP_KAFKA_BROKERS is probably plaintext (SCOOP_KAFKA_TLS=true asks for TLS))",
			[]string{"SCOOP_KAFKA_BROKERS=" + testenv.Broker()}},
		{"certificate for another host", "kafka: connect to localhost" + b[strings.LastIndex(b, ":"):] + ": failed to dial: tls: failed to verify certificate: x509: certificate is not valid for any names, but wanted to match localhost (fix: the broker's certificate does not name the host dialled: give in SCOOP_KAFKA_BROKERS a name or address the certificate holds)",
			[]string{"SCOOP_KAFKA_BROKERS=localhost" + b[strings.LastIndex(b, ":"):]}},
		{"PLAIN without TLS", "kafka: SCOOP_KAFKA_SASL_MECHANISM=plain without SCOOP_KAFKA_TLS=true would send SCOOP_KAFKA_PASSWORD in clear: set SCOOP_KAFKA_TLS=true (or SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH=true to accept that)",
			[]string{"SCOOP_KAFKA_TLS=false", "SCOOP_KAFKA_CA_FILE=", "SCOOP_KAFKA_SASL_MECHANISM=plain"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := (&e2e{env: append(append([]string{}, e.env...), tc.env...)}).cli(t, "replay", "r", "--from-offset", "0", "--wait", "0")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
			noSecrets(t, s, "the refusal", out+err.Error())
		})
	}
}

// secureCassandraRefusals: a scoop whose Cassandra settings are wrong in
// one way each pauses the mapping with an error naming the setting (the
// store may come back, so it is retried, not fatal).
func secureCassandraRefusals(t *testing.T, s *testenv.Secure) {
	mono := s.Conn(t, "monolith")
	table := testenv.Name("secc")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE public.%s (id int PRIMARY KEY)`, schema.QuoteIdent(table)))
	mappings := fmt.Sprintf("mappings:\n  - name: c\n    source: public.%s\n    store: orders\n", table)
	cases := []refusal{
		{"wrong CA", "mapping c: connect to Cassandra [127.0.0.1]: gocql: unable to create session: unable to discover protocol version: tls: failed to verify certificate: x509: certificate signed by unknown authority (fix: the node's certificate is not signed by the CA in SCOOP_CASSANDRA_CA_FILE (or, when that is empty, by one of the system's))",
			[]string{"SCOOP_CASSANDRA_CA_FILE=" + s.OtherCAFile()}},
		{"wrong password", "mapping c: connect to Cassandra [127.0.0.1]: gocql: unable to create session: unable to discover protocol version: Provided username scoop and/or password are incorrect (fix: the node refused SCOOP_CASSANDRA_USERNAME and SCOOP_CASSANDRA_PASSWORD)",
			[]string{"SCOOP_CASSANDRA_PASSWORD=" + wrongPassword}},
		{"plaintext to the TLS port", "mapping c: connect to Cassandra [127.0.0.1]: gocql: unable to create session: unable to discover protocol version: read tcp 127.0.0.1:{port}->127.0.0.1:" + s.CassandraAddr()[strings.LastIndex(s.CassandraAddr(), ":")+1:] + ": read: connection reset by peer (fix: the node hung up: if it requires client encryption, set SCOOP_CASSANDRA_TLS=true (and SCOOP_CASSANDRA_CA_FILE))",
			[]string{"SCOOP_CASSANDRA_TLS=false", "SCOOP_CASSANDRA_CA_FILE="}},
		{"TLS to a plaintext node", "mapping c: connect to Cassandra [127.0.0.1]: gocql: unable to create session: unable to discover protocol version: tls: first record does not look like a TLS handshake (fix: the node did not answer the TLS handshake: its native port is probably plaintext (SCOOP_CASSANDRA_TLS=true asks for TLS))",
			[]string{"@store=cassandra://" + testenv.CassandraAddr()}},
		{"certificate for another host", "mapping c: connect to Cassandra [localhost]: gocql: unable to create session: unable to discover protocol version: tls: failed to verify certificate: x509: certificate is not valid for any names, but wanted to match localhost (fix: the node's certificate does not name the host of the store's URL: connect by a name or address it holds)",
			[]string{"@store=cassandra://localhost" + s.CassandraAddr()[strings.LastIndex(s.CassandraAddr(), ":"):]}},
	}
	procs := make([]*proc, len(cases))
	for i, tc := range cases {
		e := secureE2E(t, s, mappings)
		env := e.env
		for _, kv := range tc.env {
			if v, ok := strings.CutPrefix(kv, "@store="); ok {
				kv = "SCOOP_STORE_ORDERS_URL=" + v + "/" + e.keyspace
			}
			env = append(env, kv)
		}
		procs[i] = startProc(t, env)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := procs[i]
			// The whole error, exactly; {port} stands for the client's port.
			want := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(tc.want), `\{port\}`, `\d+`) + "$")
			errText := regexp.MustCompile(`msg="mapping paused; retrying" mapping=c store=orders error="((?:[^"\\]|\\.)*)"`)
			waitFor(t, d, "the mapping paused naming the setting", 20*time.Second, func() (bool, string) {
				var last string
				for _, m := range errText.FindAllStringSubmatch(d.logs(), -1) {
					last = strings.ReplaceAll(m[1], `\"`, `"`)
					if want.MatchString(last) {
						return true, ""
					}
				}
				return false, fmt.Sprintf("got  %s\nwant %s", last, tc.want)
			})
			noSecrets(t, s, "the log", d.logs())
		})
	}
}

// secureFailingStart: scoop run with a wrong Kafka password stops at once
// naming the setting, after warning about a source URL without sslmode;
// nothing it printed holds a password (the URL's included).
func secureFailingStart(t *testing.T, s *testenv.Secure) {
	e := secureE2E(t, s, "mappings: []\n")
	env := append(setEnv(e.env, "SCOOP_SOURCE_URL", s.PGURLWith("monolith", "127.0.0.1", s.Get("SCOOP_SECURE_PG_PASSWORD"), "")),
		"SCOOP_KAFKA_PASSWORD="+wrongPassword)
	out, err := waitExit(t, startProc(t, env), 60*time.Second)
	if err == nil {
		t.Fatalf("scoop started with a wrong Kafka password:\n%s", out)
	}
	b := s.Broker()
	for _, want := range []string{
		`level=WARN msg="PostgreSQL URL without sslmode" setting=SCOOP_SOURCE_URL risk="the default (prefer) falls back to plaintext and does not verify the server's certificate, so the password and the data can be read or changed on the way; set sslmode=verify-full and sslrootcert (or sslmode=disable to say plaintext is meant)"`,
		"scoop: kafka: connect to " + b + ": could not successfully authenticate to " + b + " with SASL: [58] SASL Authentication Failed: SASL Authentication failed (fix: the broker refused SCOOP_KAFKA_USERNAME=scoop and SCOOP_KAFKA_PASSWORD for SCOOP_KAFKA_SASL_MECHANISM=scram-sha-512)\n",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("the output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "without sslmode") != 1 {
		t.Fatalf("one warning expected (the stores' URLs have sslmode):\n%s", out)
	}
	noSecrets(t, s, "the output of a failing start", out)
}

// securePGExpired: PostgreSQL serving a certificate of the right CA and
// host that expired yesterday is refused, naming the cause. The profile's
// certificate is back when the test ends.
func securePGExpired(t *testing.T, s *testenv.Secure) {
	dir := filepath.Dir(s.CAFile())
	crt, key := filepath.Join(dir, "expired.crt"), filepath.Join(dir, "expired.key")
	writeExpiredCert(t, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), crt, key)
	super := s.SuperConn(t, "postgres")
	reload := func(sqls ...string) {
		for _, q := range sqls {
			testenv.Exec(t, super, q)
		}
		testenv.Exec(t, super, `SELECT pg_reload_conf()`)
	}
	reload(fmt.Sprintf(`ALTER SYSTEM SET ssl_cert_file = '%s'`, crt), fmt.Sprintf(`ALTER SYSTEM SET ssl_key_file = '%s'`, key))
	t.Cleanup(func() { reload(`ALTER SYSTEM RESET ssl_cert_file`, `ALTER SYSTEM RESET ssl_key_file`) })
	want := regexp.MustCompile("^" + regexp.QuoteMeta("connect to PostgreSQL: failed to connect to `user=scoop database=monolith`: 127.0.0.1:"+s.Get("SCOOP_SECURE_PG_PORT")+
		" (127.0.0.1): failed to write startup message: write failed: tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time ") +
		`\S+ is after \S+` + regexp.QuoteMeta(" (fix: the server's certificate cannot be trusted (expired or not yet valid); the URL's sslrootcert cannot make it so)") + "$")
	e := secureE2E(t, s, "mappings: []\n")
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := e.cli(t, "mappings", "list")
		if err != nil {
			last = err.Error()
			if want.MatchString(last) {
				noSecrets(t, s, "the refusal", out+last)
				return
			}
		} else {
			last = "accepted: " + out
		}
		if time.Now().After(deadline) {
			t.Fatalf("got  %s\nwant %s", last, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeExpiredCert writes a key and a certificate for IP 127.0.0.1 signed
// by the CA that expired a day ago, readable by the server.
func writeExpiredCert(t *testing.T, caCrt, caKey, crtPath, keyPath string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(caCrt, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	// PostgreSQL wants its key owned by the user it runs as (postgres,
	// when the stack runs as root).
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{crtPath, keyPath} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
}

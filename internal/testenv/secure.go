package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
)

// Secure is the secure profile of scripts/stack (up --secure): PostgreSQL,
// Kafka and Cassandra beside the default stack, on their own ports and
// directory, with TLS from a throw-away CA and passwords everywhere. Its
// values (ports, CA files, passwords) come from the profile's secure.env.
type Secure struct {
	vals map[string]string
}

// SecureDir is the profile's stack directory (SCOOP_SECURE_STACK_DIR,
// default secure in the default stack's directory).
func SecureDir() string {
	return env("SCOOP_SECURE_STACK_DIR", filepath.Join(stackDir(), "secure"))
}

// StartSecure makes the secure profile afresh and starts it (under a file
// lock, so two test binaries do not share one), and stops it when the test
// ends: its data is thrown away at the next start. SCOOP_SECURE_KEEP=1
// leaves it running (to run the tests again quickly).
func StartSecure(t testing.TB) *Secure {
	t.Helper()
	Require(t)
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "scoop-secure.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer lock.Close()
		if os.Getenv("SCOOP_SECURE_KEEP") != "" {
			return
		}
		// SIGKILL: nothing of the profile is kept, so a clean shutdown
		// would only cost time.
		if err := secureStack("kill"); err != nil {
			t.Errorf("stop the secure profile: %v", err)
		}
	})
	start := time.Now()
	if err := secureStack("up"); err != nil {
		t.Fatal(err)
	}
	t.Logf("secure profile up in %s", time.Since(start).Round(100*time.Millisecond))
	s := &Secure{vals: map[string]string{}}
	f, err := os.Open(filepath.Join(SecureDir(), "secure.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			s.vals[k] = v
		}
	}
	return s
}

func secureStack(args ...string) error {
	return stackWith("", []string{"SCOOP_SECURE_STACK_DIR=" + SecureDir(),
		"SCOOP_STACK_JARS=" + env("SCOOP_STACK_JARS", filepath.Join(stackDir(), "jars"))}, append(args, "--secure")...)
}

// Get is one value of secure.env, e.g. SCOOP_SECURE_PG_PASSWORD.
func (s *Secure) Get(name string) string { return s.vals[name] }

// CAFile is the throw-away CA that signed every server's certificate;
// OtherCAFile is a CA that signed none.
func (s *Secure) CAFile() string      { return s.vals["SCOOP_SECURE_CA_FILE"] }
func (s *Secure) OtherCAFile() string { return s.vals["SCOOP_SECURE_OTHER_CA_FILE"] }

// PGURL is role scoop's URL of a database, verified TLS (verify-full).
func (s *Secure) PGURL(db string) string {
	return s.PGURLWith(db, "127.0.0.1", s.Get("SCOOP_SECURE_PG_PASSWORD"), "sslmode=verify-full&sslrootcert="+url.QueryEscape(s.CAFile()))
}

// PGURLWith is role scoop's URL with another host, password or query.
func (s *Secure) PGURLWith(db, host, password, query string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("scoop", password),
		Host: host + ":" + s.Get("SCOOP_SECURE_PG_PORT"), Path: "/" + db, RawQuery: query}
	return u.String()
}

// Conn opens role scoop's connection to db, closed when the test ends.
func (s *Secure) Conn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.PGURL(db))
	if err != nil {
		t.Fatalf("connect to the secure %s: %v", db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// SuperConn opens the superuser's connection to db over the profile's Unix
// socket (its only way in), closed when the test ends.
func (s *Secure) SuperConn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable",
		s.Get("SCOOP_SECURE_PG_SOCKET"), s.Get("SCOOP_SECURE_PG_PORT"), db))
	if err != nil {
		t.Fatalf("connect to the secure %s as postgres: %v", db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Broker is the SASL_SSL listener.
func (s *Secure) Broker() string { return s.Get("SCOOP_SECURE_KAFKA_BROKER") }

// CassandraAddr is the encrypted CQL address.
func (s *Secure) CassandraAddr() string { return s.Get("SCOOP_SECURE_CASSANDRA_ADDR") }

// Env is scoop's TLS and SASL settings for the profile (SCRAM-SHA-512).
func (s *Secure) Env() []string {
	return []string{
		"SCOOP_KAFKA_TLS=true", "SCOOP_KAFKA_CA_FILE=" + s.CAFile(),
		"SCOOP_KAFKA_SASL_MECHANISM=scram-sha-512", "SCOOP_KAFKA_USERNAME=scoop",
		"SCOOP_KAFKA_PASSWORD=" + s.Get("SCOOP_SECURE_KAFKA_PASSWORD"),
		"SCOOP_CASSANDRA_TLS=true", "SCOOP_CASSANDRA_CA_FILE=" + s.CAFile(),
		"SCOOP_CASSANDRA_USERNAME=scoop", "SCOOP_CASSANDRA_PASSWORD=" + s.Get("SCOOP_SECURE_CASSANDRA_PASSWORD"),
	}
}

// Cassandra opens a session as role scoop over verified TLS, closed when
// the test ends.
func (s *Secure) Cassandra(t testing.TB, keyspace string) *gocql.Session {
	t.Helper()
	host, port, _ := strings.Cut(s.CassandraAddr(), ":")
	c := gocql.NewCluster(host)
	fmt.Sscan(port, &c.Port)
	c.Keyspace = keyspace
	c.Timeout, c.ConnectTimeout = 10*time.Second, 10*time.Second
	c.SslOpts = &gocql.SslOptions{CaPath: s.CAFile(), EnableHostVerification: true}
	c.Authenticator = gocql.PasswordAuthenticator{Username: "scoop", Password: s.Get("SCOOP_SECURE_CASSANDRA_PASSWORD")}
	sess, err := c.CreateSession()
	if err != nil {
		t.Fatalf("connect to the secure Cassandra: %v", err)
	}
	t.Cleanup(sess.Close)
	return sess
}

package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// Cluster is a throw-away PostgreSQL server with its own settings, for the
// tests that need a server configured differently from the stack's (another
// wal_level, a tiny max_slot_wal_keep_size). It is stopped when the test ends.
type Cluster struct {
	Port int
	dir  string
	bin  string
}

// URL of a database of the cluster.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

func pgBin(t testing.TB) string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		t.Fatal("no PostgreSQL binaries under /usr/lib/postgresql (run scripts/stack up)")
	}
	return filepath.Dir(matches[len(matches)-1])
}

// asPostgres runs a server binary as the postgres OS user when we are root.
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// NewCluster initdbs and starts a server on a free loopback port with the
// given settings (name=value).
func NewCluster(t testing.TB, settings ...string) *Cluster {
	t.Helper()
	bin := pgBin(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "scoop-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		var uid, gid int
		fmt.Sscan(u.Uid, &uid)
		fmt.Sscan(u.Gid, &gid)
		os.Chown(dir, uid, gid)
	}
	c := &Cluster{Port: port, dir: dir, bin: bin}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := []string{"listen_addresses = '127.0.0.1'", fmt.Sprintf("port = %d", port), "unix_socket_directories = '" + dir + "'", "max_wal_senders = 4", "max_replication_slots = 4", "fsync = off"}
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		conf = append(conf, fmt.Sprintf("%s = '%s'", k, v))
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n" + strings.Join(conf, "\n") + "\n")
	f.Close()
	hba := "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		exec.Command("chown", "postgres", filepath.Join(data, "pg_hba.conf")).Run()
	}
	if out, err := asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "log"), "-w", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("start cluster: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop").Run()
		os.RemoveAll(dir)
	})
	return c
}

package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadStoreURLsHideThePassword: a store URL that does not parse, or that
// the sink refuses, is named in the error without its password, however the
// password breaks the URL.
func TestBadStoreURLsHideThePassword(t *testing.T) {
	const pw = "S3cr3tPw"
	cases := []struct{ url, want string }{
		{"postgres://scoop:" + pw + "@127.0.0.1:notaport/service",
			`SCOOP_STORE_BAD_URL="postgres://scoop:xxxxx@127.0.0.1:notaport/service" does not parse as a URL: an invalid port (a '/', '@' or ':' in the password must be %-encoded)`},
		// A '/' in the password: url.Parse takes its start for a port.
		{"postgres://scoop:" + pw[:2] + "/" + pw[2:] + "@127.0.0.1/service",
			`SCOOP_STORE_BAD_URL="postgres://scoop:xxxxx@127.0.0.1/service" does not parse as a URL: an invalid port (a '/', '@' or ':' in the password must be %-encoded)`},
		{"postgres://scoop:" + pw + "%zz@127.0.0.1/service",
			`SCOOP_STORE_BAD_URL="postgres://scoop:xxxxx@127.0.0.1/service" does not parse as a URL: an invalid %-escape`},
		{"cassandra://scoop:" + pw + "@127.0.0.1:9042/ks?replication_factor=many",
			`SCOOP_STORE_BAD_URL: cassandra URL "cassandra://scoop:xxxxx@127.0.0.1:9042/ks?replication_factor=many": replication_factor must be a positive number`},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			t.Setenv("SCOOP_STORE_BAD_URL", c.url)
			var out, errOut bytes.Buffer
			if code := runMain([]string{"mappings", "list"}, &out, &errOut); code == 0 {
				t.Fatal("a bad store URL was accepted")
			}
			all := out.String() + errOut.String()
			if strings.Contains(all, pw) || strings.Contains(all, pw[2:]) {
				t.Fatalf("the password is printed:\n%s", all)
			}
			if got := strings.TrimSpace(errOut.String()); got != "scoop: "+c.want {
				t.Fatalf("got  %s\nwant scoop: %s", got, c.want)
			}
		})
	}
}

// TestPlainWithoutTLSNeedsTheOptIn: SASL PLAIN without TLS is refused at
// start unless SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH=true says it is meant.
func TestPlainWithoutTLSNeedsTheOptIn(t *testing.T) {
	t.Setenv("SCOOP_KAFKA_SASL_MECHANISM", "plain")
	t.Setenv("SCOOP_KAFKA_USERNAME", "scoop")
	t.Setenv("SCOOP_KAFKA_PASSWORD", "S3cr3tPw")
	_, err := loadConfig()
	want := "kafka: SCOOP_KAFKA_SASL_MECHANISM=plain without SCOOP_KAFKA_TLS=true would send SCOOP_KAFKA_PASSWORD in clear: set SCOOP_KAFKA_TLS=true (or SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH=true to accept that)"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	t.Setenv("SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH", "true")
	if _, err := loadConfig(); err != nil {
		t.Fatalf("with the opt-in: %v", err)
	}
	t.Setenv("SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH", "")
	t.Setenv("SCOOP_KAFKA_TLS", "true")
	if _, err := loadConfig(); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
}

package kafka

import (
	"crypto/tls"
	"testing"
)

func TestSecurityTransport(t *testing.T) {
	// Plaintext gets a transport of its own too, never kafka-go's shared
	// default (whose metadata cache misses new topics for seconds).
	a, errA := (Security{}).Transport()
	b, errB := (Security{}).Transport()
	if errA != nil || errB != nil || a == nil || a == b || a.TLS != nil || a.SASL != nil {
		t.Fatalf("plaintext: %v %v, %v %v", a, errA, b, errB)
	}
	tr, err := Security{TLS: true, Mechanism: "scram-sha-256", Username: "u", Password: "p"}.Transport()
	if err != nil || tr.TLS == nil || tr.TLS.MinVersion != tls.VersionTLS12 || tr.TLS.InsecureSkipVerify || tr.SASL == nil || tr.SASL.Name() != "SCRAM-SHA-256" {
		t.Fatalf("tls+scram: %+v %v", tr, err)
	}
	// PLAIN without TLS sends the password as it is: refused unless allowed.
	_, err = Security{Mechanism: "plain", Username: "u", Password: "p"}.Dialer()
	if err == nil || err.Error() != "kafka: SCOOP_KAFKA_SASL_MECHANISM=plain without SCOOP_KAFKA_TLS=true would send SCOOP_KAFKA_PASSWORD in clear: set SCOOP_KAFKA_TLS=true (or SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH=true to accept that)" {
		t.Fatalf("plain without TLS: %v", err)
	}
	d, err := Security{Mechanism: "plain", Username: "u", Password: "p", AllowPlaintextAuth: true}.Dialer()
	if err != nil || d.TLS != nil || d.SASLMechanism == nil || d.SASLMechanism.Name() != "PLAIN" {
		t.Fatalf("plain dialer, allowed: %+v %v", d, err)
	}
	if d, err := (Security{TLS: true, Mechanism: "plain", Username: "u", Password: "p"}).Dialer(); err != nil || d.TLS == nil {
		t.Fatalf("plain over TLS: %+v %v", d, err)
	}
}

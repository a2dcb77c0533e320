package kafka

import (
	"crypto/tls"
	"testing"
)

func TestSecurityTransport(t *testing.T) {
	if tr, err := (Security{}).Transport(); err != nil || tr != nil {
		t.Fatalf("plaintext: %v %v", tr, err)
	}
	tr, err := Security{TLS: true, Mechanism: "scram-sha-256", Username: "u", Password: "p"}.Transport()
	if err != nil || tr.TLS == nil || tr.TLS.MinVersion != tls.VersionTLS12 || tr.TLS.InsecureSkipVerify || tr.SASL == nil || tr.SASL.Name() != "SCRAM-SHA-256" {
		t.Fatalf("tls+scram: %+v %v", tr, err)
	}
	d, err := Security{Mechanism: "plain", Username: "u", Password: "p"}.Dialer()
	if err != nil || d.TLS != nil || d.SASLMechanism == nil || d.SASLMechanism.Name() != "PLAIN" {
		t.Fatalf("plain dialer: %+v %v", d, err)
	}
}

package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Security is how scoop reaches the brokers: TLS (1.2 or later, verified
// against the system roots or CAFile; never InsecureSkipVerify) and SASL
// (PLAIN or SCRAM-SHA-256/512). The zero value is plaintext.
type Security struct {
	TLS       bool
	CAFile    string
	Mechanism string // "", "plain", "scram-sha-256", "scram-sha-512"
	Username  string
	Password  string
}

// tlsConfig builds the TLS configuration, or nil for plaintext.
func (s Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		if s.CAFile != "" {
			return nil, fmt.Errorf("kafka: SCOOP_KAFKA_CA_FILE is set but SCOOP_KAFKA_TLS is not true")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: SCOOP_KAFKA_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: SCOOP_KAFKA_CA_FILE %s holds no PEM certificate", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func (s Security) mechanism() (sasl.Mechanism, error) {
	m := strings.ToLower(s.Mechanism)
	if m == "" || m == "none" {
		return nil, nil
	}
	if s.Username == "" {
		return nil, fmt.Errorf("kafka: SCOOP_KAFKA_SASL_MECHANISM=%s needs SCOOP_KAFKA_USERNAME and SCOOP_KAFKA_PASSWORD", s.Mechanism)
	}
	switch m {
	case "plain":
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, fmt.Errorf("kafka: SCOOP_KAFKA_SASL_MECHANISM=%q: use plain, scram-sha-256 or scram-sha-512", s.Mechanism)
}

// parts returns the TLS configuration and SASL mechanism (both nil for
// plaintext).
func (s Security) parts() (*tls.Config, sasl.Mechanism, error) {
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	mech, err := s.mechanism()
	return tlsCfg, mech, err
}

// Transport returns the producer/admin transport (nil for plaintext).
func (s Security) Transport() (*kafkago.Transport, error) {
	tlsCfg, mech, err := s.parts()
	if err != nil || (tlsCfg == nil && mech == nil) {
		return nil, err
	}
	return &kafkago.Transport{TLS: tlsCfg, SASL: mech, DialTimeout: 10 * time.Second}, nil
}

// Dialer returns the consumers' dialer (nil for plaintext).
func (s Security) Dialer() (*kafkago.Dialer, error) {
	tlsCfg, mech, err := s.parts()
	if err != nil || (tlsCfg == nil && mech == nil) {
		return nil, err
	}
	return &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: tlsCfg, SASLMechanism: mech}, nil
}

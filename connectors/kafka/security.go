package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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
// (PLAIN or SCRAM-SHA-256/512). The zero value is plaintext. PLAIN sends
// the password as it is, so it needs TLS unless AllowPlaintextAuth says
// that is accepted.
type Security struct {
	TLS                bool
	CAFile             string
	Mechanism          string // "", "plain", "scram-sha-256", "scram-sha-512"
	Username           string
	Password           string
	AllowPlaintextAuth bool
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
		if !s.TLS && !s.AllowPlaintextAuth {
			return nil, errors.New("kafka: SCOOP_KAFKA_SASL_MECHANISM=plain without SCOOP_KAFKA_TLS=true would send SCOOP_KAFKA_PASSWORD in clear: set SCOOP_KAFKA_TLS=true (or SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH=true to accept that)")
		}
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

// Transport returns a producer/admin transport of its own, also for
// plaintext: kafka-go's default transport is shared by the whole process and
// answers from a metadata cache (refreshed every 6 s) that does not know a
// topic created since, so a replay right after a mapping's topic appeared
// failed with "Unknown Topic Or Partition".
func (s Security) Transport() (*kafkago.Transport, error) {
	tlsCfg, mech, err := s.parts()
	if err != nil {
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

// Explain adds to an error of connecting to a broker the setting that most
// likely caused it, so that it names what to fix; other errors are returned
// as they are.
func (s Security) Explain(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var expired x509.CertificateInvalidError
	var kerr kafkago.Error
	var hint string
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unknown):
		hint = "the broker's certificate is not signed by the CA in SCOOP_KAFKA_CA_FILE (or, when that is empty, by one of the system's)"
	case errors.As(err, &host):
		hint = "the broker's certificate does not name the host dialled: give in SCOOP_KAFKA_BROKERS a name or address the certificate holds"
	case errors.As(err, &expired):
		hint = "the broker's certificate cannot be trusted (expired or not yet valid); SCOOP_KAFKA_CA_FILE cannot make it so"
	case errors.As(err, &kerr) && kerr == kafkago.SASLAuthenticationFailed:
		hint = fmt.Sprintf("the broker refused SCOOP_KAFKA_USERNAME=%s and SCOOP_KAFKA_PASSWORD for SCOOP_KAFKA_SASL_MECHANISM=%s", s.Username, s.Mechanism)
	case errors.As(err, &kerr) && kerr == kafkago.UnsupportedSASLMechanism:
		hint = fmt.Sprintf("the broker does not offer SCOOP_KAFKA_SASL_MECHANISM=%s", s.Mechanism)
	case errors.As(err, &kerr) && kerr == kafkago.IllegalSASLState:
		hint = "the listener does not take SASL: unset SCOOP_KAFKA_SASL_MECHANISM or use the broker's SASL listener"
	case errors.Is(err, io.EOF) && s.TLS:
		hint = "the broker hung up on the TLS handshake: its listener in SCOOP_KAFKA_BROKERS is probably plaintext (SCOOP_KAFKA_TLS=true asks for TLS)"
	case errors.Is(err, io.EOF):
		hint = "the broker hung up: if its listener in SCOOP_KAFKA_BROKERS is SSL or SASL_SSL, set SCOOP_KAFKA_TLS=true"
	default:
		return err
	}
	return fmt.Errorf("%w (fix: %s)", err, hint)
}

// CheckSecurity connects to the brokers once with the TLS and SASL settings
// and returns the first error Explain recognises, naming the setting to
// fix. Brokers that do not answer are not its business (the rest of scoop
// retries them): it returns nil then.
func CheckSecurity(ctx context.Context, brokers []string, s Security) error {
	d, err := s.Dialer()
	if err != nil {
		return err
	}
	if d == nil {
		d = &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	for _, b := range brokers {
		// A broker that hangs up may be restarting: only one that does so
		// three times running is taken for a TLS mismatch.
		for attempt := 1; ; attempt++ {
			err := try(ctx, d, b)
			if err == nil {
				return nil
			}
			explained := s.Explain(err)
			if explained == err {
				break
			}
			if !errors.Is(err, io.EOF) || attempt == 3 {
				return fmt.Errorf("kafka: connect to %s: %w", b, explained)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// try connects to one broker and asks it for the cluster's brokers: a
// request past the handshake, where a plaintext client on a TLS listener,
// or one without SASL on a SASL listener, fails.
func try(ctx context.Context, d *kafkago.Dialer, broker string) error {
	c, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Brokers()
	return err
}

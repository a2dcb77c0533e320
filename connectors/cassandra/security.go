package cassandra

import (
	"fmt"
	"strings"
)

// ExplainConnect adds to a failed connection to Cassandra the setting that
// most likely caused it, so that the error names what to fix; other errors
// are returned as they are. gocql flattens the errors of its handshake into
// text, hence the matching on it.
func ExplainConnect(err error, tls bool) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var hint string
	switch {
	case strings.Contains(msg, "x509: certificate signed by unknown authority"):
		hint = "the node's certificate is not signed by the CA in SCOOP_CASSANDRA_CA_FILE (or, when that is empty, by one of the system's)"
	case strings.Contains(msg, "x509: certificate is valid for"), strings.Contains(msg, "x509: certificate is not valid for any names"):
		hint = "the node's certificate does not name the host of the store's URL: connect by a name or address it holds"
	case strings.Contains(msg, "x509: certificate has expired or is not yet valid"):
		hint = "the node's certificate cannot be trusted (expired or not yet valid); SCOOP_CASSANDRA_CA_FILE cannot make it so"
	case strings.Contains(msg, "and/or password are incorrect"):
		hint = "the node refused SCOOP_CASSANDRA_USERNAME and SCOOP_CASSANDRA_PASSWORD"
	case strings.Contains(msg, "authentication required"), strings.Contains(msg, "requires authentication"):
		hint = "the node requires a login: set SCOOP_CASSANDRA_USERNAME and SCOOP_CASSANDRA_PASSWORD"
	case tls && (strings.Contains(msg, "first record does not look like a TLS handshake") || strings.Contains(msg, "EOF")):
		hint = "the node did not answer the TLS handshake: its native port is probably plaintext (SCOOP_CASSANDRA_TLS=true asks for TLS)"
	case !tls && (strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "no response to connection startup")):
		hint = "the node hung up: if it requires client encryption, set SCOOP_CASSANDRA_TLS=true (and SCOOP_CASSANDRA_CA_FILE)"
	default:
		return err
	}
	return fmt.Errorf("%w (fix: %s)", err, hint)
}

package postgres

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// sessionParams fix the text output of values (see doc.go).
var sessionParams = map[string]string{
	"DateStyle":          "ISO",
	"TimeZone":           "UTC",
	"IntervalStyle":      "iso_8601",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
	"application_name":   "scoop",
}

func parseConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse PostgreSQL URL: %w", err)
	}
	for k, v := range sessionParams {
		if _, set := cfg.RuntimeParams[k]; !set || k != "application_name" {
			cfg.RuntimeParams[k] = v
		}
	}
	return cfg, nil
}

// connect opens a regular session.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := parseConfig(url)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", explainConnect(err))
	}
	return conn, nil
}

// connectReplication opens a logical replication session.
func connectReplication(ctx context.Context, url string) (*pgconn.PgConn, error) {
	cfg, err := parseConfig(url)
	if err != nil {
		return nil, err
	}
	pc := cfg.Config.Copy()
	pc.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open replication connection: %w", explainConnect(err))
	}
	return conn, nil
}

// explainConnect adds to a failed connection the part of the URL that most
// likely caused it (sslrootcert, sslmode, the host, the password), so that
// the error names what to fix; other errors are returned as they are.
func explainConnect(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var pgErr *pgconn.PgError
	var hint string
	switch {
	case errors.As(err, &unknown):
		hint = "the server's certificate is not signed by the CA in the URL's sslrootcert (or, without it, by one of the system's)"
	case errors.As(err, &host):
		hint = "the server's certificate does not name the URL's host: connect by a name or address it holds (sslmode=verify-full checks it)"
	case errors.As(err, &invalid):
		hint = "the server's certificate cannot be trusted (expired or not yet valid); the URL's sslrootcert cannot make it so"
	case errors.As(err, &pgErr) && pgErr.Code == "28P01":
		hint = "the server refused the URL's user and password"
	case errors.As(err, &pgErr) && pgErr.Code == "28000" && strings.Contains(pgErr.Message, "no encryption"):
		hint = "the server takes this user over TLS only: set sslmode=verify-full and sslrootcert in the URL"
	case strings.Contains(err.Error(), "server refused TLS connection"):
		hint = "the server does not offer TLS (ssl is off there) but the URL's sslmode asks for it"
	default:
		return err
	}
	return fmt.Errorf("%w (fix: %s)", err, hint)
}

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url, token string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminEndpoints: health, readiness, Prometheus metrics, and the status
// API behind the admin token, and scoop status using it.
func TestAdminEndpoints(t *testing.T) {
	table := createTable(t, 10)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: adm\n    source: public.%s\n    store: accounts\n", table))
	addr := freeAddr(t)
	env := append([]string{}, e.env...)
	for i, kv := range env {
		if strings.HasPrefix(kv, "SCOOP_ADMIN_ADDR=") {
			env[i] = "SCOOP_ADMIN_ADDR=" + addr
		}
	}
	env = append(env, "SCOOP_ADMIN_TOKEN=sekret")
	d := startProc(t, env)
	waitReady(t, d)
	waitEqual(t, d, "adm", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	base := "http://" + addr
	if code, body := get(t, base+"/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get(t, base+"/readyz", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, metrics := get(t, base+"/metrics", "")
	for _, m := range []string{"scoop_source_snapshot_rows_total 10", "scoop_source_acked_lsn", "scoop_source_retained_wal_bytes", "scoop_source_lag_seconds", `scoop_sink_applied_total{mapping="adm"} 10`, `scoop_sink_paused{mapping="adm"} 0`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	if code, body := get(t, base+"/status", ""); code != 401 || body != "unauthorized: send Authorization: Bearer $SCOOP_ADMIN_TOKEN\n" {
		t.Fatalf("status without token: %d %q", code, body)
	}
	if code, body := get(t, base+"/status", "sekret"); code != 200 || !strings.Contains(body, `"slot":"`+e.slot+`"`) || !strings.Contains(body, `"adm":{`) {
		t.Fatalf("status: %d %s", code, body)
	}
	// The status page is behind the token too.
	if code, _ := get(t, base+"/", ""); code != 401 {
		t.Fatalf("status page without token: %d", code)
	}
	if code, body := get(t, base+"/", "sekret"); code != 200 || !strings.Contains(body, `<tr data-mapping="adm">`) {
		t.Fatalf("status page: %d %s", code, body)
	}
	t.Setenv("SCOOP_ADMIN_ADDR", addr)
	t.Setenv("SCOOP_ADMIN_TOKEN", "sekret")
	var out, errOut bytes.Buffer
	// --json prints the /status document (the table is checked in ops_test.go).
	if code := runMain([]string{"status", "--json"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"applied": 10`) {
		t.Fatalf("scoop status: %d %s %s", code, out.String(), errOut.String())
	}
	t.Setenv("SCOOP_ADMIN_TOKEN", "wrong")
	out.Reset()
	errOut.Reset()
	if code := runMain([]string{"status"}, &out, &errOut); code != 1 || errOut.String() != "scoop: scoop status: 401 Unauthorized: unauthorized: send Authorization: Bearer $SCOOP_ADMIN_TOKEN\n" {
		t.Fatalf("scoop status with a wrong token: %d %q", code, errOut.String())
	}
}

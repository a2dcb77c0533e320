package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

// TestAdminAddressNeedsTokenOffLoopback: an admin server other hosts can
// reach must have a token; loopback ones may go without.
func TestAdminAddressNeedsTokenOffLoopback(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:7070":   "SCOOP_ADMIN_ADDR=0.0.0.0:7070 is reachable from other hosts and SCOOP_ADMIN_TOKEN is not set: set a token (the status page, /status and /debug/pprof then need it) or listen on 127.0.0.1",
		":7070":          "SCOOP_ADMIN_ADDR=:7070 is reachable from other hosts and SCOOP_ADMIN_TOKEN is not set: set a token (the status page, /status and /debug/pprof then need it) or listen on 127.0.0.1",
		"10.1.2.3:7070":  "SCOOP_ADMIN_ADDR=10.1.2.3:7070 is reachable from other hosts and SCOOP_ADMIN_TOKEN is not set: set a token (the status page, /status and /debug/pprof then need it) or listen on 127.0.0.1",
		"127.0.0.1:7070": "",
		"localhost:7070": "",
		"[::1]:7070":     "",
		"127.0.0.1:0":    "",
	} {
		t.Setenv("SCOOP_ADMIN_ADDR", addr)
		t.Setenv("SCOOP_ADMIN_TOKEN", "")
		_, err := loadConfig()
		if got := fmt.Sprint(err); (want == "" && err != nil) || (want != "" && got != want) {
			t.Errorf("%s without a token: got %v, want %q", addr, err, want)
		}
		t.Setenv("SCOOP_ADMIN_TOKEN", "sekret")
		if _, err := loadConfig(); err != nil {
			t.Errorf("%s with a token: %v", addr, err)
		}
	}
}

// TestAdminPprofOnlyWhenAsked: /debug/pprof is not served unless
// SCOOP_ADMIN_PPROF=true, and then only with the admin token.
func TestAdminPprofOnlyWhenAsked(t *testing.T) {
	e := newE2E(t, "mappings: []\n")
	up := func(extra ...string) string {
		addr := freeAddr(t)
		startProc(t, append(setEnv(e.env, "SCOOP_ADMIN_ADDR", addr), extra...))
		deadline := time.Now().Add(30 * time.Second)
		for {
			if code, _ := get(t, "http://"+addr+"/healthz", ""); code == http.StatusOK {
				return "http://" + addr
			}
			if time.Now().After(deadline) {
				t.Fatalf("admin server on %s never answered", addr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	testenv.DropSlot(t, e.slot+"_a")
	testenv.DropSlot(t, e.slot+"_b")
	off := up("SCOOP_SLOT=" + e.slot + "_a")
	if code, body := get(t, off+"/debug/pprof/", ""); code != http.StatusNotFound {
		t.Fatalf("pprof not asked for: %d %s", code, body)
	}
	on := up("SCOOP_SLOT="+e.slot+"_b", "SCOOP_ADMIN_PPROF=true", "SCOOP_ADMIN_TOKEN=sekret")
	if code, body := get(t, on+"/debug/pprof/", ""); code != http.StatusUnauthorized || body != "unauthorized: send Authorization: Bearer $SCOOP_ADMIN_TOKEN\n" {
		t.Fatalf("pprof without the token: %d %q", code, body)
	}
	if code, body := get(t, on+"/debug/pprof/", "sekret"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof with the token: %d %.200s", code, body)
	}
}

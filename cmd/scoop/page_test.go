package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium finds Debian's headless Chromium (apt-get install
// chromium-headless-shell, or chromium).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium-headless-shell", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no headless Chromium: apt-get install chromium-headless-shell")
	return ""
}

// browse loads url in headless Chromium with extra flags and returns its
// standard output.
func browse(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 2000))
	}
	return string(out)
}

// TestStatusPageInChromium: the admin server's page at / shows each
// mapping's state (a healthy one streaming, one whose store is gone paused)
// and the lag chart, in a real browser, offline; the screenshot's path is
// in the test output.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	ok, gone := createTable(t, 3), createTable(t, 3)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: pg\n    source: public.%s\n    store: accounts\n  - name: gone\n    source: public.%s\n    store: gone\n", ok, gone))
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = append(env, "SCOOP_STORE_GONE_URL=postgres://postgres@"+freeAddr(t)+"/service?sslmode=disable", "SCOOP_MONITOR_INTERVAL=200ms")
	d := startProc(t, env)
	waitReady(t, d)
	waitEqual(t, d, "pg", pgOrders(t, "monolith", ok), pgOrders(t, "service", ok))
	waitFor(t, d, "pg streaming, gone paused", 60*time.Second, func() (bool, string) {
		a, _ := mappingState(t, addr, "pg")
		b, _ := mappingState(t, addr, "gone")
		return a == "streaming" && b == "paused", a + " " + b
	})
	url := "http://" + addr + "/"
	dom := browse(t, bin, "--dump-dom", url)
	for _, re := range []string{
		`<tr data-mapping="pg"><td>pg</td><td class="state streaming">streaming</td>`,
		`<tr data-mapping="gone"><td>gone</td><td class="state paused">paused</td>`,
		`<span id="ready" class="bad">not ready</span>`,
		`<li>store gone unreachable: dial tcp 127\.0\.0\.1:\d+: connect: connection refused</li>`,
		`wal_status <b id="wal-status">(reserved|extended)</b>`,
		`<svg id="lag-chart"[^>]*>.*<polyline data-series="pg"`,
	} {
		if !regexp.MustCompile(re).MatchString(dom) {
			t.Errorf("the page lacks %s:\n%s", re, dom)
		}
	}
	if strings.Contains(dom, "http://") && regexp.MustCompile(`(src|href)="https?://`).MatchString(dom) {
		t.Errorf("the page loads something from elsewhere:\n%s", dom)
	}
	shot := filepath.Join(os.TempDir(), "scoop-status-page.png")
	os.Remove(shot)
	browse(t, bin, "--screenshot="+shot, "--window-size=1280,800", url)
	st, err := os.Stat(shot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if st.Size() < 10_000 {
		t.Fatalf("screenshot %s: only %d bytes", shot, st.Size())
	}
	t.Logf("status page screenshot: %s (%d bytes)", shot, st.Size())
}

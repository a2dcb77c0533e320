package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

// demoCmd is scripts/demo with env, in its own process group (so that a
// failed test can stop scoop with it).
func demoCmd(t *testing.T, env ...string) *exec.Cmd {
	cmd := exec.Command("bash", filepath.Join(testenv.Root(), "scripts", "demo"))
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Cleanup(func() {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH once the demo ended
		}
	})
	return cmd
}

// A slot name that is not a plain identifier never reaches the demo's SQL.
func TestDemoRefusesSlotName(t *testing.T) {
	cmd := demoCmd(t, "SCOOP_SLOT=x' OR true --")
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second): // it went on: the cleanup stops it
		t.Fatalf("the demo did not refuse the slot name within 30 s:\n%s", buf.String())
	}
	out := buf.String()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want 2\n%s", err, out)
	}
	if want := "demo: SCOOP_SLOT=x' OR true --: want lower-case letters, digits and _"; !strings.Contains(out, want) {
		t.Fatalf("output %q, want %q", out, want)
	}
}

// make demo, stopped with Ctrl-C, leaves no replication slot (one nobody
// reads keeps WAL until the disk is full) and no snapshot record of it (with
// the record and without the slot, the next demo would refuse to start).
func TestDemoDropsItsSlotOnExit(t *testing.T) {
	testenv.Require(t)
	slot := testenv.Name("demo")
	mono := testenv.Conn(t, "monolith")
	t.Cleanup(func() {
		testenv.DropSlot(t, slot)
		mono.Exec(context.Background(), `DROP PUBLICATION IF EXISTS "`+slot+`"`)
	})
	cmd := demoCmd(t, "SCOOP_SLOT="+slot, "SCOOP_PUBLICATION="+slot, "SCOOP_TOPIC_PREFIX="+slot,
		"SCOOP_DEMO_BIN="+binary, "SCOOP_ADMIN_ADDR=127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out strings.Builder
	// until the demo says it keeps running, then Ctrl-C, then until it ends
	waitFor := func(what string, timeout time.Duration) bool {
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return what == ""
				}
				out.WriteString(l + "\n")
				if what != "" && strings.Contains(l, what) {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	if !waitFor("Ctrl-C stops.", 3*time.Minute) {
		t.Fatalf("the demo did not come up:\n%s", out.String())
	}
	var slots int
	if err := mono.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&slots); err != nil || slots != 1 {
		t.Fatalf("slots named %s while the demo runs: %d (%v)", slot, slots, err)
	}
	cmd.Process.Signal(os.Interrupt)
	if !waitFor("", 2*time.Minute) {
		t.Fatalf("the demo did not end after Ctrl-C:\n%s", out.String())
	}
	cmd.Wait()
	if want := "demo: dropped replication slot " + slot; !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
	var left int
	err = mono.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)
		+ (SELECT count(*) FROM scoop.source_slots WHERE slot = $1) + (SELECT count(*) FROM scoop.source_tables WHERE slot = $1)`, slot).Scan(&left)
	if err != nil || left != 0 {
		t.Fatalf("slot and snapshot records of %s left after the demo: %d (%v)\n%s", slot, left, err, out.String())
	}
}

package main

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"
)

// The first signal stops the daemon and waits for it; a second one, or the
// drain time running out, leaves at once.
func TestShutdownSecondSignalAndDrain(t *testing.T) {
	run := func(drain time.Duration, second bool) (stopped bool, code int, msg string, took time.Duration) {
		sigs := make(chan os.Signal, 2)
		finished := make(chan struct{}) // the daemon never finishes here
		exited := make(chan int, 1)
		var out bytes.Buffer
		stopCalled := make(chan struct{})
		go shutdown(sigs, func() { close(stopCalled) }, drain, finished, &out, func(c int) { exited <- c })
		start := time.Now()
		sigs <- syscall.SIGTERM
		<-stopCalled
		if second {
			sigs <- syscall.SIGINT
		}
		select {
		case code = <-exited:
		case <-time.After(10 * time.Second):
			t.Fatal("shutdown never left")
		}
		return true, code, out.String(), time.Since(start)
	}
	_, code, msg, took := run(time.Hour, true)
	if code != 1 || msg != "scoop: second interrupt; exiting now\n" || took > time.Second {
		t.Fatalf("second signal: exit %d after %s, %q", code, took, msg)
	}
	_, code, msg, took = run(300*time.Millisecond, false)
	if code != 1 || msg != "scoop: shutdown took more than 300ms (SCOOP_DRAIN_TIMEOUT); exiting\n" || took < 300*time.Millisecond {
		t.Fatalf("drain: exit %d after %s, %q", code, took, msg)
	}
}

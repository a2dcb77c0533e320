package pipeline

import (
	"strconv"
	"testing"
)

func TestKeyCounterNumbersEachKeyPerTransaction(t *testing.T) {
	k := NewKeyCounter()
	for i, want := range []uint64{1, 1, 2, 1, 3} {
		key := []byte([]string{`{"id":1}`, `{"id":2}`, `{"id":1}`, `{"id":1}`, `{"id":1}`}[i])
		topic := []string{"a", "a", "a", "b", "a"}[i]
		if got := k.Next(topic, key); got != want {
			t.Fatalf("change %d: got %d, want %d", i, got, want)
		}
	}
	k.Reset()
	if got := k.Next("a", []byte(`{"id":1}`)); got != 1 {
		t.Fatalf("after Reset: got %d, want 1", got)
	}
}

// Past the exact map, keys are counted in the sketch: numbers still
// strictly increase per key, and memory stays bounded.
func TestKeyCounterBeyondExactKeys(t *testing.T) {
	k := NewKeyCounter()
	for i := 0; i < exactKeys+50000; i++ {
		k.Next("t", []byte(strconv.Itoa(i)))
	}
	if len(k.exact) != exactKeys {
		t.Fatalf("exact map holds %d keys, want %d", len(k.exact), exactKeys)
	}
	prev := uint64(0)
	for i := 0; i < 5; i++ {
		n := k.Next("t", []byte("late key"))
		if n <= prev {
			t.Fatalf("change %d of a sketched key: %d after %d", i, n, prev)
		}
		prev = n
	}
	k.Reset()
	if got := k.Next("t", []byte("late key")); got != 1 {
		t.Fatalf("after Reset: got %d, want 1", got)
	}
}

package pipeline

import "hash/maphash"

// KeyCounter numbers the changes of each key within one transaction
// (1 for a key's first change, 2 for its second, ...), in bounded memory.
// Up to exactKeys distinct keys it counts exactly; beyond, the further keys
// are counted in a count-min sketch, which can only overestimate (by about
// e/width of the transaction's changes, e.g. at most ~100 for ten million
// changes). Sinks that order by it (Cassandra's write timestamp) need only
// that a key's numbers strictly increase within a transaction, which both
// keep.
type KeyCounter struct {
	seed   maphash.Seed
	exact  map[uint64]uint64
	sketch []uint32 // sketchDepth rows of sketchWidth counters, allocated on first use
	used   bool     // the sketch holds counts of the current transaction
}

const (
	exactKeys   = 1 << 17
	sketchDepth = 4
	sketchWidth = 1 << 18
)

// NewKeyCounter returns an empty counter.
func NewKeyCounter() *KeyCounter {
	return &KeyCounter{seed: maphash.MakeSeed(), exact: map[uint64]uint64{}}
}

// Reset starts a new transaction.
func (k *KeyCounter) Reset() {
	switch n := len(k.exact); {
	case n > 4096:
		// clear would walk every bucket of a map grown by a large
		// transaction at each small one after it.
		k.exact = map[uint64]uint64{}
	case n > 0:
		clear(k.exact)
	}
	if k.used {
		clear(k.sketch)
		k.used = false
	}
}

// Next counts one more change of key (the topic and the Kafka key bytes,
// which are canonical per table) and returns its number.
func (k *KeyCounter) Next(topic string, key []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(k.seed)
	h.WriteString(topic)
	h.WriteByte(0)
	h.Write(key)
	sum := h.Sum64()
	if n, ok := k.exact[sum]; ok || len(k.exact) < exactKeys {
		k.exact[sum] = n + 1
		return n + 1
	}
	if k.sketch == nil {
		k.sketch = make([]uint32, sketchDepth*sketchWidth)
	}
	k.used = true
	least := ^uint32(0)
	for row := 0; row < sketchDepth; row++ {
		// Each row takes different bits of the hash (rehashed per row).
		x := sum*(0x9E3779B97F4A7C15+2*uint64(row)) + uint64(row)
		x ^= x >> 29
		i := row*sketchWidth + int(x%sketchWidth)
		if k.sketch[i] < ^uint32(0) {
			k.sketch[i]++
		}
		least = min(least, k.sketch[i])
	}
	return uint64(least)
}

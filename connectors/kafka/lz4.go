package kafka

import (
	"io"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/segmentio/kafka-go/compress"
)

// kafka-go compresses a record batch with pierrec/lz4's default frame: 4 MB
// blocks, and a 4 MB buffer taken from a sync.Pool for every batch (the
// reader takes one of the frame's block size for every fetched batch). The
// pool is emptied by every GC, so under load most batches allocate and
// clear 8 MB: a large part of the CPU of large events (Kafka Connect
// schemas). Kafka's own producer writes 64 KB blocks without a content
// checksum (the record batch has its CRC-32C); scoop does the same, which
// also spares the xxHash of every byte on both sides. The frames are
// standard LZ4 frames that every consumer reads.
//
// kafka-go takes its codecs from a global table (compress.Codecs), the only
// place a codec can be chosen; it is set once, before any kafka-go client of
// this package exists.
func init() {
	compress.Codecs[compress.Lz4] = lz4Codec{}
}

// lz4BlockSize is the block size of the frames scoop writes.
const lz4BlockSize = lz4.Block64Kb

type lz4Codec struct{}

var lz4Writers = sync.Pool{New: func() any {
	w := lz4.NewWriter(nil)
	// Options of a new writer cannot fail.
	_ = w.Apply(lz4.BlockSizeOption(lz4BlockSize), lz4.ChecksumOption(false))
	return w
}}

func (lz4Codec) Code() int8   { return int8(compress.Lz4) }
func (lz4Codec) Name() string { return compress.Lz4Codec.Name() }

// NewReader reads any LZ4 frame (kafka-go's reader).
func (lz4Codec) NewReader(r io.Reader) io.ReadCloser { return compress.Lz4Codec.NewReader(r) }

// NewWriter writes a frame of lz4BlockSize blocks.
func (lz4Codec) NewWriter(w io.Writer) io.WriteCloser {
	z := lz4Writers.Get().(*lz4.Writer)
	z.Reset(w)
	return &lz4Writer{z}
}

type lz4Writer struct{ *lz4.Writer }

// Close ends the frame and returns the writer to the pool.
func (w *lz4Writer) Close() error {
	z := w.Writer
	if z == nil {
		return nil
	}
	w.Writer = nil
	err := z.Close()
	z.Reset(nil)
	lz4Writers.Put(z)
	return err
}

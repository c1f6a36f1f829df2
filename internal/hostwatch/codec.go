package hostwatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// codecJSONZstd is the first payload byte of a sample record: JSON,
// zstd-compressed. JSON keeps the recording readable by other tools after
// `zstd -d`; compression halves a sample (measured: 1.6 KiB of JSON to
// ~750 bytes), so the 64 MB default holds about 4-5 days at 5 s and the
// size bound, not the 7-day retention, decides what is kept. Stronger
// levels gain under 7% for 2-5x the CPU; the counters are what is left.
const codecJSONZstd = 1

// maxDecoded bounds a decompressed sample; a real one is a few KiB.
const maxDecoded = 4 << 20

var (
	codecOnce sync.Once
	encoder   *zstd.Encoder
	decoder   *zstd.Decoder
	codecErr  error
)

func initCodec() {
	codecOnce.Do(func() {
		// Small window and one goroutine: a sampler on a 1 GiB host must
		// not carry the multi-MiB buffers of the default encoder.
		encoder, codecErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<16), zstd.WithLowerEncoderMem(true))
		if codecErr != nil {
			return
		}
		decoder, codecErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(maxDecoded))
	})
}

// EncodeSample appends a sample's record payload to dst.
func EncodeSample(dst []byte, s Sample) ([]byte, error) {
	initCodec()
	if codecErr != nil {
		return dst, fmt.Errorf("init sample codec: %w", codecErr)
	}
	js, err := json.Marshal(s)
	if err != nil {
		return dst, fmt.Errorf("encode sample: %w", err)
	}
	dst = append(dst, codecJSONZstd)
	return encoder.EncodeAll(js, dst), nil
}

// DecodeSample reads a payload written by EncodeSample.
func DecodeSample(p []byte) (Sample, error) {
	var s Sample
	if len(p) == 0 {
		return s, errors.New("decode sample: empty record")
	}
	if p[0] != codecJSONZstd {
		return s, fmt.Errorf("decode sample: unknown codec %d (written by a newer headroom?)", p[0])
	}
	initCodec()
	if codecErr != nil {
		return s, fmt.Errorf("init sample codec: %w", codecErr)
	}
	js, err := decoder.DecodeAll(p[1:], nil)
	if err != nil {
		return s, fmt.Errorf("decode sample: decompress: %w", err)
	}
	if len(js) > maxDecoded {
		return s, fmt.Errorf("decode sample: %d bytes decompressed, over the %d limit", len(js), maxDecoded)
	}
	if err := json.Unmarshal(js, &s); err != nil {
		return s, fmt.Errorf("decode sample: %w", err)
	}
	return s, nil
}

// Command counter is the omnicore example plugin that counts, written with the Go SDK.
//
// Handler count: {"by": 2} -> {"count": n}; the counter starts at the config key "start"
// (default 0) and "by" defaults to 1. Handler reset puts it back to the start. The count
// lives in omnicore:kv (key "count", the distance from start), so it survives a restart and
// every instance in the pool shares it: KV.Incr is atomic in the host.
package main

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"omnicore.dev/sdk"
)

// CountInput is the input of count; an empty input counts by 1.
type CountInput struct {
	By *int64 `json:"by" description:"how much to add (default 1)"`
}

// CountOutput is the output of count and reset.
type CountOutput struct {
	Count int64 `json:"count"`
}

const key = "count"

// start reads the configured start value; read on first use rather than in init, so a bad
// value fails a call with a clear message instead of the instance's start-up.
func start() (int64, error) {
	text, err := omnicore.Config.Get("start")
	if errors.Is(err, omnicore.ErrNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, errors.New("config start must be an integer, got " + strconv.Quote(text))
	}
	return n, nil
}

// Count adds in.By (default 1) to the counter.
func Count(input []byte) ([]byte, error) {
	var in CountInput
	if len(input) > 0 {
		if err := json.Unmarshal(input, &in); err != nil {
			return nil, omnicore.DecodeError(err)
		}
	}
	by := int64(1)
	if in.By != nil {
		by = *in.By
	}
	base, err := start()
	if err != nil {
		return nil, err
	}
	moved, err := omnicore.KV.Incr(key, by)
	if errors.Is(err, omnicore.ErrInvalid) {
		return nil, errors.New("count would overflow a 64-bit integer")
	} else if err != nil {
		return nil, err
	}
	if (moved > 0 && base > math.MaxInt64-moved) || (moved < 0 && base < math.MinInt64-moved) {
		// Take the step back so the stored count stays where it was.
		if _, err := omnicore.KV.Incr(key, -by); err != nil {
			return nil, err
		}
		return nil, errors.New("count would overflow a 64-bit integer")
	}
	count := base + moved
	omnicore.Log.Debug("count is " + strconv.FormatInt(count, 10))
	return json.Marshal(CountOutput{Count: count})
}

// Reset puts the counter back to the configured start.
func Reset([]byte) ([]byte, error) {
	n, err := start()
	if err != nil {
		return nil, err
	}
	if _, err := omnicore.KV.Delete(key); err != nil {
		return nil, err
	}
	omnicore.Log.Info("counter reset to " + strconv.FormatInt(n, 10))
	return json.Marshal(CountOutput{Count: n})
}

var (
	_ = omnicore.DescribeHandler("count", "Adds `by` (default 1, may be negative) to the "+
		"durable counter and returns its new value", omnicore.Title("Count"),
		omnicore.InputOf[CountInput](), omnicore.OutputOf[CountOutput]())
	_ = omnicore.DescribeHandler("reset", "Puts the counter back to its configured start "+
		"value and returns it", omnicore.Title("Reset the counter"), omnicore.Destructive(),
		omnicore.OutputOf[CountOutput]())
)

//go:wasmexport count
func countExport(ptr, size uint32) uint64 { return omnicore.Handle(ptr, size, Count) }

//go:wasmexport reset
func resetExport(ptr, size uint32) uint64 { return omnicore.Handle(ptr, size, Reset) }

func main() {}

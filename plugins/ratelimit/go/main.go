// Command ratelimit is the omnicore example plugin that counts in Redis, written with the
// Go SDK.
//
// Handler hit: {"key": "alice", "limit": 5, "window_s": 60} counts one hit on key in the
// current window and answers {"allowed": true, "remaining": 4, "count": 1, "reset_s": 60}.
// The count is a Redis counter behind the operator's "cache" connector (omnicore.Redis):
// INCR, and EXPIRE when the window starts, so every instance and every host sharing that
// Redis sees one count. The host puts every key under the plugin's prefix
// (omnicore:ratelimit-go:...), so the plugin cannot touch anyone else's keys.
package main

import (
	"errors"

	"omnicore.dev/sdk"
)

// connector is the Redis connector the operator grants (plugins/demo.yaml).
const connector = "cache"

// HitInput is the input of hit.
type HitInput struct {
	Key     string `json:"key" description:"who or what is limited (a user, an API key)"`
	Limit   int64  `json:"limit" description:"hits allowed per window (at least 1)"`
	WindowS int64  `json:"window_s" description:"the window's length in seconds (at least 1)"`
}

// HitOutput says whether the hit is allowed.
type HitOutput struct {
	Allowed   bool  `json:"allowed"`
	Remaining int64 `json:"remaining" description:"hits left in this window"`
	Count     int64 `json:"count" description:"hits in this window, this one included"`
	ResetS    int64 `json:"reset_s" description:"seconds until the window ends"`
}

// Hit counts one hit on in.Key.
func Hit(in HitInput) (HitOutput, error) {
	switch {
	case in.Key == "":
		return HitOutput{}, errors.New("key must not be empty")
	case in.Limit < 1:
		return HitOutput{}, errors.New("limit must be at least 1")
	case in.WindowS < 1:
		return HitOutput{}, errors.New("window_s must be at least 1")
	}
	cache := omnicore.Redis.Connect(connector)
	key := "hits:" + in.Key
	count, err := cache.Incr(key)
	if err != nil {
		return HitOutput{}, err
	}
	ttl, err := cache.TTL(key)
	if err != nil {
		return HitOutput{}, err
	}
	// The first hit opens the window; a counter left without expiry (a call that ended
	// between INCR and EXPIRE) gets one now, so no key lives forever.
	if count == 1 || ttl < 0 {
		if _, err := cache.Expire(key, in.WindowS); err != nil {
			return HitOutput{}, err
		}
		ttl = in.WindowS
	}
	return HitOutput{Allowed: count <= in.Limit, Remaining: max(in.Limit-count, 0),
		Count: count, ResetS: ttl}, nil
}

var _ = omnicore.DescribeHandler("hit", "Counts one hit on `key` and says whether it is "+
	"within `limit` hits per `window_s` seconds", omnicore.Title("Rate limit"),
	omnicore.InputOf[HitInput](), omnicore.OutputOf[HitOutput]())

//go:wasmexport hit
func hitExport(ptr, size uint32) uint64 { return omnicore.HandleJSON(ptr, size, Hit) }

func main() {}

package main

import (
	"errors"
	"testing"

	"omnicore.dev/sdk"
)

// `omnicore test` runs these compiled to wasm on omnicore's test host, whose in-memory Redis
// stands in for the server (tests/test_ratelimit.py runs the built plugin against a real
// redis-server).

func TestHitCountsWithinTheWindow(t *testing.T) {
	host := omnicore.UseTestHost(&omnicore.TestHost{})
	in := HitInput{Key: "alice", Limit: 2, WindowS: 60}
	want := []HitOutput{{true, 1, 1, 60}, {true, 0, 2, 60}, {false, 0, 3, 60}}
	for i, w := range want {
		if out, err := Hit(in); err != nil || out != w {
			t.Fatalf("hit %d = %+v, %v; want %+v", i+1, out, err, w)
		}
	}
	if host.RedisTTL("hits:alice") != 60 {
		t.Fatalf("the window's expiry: %d", host.RedisTTL("hits:alice"))
	}
	if keys := host.RedisKeys(); len(keys) != 1 || keys[0] != omnicore.DefaultRedisPrefix+"hits:alice" {
		t.Fatalf("keys: %v", keys)
	}
	if out, _ := Hit(HitInput{Key: "bob", Limit: 2, WindowS: 60}); !out.Allowed || out.Count != 1 {
		t.Fatalf("another key has its own window: %+v", out)
	}
}

func TestHitRefusesBadInputAndReportsTheServer(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{})
	for _, in := range []HitInput{{Limit: 1, WindowS: 1}, {Key: "a", WindowS: 1}, {Key: "a", Limit: 1}} {
		if _, err := Hit(in); err == nil {
			t.Fatalf("accepted %+v", in)
		}
	}
	omnicore.UseTestHost(&omnicore.TestHost{})
	// A key holding another type is Redis's WRONGTYPE, which the SDK reports as ErrInvalid.
	cache := omnicore.Redis.Connect("cache")
	if _, err := cache.RPush("hits:carol", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := Hit(HitInput{Key: "carol", Limit: 1, WindowS: 1}); !errors.Is(err, omnicore.ErrInvalid) {
		t.Fatalf("wrong type: %v", err)
	}
}

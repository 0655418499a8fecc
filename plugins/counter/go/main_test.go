package main

import (
	"testing"

	"omnicore.dev/sdk"
)

// `omnicore test` runs these compiled to wasm, each in a fresh instance on omnicore's test host
// (the host's own capability code over in-memory stores); omnicore.TestHost sets it up.

func TestCountFromConfiguredStartAndReset(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{Config: map[string]any{"start": 10}})
	if out, err := Count(nil); err != nil || string(out) != `{"count":11}` {
		t.Fatalf("Count() = %s, %v", out, err)
	}
	if out, _ := Count([]byte(`{"by": 5}`)); string(out) != `{"count":16}` {
		t.Fatalf("Count by 5 = %s", out)
	}
	if out, _ := Reset(nil); string(out) != `{"count":10}` {
		t.Fatalf("Reset = %s", out)
	}
}

func TestCountRefusesBadInput(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{Config: map[string]any{"start": "ten"}})
	if _, err := Count(nil); err == nil || err.Error() != `config start must be an integer, got "ten"` {
		t.Fatalf("bad start: %v", err)
	}
	if _, err := Count([]byte(`{"by": "2"}`)); err == nil ||
		err.Error() != "invalid input: by must be an integer, got string" {
		t.Fatalf("bad by: %v", err)
	}
}

package main

import (
	"testing"

	"omnicore.dev/sdk"
)

// `omnicore test` runs these compiled to wasm, each in a fresh instance on omnicore's test host
// (the host's own capability code over in-memory stores); omnicore.TestHost sets it up.

func name(s string) *string { return &s }

func TestGreetUsesConfiguredGreetingAndLogs(t *testing.T) {
	host := omnicore.UseTestHost(&omnicore.TestHost{Config: map[string]any{"greeting": "Bonjour"}})
	out, err := Greet(GreetInput{Name: name("Ada")})
	if err != nil || out.Message != "Bonjour, Ada!" {
		t.Fatalf("Greet = %+v, %v", out, err)
	}
	if len(host.Logs) != 1 || host.Logs[0].Level != omnicore.LevelInfo {
		t.Fatalf("logs: %+v", host.Logs)
	}
}

func TestGreetDefaults(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{})
	if out, _ := Greet(GreetInput{}); out.Message != "Hello, world!" {
		t.Fatalf("Greet = %+v", out)
	}
}

func TestGreetRefusesEmptyName(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{})
	if _, err := Greet(GreetInput{Name: name("")}); err == nil || err.Error() != "name must not be empty" {
		t.Fatalf("err = %v", err)
	}
}

package main

import (
	"encoding/json"
	"testing"

	"omnicore.dev/sdk"
)

// `omnicore test` runs these compiled to wasm, each in a fresh instance on omnicore's test host
// (the host's own capability code over in-memory stores); omnicore.TestHost sets it up.

const sample = `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "-" "Mozilla/4.08"
garbage
10.0.0.2 - - [10/Oct/2000:13:57:36 -0700] "POST /api HTTP/1.1" 500 -
`

func TestStats(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{Config: map[string]any{"top": 1}})
	out, err := StatsOnly([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	if st.Parsed != 2 || st.Skipped != 1 || st.Bytes != 2326 || st.ErrorRate != 0.5 ||
		len(st.TopPaths) != 1 || st.First != "2000-10-10T20:55:36Z" {
		t.Fatalf("stats: %+v", st)
	}
}

func TestParseLineRefusesBadTimestamp(t *testing.T) {
	if _, err := parseLine(1, []byte(`1.2.3.4 - - [99/Foo/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1`)); err == nil {
		t.Fatal("accepted a bad timestamp")
	}
}

func TestRefusesBadConfigAndEmptyInput(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{Config: map[string]any{"top": "many"}})
	if _, err := Parse([]byte(sample)); err == nil {
		t.Fatal("accepted top=many")
	}
	if _, err := Parse([]byte("  \n")); err == nil || err.Error() != "empty input: send access-log lines as plain text" {
		t.Fatalf("empty input: %v", err)
	}
}

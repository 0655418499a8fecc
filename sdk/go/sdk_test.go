package omnicore

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestConfigThroughTestHost(t *testing.T) {
	UseTestHost(&TestHost{Config: map[string]any{"greeting": "Hi", "db": map[string]any{"port": 5432},
		"long": strings.Repeat("x", 3000)}})
	if v, err := Config.Get("greeting"); v != "Hi" || err != nil {
		t.Fatalf("Get(greeting) = %q, %v", v, err)
	}
	if v, _ := Config.Get("db.port"); v != "5432" {
		t.Fatalf("dotted key: %q", v)
	}
	if v, _ := Config.Get("long"); len(v) != 3000 { // beyond the 1 KiB first buffer
		t.Fatalf("long value: %d bytes", len(v))
	}
	_, err := Config.Get("absent")
	var hostErr *HostError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &hostErr) || hostErr.Op != "config.get" {
		t.Fatalf("absent key: %v", err)
	}
	if Config.GetOr("absent", "dflt") != "dflt" {
		t.Fatal("GetOr fallback")
	}
	var section struct {
		DB struct{ Port int } `json:"db"`
	}
	if err := Config.Load(&section); err != nil || section.DB.Port != 5432 {
		t.Fatalf("Load: %+v %v", section, err)
	}
}

func TestKVAndStatusErrors(t *testing.T) {
	host := UseTestHost(&TestHost{})
	big := bytes.Repeat([]byte("0123456789"), 500)
	if err := KV.Set("a", big); err != nil {
		t.Fatal(err)
	}
	if got, err := KV.Get("a"); !bytes.Equal(got, big) || err != nil {
		t.Fatalf("Get: %d bytes, %v", len(got), err)
	}
	if n, err := KV.Incr("n", 5); n != 5 || err != nil {
		t.Fatalf("Incr: %d %v", n, err)
	}
	if _, err := KV.Incr("a", 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Incr on text: %v", err)
	}
	if keys, _ := KV.List(""); strings.Join(keys, ",") != "a,n" {
		t.Fatalf("List: %v", keys)
	}
	if existed, _ := KV.Delete("a"); !existed {
		t.Fatal("Delete")
	}
	if string(host.KV["n"]) != "5" {
		t.Fatalf("stored counter: %q", host.KV["n"])
	}
}

func TestReentrantBlocksAndHTTP(t *testing.T) {
	host := UseTestHost(&TestHost{})
	if err := Vectors.Upsert("docs", "a", []float32{1, 0}, map[string]any{"t": "x"}); err != nil {
		t.Fatal(err)
	}
	_ = Vectors.Upsert("docs", "b", []float32{0, 1}, nil)
	matches, err := Vectors.Search("docs", []float32{0.9, 0.1}, 1)
	if err != nil || len(matches) != 1 || matches[0].ID != "a" {
		t.Fatalf("Search: %+v %v", matches, err)
	}
	if _, err := Vectors.Search("nope", []float32{1}, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Search unknown collection: %v", err)
	}
	if _, err := HTTP.Get("https://example.com/"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("HTTP without a handler: %v", err)
	}
	host.HTTP = func(r Request) (*Response, error) {
		return &Response{Status: 201, Headers: map[string]string{"x": "y"},
			Body: append([]byte(r.Method+" "), r.Body...)}, nil
	}
	resp, err := HTTP.Post("https://example.com/", "text/plain", []byte("hi"))
	if err != nil || resp.Status != 201 || string(resp.Body) != "POST hi" || resp.Headers["x"] != "y" {
		t.Fatalf("Post: %+v %v", resp, err)
	}
	if len(blocks) != 0 {
		t.Fatalf("%d host blocks were not taken over by the SDK", len(blocks))
	}
}

func TestSecretsEventsTasksMemoryLog(t *testing.T) {
	host := UseTestHost(&TestHost{Secrets: map[string][]byte{"token": []byte("s3"), "unset": nil},
		LogLevel: LevelInfo})
	if v, _ := Secrets.Get("token"); string(v) != "s3" {
		t.Fatalf("secret: %q", v)
	}
	if _, err := Secrets.Get("unset"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := Secrets.Get("other"); !errors.Is(err, ErrDenied) {
		t.Fatal(err)
	}
	_ = Events.Publish("done", []byte("1"))
	id, _ := Tasks.Enqueue("work", []byte("p"), 0)
	if _, err := Tasks.Enqueue("nope", nil, 0); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if ok, _ := Tasks.Cancel(id); !ok || len(host.Events) != 1 {
		t.Fatal("cancel / events")
	}
	mid, _ := Memory.Remember(TierWorking, MemoryItem{Text: "Blue sky"})
	if found, _ := Memory.Recall(RecallQuery{Query: "sky"}); len(found) != 1 || found[0].ID != mid {
		t.Fatalf("recall: %+v", found)
	}
	Log.Debug("dropped")
	Log.Info("kept")
	if len(host.Logs) != 1 || host.Logs[0].Message != "kept" || Log.Enabled(LevelDebug) {
		t.Fatalf("logs: %+v", host.Logs)
	}
}

// workExport makes "work" a handler of the test program: tasks name only the plugin's own.
//
//go:wasmexport work
func workExport(ptr, size uint32) uint64 {
	return Handle(ptr, size, func(in []byte) ([]byte, error) { return in, nil })
}

func TestDecodeErrorMessages(t *testing.T) {
	type in struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	cases := map[string]string{
		`{"name": 1}`: "invalid input: name must be a string, got number",
		`{"n": 1.5}`:  "invalid input: n must be an integer, got number 1.5",
		`[1]`:         "invalid JSON input: expected an object, got array",
		`{`:           "invalid JSON input: unexpected end of JSON input",
	}
	for input, want := range cases {
		var v in
		if got := DecodeError(jsonUnmarshal([]byte(input), &v)).Error(); got != want {
			t.Errorf("%s: got %q, want %q", input, got, want)
		}
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func TestFiltersAndVectorsInTheTestHost(t *testing.T) {
	UseTestHost(&TestHost{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(Vectors.Upsert("c", "en", []float32{1, 0}, map[string]any{"lang": "en"}))
	must(Vectors.Upsert("c", "de", []float32{1, 0.1}, map[string]any{"lang": "de"}))
	found, err := Vectors.Query("c", []float32{1, 0}, 5, map[string]any{"lang": "de"})
	if err != nil || len(found) != 1 || found[0].ID != "de" {
		t.Fatalf("Query: %+v %v", found, err)
	}
	if _, err := Vectors.Query("c", []float32{1, 0}, 5, map[string]any{"x": []int{1}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("non-scalar filter: %v", err)
	}
	for _, user := range []string{"ada", "bob"} {
		_, err := Memory.Remember(TierShortTerm, MemoryItem{Text: user + " likes tea",
			Metadata: map[string]any{"user": user}, Importance: Importance(0.9)})
		must(err)
	}
	hits, err := Memory.Recall(RecallQuery{Query: "tea", Filter: map[string]any{"user": "bob"}})
	if err != nil || len(hits) != 1 || hits[0].Text != "bob likes tea" {
		t.Fatalf("Recall with filter: %+v %v", hits, err)
	}
	_, err = Memory.Remember(TierWorking, MemoryItem{Text: "x", Vector: []float32{float32(math.NaN())}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("NaN vector: %v", err)
	}
}

type describedIn struct {
	Text  string            `json:"text" description:"what to keep"`
	Tags  []string          `json:"tags,omitempty"`
	By    *int              `json:"by"`
	Extra map[string]string `json:"-"`
}

type describedOut struct {
	ID int64 `json:"id"`
}

func TestDescribeDerivesSchemasFromTypes(t *testing.T) {
	add := func(describedIn) (describedOut, error) { return describedOut{}, nil }
	Describe("add_described", "Adds a note", add, Title("Add"), Destructive())
	doc, err := describeJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Handlers map[string]map[string]any `json:"handlers"`
	}
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	tool := got.Handlers["add_described"]
	want := `{"description":"Adds a note","destructive":true,"input_schema":{"properties":{` +
		`"by":{"anyOf":[{"type":"integer"},{"type":"null"}]},"tags":{"items":{"type":"string"},` +
		`"type":["array","null"]},"text":{"description":"what to keep","type":"string"}},` +
		`"required":["text"],"type":"object"},"output_schema":{"properties":{"id":{"type":` +
		`"integer"}},"required":["id"],"type":"object"},"title":"Add"}`
	if b, _ := json.Marshal(tool); string(b) != want {
		t.Fatalf("described as\n%s\nwant\n%s", b, want)
	}
	// A handler taking bytes or a string has no object schema to declare.
	Describe("echo_described", "Echoes", func(s string) (string, error) { return s, nil })
	if tool := Described()["echo_described"]; tool.InputSchema != nil || tool.OutputSchema != nil {
		t.Fatalf("a string handler got schemas: %+v", tool)
	}
}

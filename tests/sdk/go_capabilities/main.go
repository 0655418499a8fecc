// Command capabilities is a test fixture (tests/sdk/test_go.py): every handler drives one
// part of the Go SDK against the host and reports what it saw as JSON.
package main

import (
	"bytes"
	"errors"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"omnicore.dev/sdk"
)

// result names the sentinel an error matches, so the test can assert the mapping.
func result(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{{"NOT_FOUND", omnicore.ErrNotFound}, {"DENIED", omnicore.ErrDenied},
		{"INVALID", omnicore.ErrInvalid}, {"QUOTA", omnicore.ErrQuota},
		{"UNAVAILABLE", omnicore.ErrUnavailable}, {"TOO_LARGE", omnicore.ErrTooLarge}} {
		if errors.Is(err, s.err) {
			return s.name + " | " + err.Error()
		}
	}
	if err != nil {
		return "OTHER | " + err.Error()
	}
	return "ok"
}

type kvReport struct {
	Get        string   `json:"get"`
	BigLen     int      `json:"big_len"`
	BigOK      bool     `json:"big_ok"`
	Missing    string   `json:"missing"`
	Incr       int64    `json:"incr"`
	IncrBad    string   `json:"incr_bad"`
	List       []string `json:"list"`
	Deleted    bool     `json:"deleted"`
	DeletedTwo bool     `json:"deleted_again"`
	Quota      string   `json:"quota"`
}

func kv(struct{}) (kvReport, error) {
	var r kvReport
	must(omnicore.KV.Set("user:1", []byte("ada")))
	v, err := omnicore.KV.Get("user:1")
	must(err)
	r.Get = string(v)
	big := bytes.Repeat([]byte("0123456789"), 500) // beyond the SDK's 1 KiB first buffer
	must(omnicore.KV.Set("user:big", big))
	got, err := omnicore.KV.Get("user:big")
	must(err)
	r.BigLen, r.BigOK = len(got), bytes.Equal(got, big)
	_, err = omnicore.KV.Get("nope")
	r.Missing = result(err)
	_, err = omnicore.KV.Incr("hits", 5)
	must(err)
	r.Incr, err = omnicore.KV.Incr("hits", -2)
	must(err)
	_, err = omnicore.KV.Incr("user:1", 1)
	r.IncrBad = result(err)
	r.List, err = omnicore.KV.List("user:")
	must(err)
	r.Deleted, _ = omnicore.KV.Delete("user:1")
	r.DeletedTwo, _ = omnicore.KV.Delete("user:1")
	r.Quota = result(omnicore.KV.Set("quota", make([]byte, 8000)))
	return r, nil
}

type memoryReport struct {
	ID       int64               `json:"id"`
	Recalled []omnicore.Recalled `json:"recalled"`
	Forgot   bool                `json:"forgot"`
	Again    bool                `json:"forgot_again"`
	Ada      []omnicore.Recalled `json:"ada"`
	NearBob  []omnicore.Recalled `json:"near_bob"`
	NaN      string              `json:"nan"`
	Heavy    string              `json:"too_important"`
}

func memory(struct{}) (memoryReport, error) {
	var r memoryReport
	var err error
	r.ID, err = omnicore.Memory.Remember(omnicore.TierLongTerm, omnicore.MemoryItem{
		Text: "the sky is blue", Metadata: map[string]any{"src": "test"}})
	must(err)
	r.Recalled, err = omnicore.Memory.Recall(omnicore.RecallQuery{Query: "sky",
		Tiers: []omnicore.Tier{omnicore.TierLongTerm}, Limit: 3})
	must(err)
	r.Forgot, _ = omnicore.Memory.Forget(r.ID)
	r.Again, _ = omnicore.Memory.Forget(r.ID)
	// The fields of abi.md §4.4: importance, vector, metadata filter.
	for i, user := range []string{"ada", "bob"} {
		vec := make([]float32, 3)
		vec[i] = 1
		_, err = omnicore.Memory.Remember(omnicore.TierShortTerm, omnicore.MemoryItem{
			Text: user + " ordered a kettle", Metadata: map[string]any{"user": user},
			Importance: omnicore.Importance(0.9), Vector: vec, TTLSeconds: 60})
		must(err)
	}
	r.Ada, err = omnicore.Memory.Recall(omnicore.RecallQuery{Query: "kettle",
		Filter: map[string]any{"user": "ada"}})
	must(err)
	r.NearBob, err = omnicore.Memory.Recall(omnicore.RecallQuery{Query: "kettle", Limit: 1,
		Vector: []float32{0.1, 0.9, 0}})
	must(err)
	_, err = omnicore.Memory.Remember(omnicore.TierWorking, omnicore.MemoryItem{Text: "x",
		Vector: []float32{float32(math.NaN()), 0, 0}})
	r.NaN = result(err)
	_, err = omnicore.Memory.Remember(omnicore.TierWorking, omnicore.MemoryItem{Text: "x",
		Importance: omnicore.Importance(1.5)})
	r.Heavy = result(err)
	return r, nil
}

type vectorsReport struct {
	Matches  []omnicore.Match `json:"matches"`
	Mismatch string           `json:"mismatch"`
	Deleted  bool             `json:"deleted"`
	NoColl   string           `json:"no_collection"`
	Search   string           `json:"search_error"`
	English  []omnicore.Match `json:"english"`
	French   []omnicore.Match `json:"french"`
	BadQuery string           `json:"bad_filter"`
}

func vectors(struct{}) (vectorsReport, error) {
	var r vectorsReport
	must(omnicore.Vectors.Upsert("docs", "a", []float32{1, 0, 0}, map[string]any{"t": "x"}))
	must(omnicore.Vectors.Upsert("docs", "b", []float32{0, 1, 0}, nil))
	var err error
	r.Matches, err = omnicore.Vectors.Search("docs", []float32{0.9, 0.1, 0}, 2)
	must(err)
	r.Mismatch = result(omnicore.Vectors.Upsert("docs", "c", []float32{1, 2}, nil))
	r.Deleted, _ = omnicore.Vectors.Delete("docs", "a")
	_, err = omnicore.Vectors.Delete("nope", "a")
	r.NoColl = result(err)
	_, err = omnicore.Vectors.Search("nope", []float32{1}, 1)
	r.Search = result(err)
	must(omnicore.Vectors.Upsert("docs", "en", []float32{1, 0, 0}, map[string]any{"lang": "en"}))
	must(omnicore.Vectors.Upsert("docs", "de", []float32{1, 0.1, 0}, map[string]any{"lang": "de"}))
	r.English, err = omnicore.Vectors.Query("docs", []float32{1, 0, 0}, 5,
		map[string]any{"lang": "en"})
	must(err)
	r.French, err = omnicore.Vectors.Query("docs", []float32{1, 0, 0}, 5,
		map[string]any{"lang": "fr"})
	must(err)
	_, err = omnicore.Vectors.Query("docs", []float32{1, 0, 0}, 5,
		map[string]any{"lang": []string{"en"}})
	r.BadQuery = result(err)
	return r, nil
}

type tasksReport struct {
	ID        int64  `json:"id"`
	Cancelled bool   `json:"cancelled"`
	Unknown   string `json:"unknown_handler"`
	Gone      string `json:"cancel_unknown"`
}

func tasks(struct{}) (tasksReport, error) {
	var r tasksReport
	var err error
	r.ID, err = omnicore.Tasks.Enqueue("echo", []byte("later"), 1500*time.Millisecond)
	must(err)
	r.Cancelled, _ = omnicore.Tasks.Cancel(r.ID)
	_, err = omnicore.Tasks.Enqueue("nope", nil, 0)
	r.Unknown = result(err)
	_, err = omnicore.Tasks.Cancel(999)
	r.Gone = result(err)
	return r, nil
}

type httpInput struct {
	URL    string `json:"url"`
	Denied string `json:"denied"`
}

type httpReport struct {
	Status int    `json:"status"`
	Type   string `json:"content_type"`
	Body   string `json:"body"`
	Posted string `json:"posted"`
	Denied string `json:"denied"`
	Conn   int    `json:"connector_status"`
}

func httpCalls(in httpInput) (httpReport, error) {
	var r httpReport
	resp, err := omnicore.HTTP.Get(in.URL + "/hello")
	must(err)
	r.Status, r.Type, r.Body = resp.Status, resp.Headers["content-type"], string(resp.Body)
	resp, err = omnicore.HTTP.Post(in.URL+"/echo", "text/plain", []byte("ping"))
	must(err)
	r.Posted = string(resp.Body)
	_, err = omnicore.HTTP.Get(in.Denied)
	r.Denied = result(err)
	resp, err = omnicore.HTTP.Do(omnicore.Request{Connector: "local", Path: "/hello"})
	must(err)
	r.Conn = resp.Status
	return r, nil
}

func events(struct{}) (map[string]string, error) {
	return map[string]string{
		"ok":     result(omnicore.Events.Publish("greeted", []byte(`{"n":1}`))),
		"denied": result(omnicore.Events.Publish("secret.topic", nil)),
	}, nil
}

func onEvent(e omnicore.Event) (map[string]string, error) {
	return map[string]string{"topic": e.Topic, "data": string(e.Data)}, nil
}

func secrets(struct{}) (map[string]string, error) {
	token, err := omnicore.Secrets.Get("token")
	must(err)
	_, hidden := omnicore.Secrets.Get("root_password")
	_, unset := omnicore.Secrets.Get("unset")
	return map[string]string{"token": string(token), "hidden": result(hidden),
		"unset": result(unset)}, nil
}

type logReport struct {
	Enabled map[string]bool `json:"enabled"`
}

func logs(struct{}) (logReport, error) {
	r := logReport{Enabled: map[string]bool{}}
	names := []string{"trace", "debug", "info", "warn", "error"}
	for i, name := range names {
		level := omnicore.Level(i)
		r.Enabled[name] = omnicore.Log.Enabled(level)
		omnicore.Log.Write(level, "level "+name)
	}
	omnicore.Log.Warn("bad utf8 \xff here")
	os.Stdout.WriteString("via stdout\n")
	return r, nil
}

func config(struct{}) (map[string]any, error) {
	section := map[string]any{}
	if err := omnicore.Config.Load(&section); err != nil {
		return nil, err
	}
	nested, err := omnicore.Config.Get("db.port")
	_, missing := omnicore.Config.Get("absent")
	section["_nested"], section["_nested_err"], section["_missing"] = nested, result(err),
		result(missing)
	section["_fallback"] = omnicore.Config.GetOr("absent", "dflt")
	return section, nil
}

func echo(in []byte) ([]byte, error) { return append([]byte(nil), in...), nil }

func fail(in []byte) ([]byte, error) {
	return nil, errors.New("refused: " + strings.ToUpper(string(in)))
}

func panics(in []byte) ([]byte, error) {
	if string(in) == "nil-map" {
		var m map[string]int
		m["x"] = 1
	}
	if string(in) == "error-value" {
		panic(errors.New("an error value"))
	}
	if string(in) == "int" {
		panic(42)
	}
	panic("something broke: " + string(in))
}

func exit([]byte) ([]byte, error) {
	os.Exit(3)
	return nil, nil
}

// keep retains input across calls, which the ABI forbids unless copied: Handle caps the
// slice so an append cannot scribble past the host's buffer.
var kept []byte

func keep(in []byte) ([]byte, error) {
	kept = append(in, '!')
	return kept, nil
}

// hoard keeps what hog allocates reachable, so only the sandbox's memory limit stops it.
var hoard [][]byte

func hog([]byte) ([]byte, error) {
	for {
		hoard = append(hoard, make([]byte, 1<<20))
	}
}

func spin(in []byte) ([]byte, error) {
	n := 0
	for len(in) >= 0 {
		n++
	}
	return []byte{byte(n)}, nil
}

// hold is live Go data filled with a pattern. gcCheck with an empty input collects while
// no handler references the host's input buffer, then fills the free heap with hold; if
// omni_alloc's blocks were not kept reachable, the buffer would have been freed and reused
// for hold, and the host's next input write would corrupt it.
var hold [][]byte

func gcCheck(in []byte) ([]byte, error) {
	if len(in) == 0 {
		hold = nil
		runtime.GC()
		for i := 0; i < 512; i++ {
			hold = append(hold, bytes.Repeat([]byte{0xA5}, 8<<10))
		}
		runtime.GC()
		return []byte("filled"), nil
	}
	pattern := bytes.Repeat([]byte{0xA5}, 8<<10)
	for _, block := range hold {
		if !bytes.Equal(block, pattern) {
			return nil, errors.New("live Go memory was overwritten by the host's input")
		}
	}
	return []byte("intact"), nil
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

//go:wasmexport kv
func kvExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, kv) }

//go:wasmexport memories
func memoryExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, memory) }

//go:wasmexport vectors
func vectorsExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, vectors) }

//go:wasmexport tasks
func tasksExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, tasks) }

//go:wasmexport http
func httpExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, httpCalls) }

//go:wasmexport events
func eventsExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, events) }

//go:wasmexport on_event
func onEventExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, onEvent) }

//go:wasmexport secrets
func secretsExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, secrets) }

//go:wasmexport logs
func logsExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, logs) }

//go:wasmexport config
func configExport(p, n uint32) uint64 { return omnicore.HandleJSON(p, n, config) }

//go:wasmexport echo
func echoExport(p, n uint32) uint64 { return omnicore.Handle(p, n, echo) }

//go:wasmexport fail
func failExport(p, n uint32) uint64 { return omnicore.Handle(p, n, fail) }

//go:wasmexport panics
func panicsExport(p, n uint32) uint64 { return omnicore.Handle(p, n, panics) }

//go:wasmexport exit
func exitExport(p, n uint32) uint64 { return omnicore.Handle(p, n, exit) }

//go:wasmexport keep
func keepExport(p, n uint32) uint64 { return omnicore.Handle(p, n, keep) }

//go:wasmexport gc
func gcExport(p, n uint32) uint64 { return omnicore.Handle(p, n, gcCheck) }

//go:wasmexport hog
func hogExport(p, n uint32) uint64 { return omnicore.Handle(p, n, hog) }

//go:wasmexport spin
func spinExport(p, n uint32) uint64 { return omnicore.Handle(p, n, spin) }

func main() {}

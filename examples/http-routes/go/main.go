// Command hooks is the example of plugins that serve HTTP (docs/guides/http-routes.md):
// a GitHub webhook receiver and a small JSON API of notes kept in the plugin's kv store.
//
// Route handler on_push: a signed GitHub delivery (the host checked X-Hub-Signature-256)
// -> {"event": "push", "ref": "...", "commits": N}; the last one is kept under kv "last-push".
// Route handler notes: GET, PUT, DELETE /notes/{id} with a JSON body {"text": "..."}.
package main

import (
	"encoding/json"
	"errors"
	"strconv"

	"omnicore.dev/sdk"
)

type push struct {
	Ref     string `json:"ref"`
	Commits []any  `json:"commits"`
}

// OnPush answers one GitHub delivery.
func OnPush(r *omnicore.RouteRequest) (*omnicore.RouteResponse, error) {
	event := r.Header("X-GitHub-Event")
	if event == "ping" {
		return omnicore.JSONReply(200, map[string]string{"event": "ping"}), nil
	}
	var p push
	if err := r.JSON(&p); err != nil {
		return omnicore.JSONReply(400, map[string]string{"error": "the body is not JSON"}), nil
	}
	omnicore.Log.Info(event + " " + p.Ref + ": " + strconv.Itoa(len(p.Commits)) + " commits")
	if err := omnicore.KV.Set("last-push", r.Body); err != nil {
		return nil, err
	}
	return omnicore.JSONReply(200, map[string]any{"event": event, "ref": p.Ref,
		"commits": len(p.Commits)}), nil
}

type note struct {
	Text string `json:"text"`
}

// Notes is a small JSON API: GET, PUT and DELETE /notes/{id}.
func Notes(r *omnicore.RouteRequest) (*omnicore.RouteResponse, error) {
	id := r.Params["id"]
	key := "note:" + id
	switch r.Method {
	case "GET", "HEAD":
		raw, err := omnicore.KV.Get(key)
		if errors.Is(err, omnicore.ErrNotFound) {
			return omnicore.JSONReply(404, map[string]string{"error": "no note " + id}), nil
		} else if err != nil {
			return nil, err
		}
		return omnicore.Reply(200).With("content-type", "application/json").WithBody(raw), nil
	case "PUT":
		var n note
		if err := r.JSON(&n); err != nil || n.Text == "" {
			return omnicore.JSONReply(422, map[string]string{"error": `send {"text": "..."}`}), nil
		}
		raw, _ := json.Marshal(n)
		if err := omnicore.KV.Set(key, raw); err != nil {
			return nil, err
		}
		return omnicore.JSONReply(200, map[string]string{"id": id, "text": n.Text,
			"by": r.User()}), nil
	case "DELETE":
		if _, err := omnicore.KV.Delete(key); err != nil {
			return nil, err
		}
		return omnicore.Reply(204), nil
	}
	return omnicore.JSONReply(405, map[string]string{"error": r.Method}), nil
}

//go:wasmexport on_push
func onPush(ptr, size uint32) uint64 { return omnicore.HandleRoute(ptr, size, OnPush) }

//go:wasmexport notes
func notes(ptr, size uint32) uint64 { return omnicore.HandleRoute(ptr, size, Notes) }

func main() {}

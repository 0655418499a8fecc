package omnicore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// A route handler's error is answered 500 "internal error" and written to the plugin's log,
// never sent: it may hold what the caller must not see (specs/http-routes.md §3.1).
func TestRouteErrorIsLoggedNotSent(t *testing.T) {
	host := &TestHost{}
	UseTestHost(host)
	head := []byte(`{"method":"GET","path":"/"}`)
	input := binary.LittleEndian.AppendUint32(nil, uint32(len(head)))
	input = append(input, head...)
	out := serveRoute(input, func(*RouteRequest) (*RouteResponse, error) {
		return nil, errors.New("db password is hunter2")
	})
	n := binary.LittleEndian.Uint32(out[:4])
	answer, body := out[4:4+n], out[4+n:]
	if !bytes.Contains(answer, []byte(`"status":500`)) || string(body) != "internal error" {
		t.Fatalf("answer %s, body %q", answer, body)
	}
	if len(host.Logs) != 1 || host.Logs[0].Message != "db password is hunter2" || host.Logs[0].Level != LevelError {
		t.Fatalf("logs: %+v", host.Logs)
	}
}

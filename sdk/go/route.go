package omnicore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
)

// RouteRequest is one HTTP request a route the operator mapped to this plugin's handler
// carries in (specs/http-routes.md §2): the request envelope, decoded.
type RouteRequest struct {
	// Method is upper case, as sent ("HEAD" stays "HEAD").
	Method string `json:"method"`
	// Path is the request path after the host's prefix, decoded, starting with "/".
	Path string `json:"path"`
	// Query is the raw query string without "?".
	Query string `json:"query"`
	// QueryParams is the query parsed: name -> values in order.
	QueryParams map[string][]string `json:"query_params"`
	// Params are the route pattern's variables ({id}, {rest...}).
	Params map[string]string `json:"params"`
	// Headers has lower-case names; a repeated header's values are joined with ", ".
	Headers map[string]string `json:"headers"`
	// Route is the route's name, URL the URL the client asked for, Remote its address.
	Route  string `json:"route"`
	URL    string `json:"url"`
	Remote string `json:"remote"`
	// Auth is what the host checked: {"mode": "public"|"token"|"github"|"stripe", ...}.
	Auth map[string]any `json:"auth"`
	// Body is the whole request body.
	Body []byte `json:"-"`
}

// Header is the value of the header name (any case), "" when absent.
func (r *RouteRequest) Header(name string) string { return r.Headers[strings.ToLower(name)] }

// Param is the first value of the query parameter name, "" when absent.
func (r *RouteRequest) Param(name string) string {
	if v := r.QueryParams[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Text is the body as a string.
func (r *RouteRequest) Text() string { return string(r.Body) }

// JSON decodes the body into v.
func (r *RouteRequest) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// User is the API token's user name of a route with auth "token", "" otherwise.
func (r *RouteRequest) User() string {
	if u, ok := r.Auth["user"].(string); ok {
		return u
	}
	return ""
}

// RouteResponse is the answer a route handler returns (specs/http-routes.md §3).
type RouteResponse struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    []byte              `json:"-"`
}

// Reply is an empty response of status (204 for an empty 200 is the host's: set a body).
func Reply(status int) *RouteResponse { return &RouteResponse{Status: status} }

// TextReply is a text/plain response.
func TextReply(status int, text string) *RouteResponse {
	return Reply(status).With("content-type", "text/plain; charset=utf-8").WithBody([]byte(text))
}

// JSONReply is an application/json response of v encoded (500 if v does not encode).
func JSONReply(status int, v any) *RouteResponse {
	raw, err := json.Marshal(v)
	if err != nil {
		return TextReply(500, "cannot encode the response: "+err.Error())
	}
	return Reply(status).With("content-type", "application/json").WithBody(raw)
}

// With adds a header value (call it again for a second value, e.g. set-cookie).
func (r *RouteResponse) With(name, value string) *RouteResponse {
	if r.Headers == nil {
		r.Headers = map[string][]string{}
	}
	key := strings.ToLower(name)
	r.Headers[key] = append(r.Headers[key], value)
	return r
}

// WithBody sets the body.
func (r *RouteResponse) WithBody(body []byte) *RouteResponse {
	r.Body = body
	return r
}

var errNotEnvelope = errors.New("the input is not a request envelope (head_len, head JSON, body)")

// DecodeRoute reads a request envelope (a handler's input on a route).
func DecodeRoute(input []byte) (*RouteRequest, error) {
	if len(input) < 4 {
		return nil, errNotEnvelope
	}
	n := binary.LittleEndian.Uint32(input)
	if uint64(n) > uint64(len(input)-4) {
		return nil, errNotEnvelope
	}
	req := &RouteRequest{}
	if err := json.Unmarshal(input[4:4+n], req); err != nil {
		return nil, errNotEnvelope
	}
	req.Body = append([]byte(nil), input[4+n:]...)
	if req.Headers == nil {
		req.Headers = map[string]string{}
	}
	if req.QueryParams == nil && req.Query != "" {
		if values, err := url.ParseQuery(req.Query); err == nil {
			req.QueryParams = values
		}
	}
	return req, nil
}

// Encode is the response block the host reads: head_len (u32 LE), the head JSON, the body.
func (r *RouteResponse) Encode() []byte {
	status := r.Status
	if status == 0 {
		status = 200
	}
	head, _ := json.Marshal(RouteResponse{Status: status, Headers: r.Headers})
	out := make([]byte, 4, 4+len(head)+len(r.Body))
	binary.LittleEndian.PutUint32(out, uint32(len(head)))
	out = append(out, head...)
	return append(out, r.Body...)
}

// HandleRoute runs fn as a route handler: the input is decoded as a request (one that is not
// an envelope is answered 400), fn's response encoded; an error fn returns is a 500
// "internal error" (a response, not a failed call), its message written to the plugin's log,
// never sent: it may hold what the caller must not see (specs/http-routes.md §3.1).
//
//	//go:wasmexport hello
//	func hello(ptr, size uint32) uint64 {
//		return omnicore.HandleRoute(ptr, size, func(r *omnicore.RouteRequest) (*omnicore.RouteResponse, error) {
//			return omnicore.TextReply(200, "hello "+r.Param("name")), nil
//		})
//	}
func HandleRoute(ptr, size uint32, fn func(*RouteRequest) (*RouteResponse, error)) uint64 {
	return Handle(ptr, size, func(input []byte) ([]byte, error) {
		return serveRoute(input, fn), nil
	})
}

// serveRoute is HandleRoute on one input: the response block it answers.
func serveRoute(input []byte, fn func(*RouteRequest) (*RouteResponse, error)) []byte {
	req, err := DecodeRoute(input)
	if err != nil {
		return TextReply(400, err.Error()).Encode()
	}
	resp, err := fn(req)
	if err != nil {
		Log.Error(err.Error())
		return TextReply(500, "internal error").Encode()
	}
	if resp == nil {
		resp = Reply(204)
	}
	return resp.Encode()
}

package omnicore

import (
	"encoding/binary"
	"encoding/json"
)

// Request is an outgoing HTTP request. Set URL for a direct request (its host must be in
// the grant's allow_hosts), or Connector and Path to call a named connector: the host joins
// the connector's base URL and adds its credentials, which the plugin never sees.
type Request struct {
	Method    string            `json:"method"`
	URL       string            `json:"url,omitempty"`
	Connector string            `json:"connector,omitempty"`
	Path      string            `json:"path,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	// TimeoutMS lowers the grant's timeout when non-zero.
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
	Body      []byte `json:"-"`
}

// Response is the answer to a [Request].
type Response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    []byte            `json:"-"`
}

// HTTPNamespace is the omnicore:http capability. Use it through the [HTTP] value.
type HTTPNamespace struct{}

// HTTP makes outgoing HTTP requests to the hosts and connectors the operator allowed.
var HTTP HTTPNamespace

// Do sends req. Any HTTP status is a response, not an error; a host outside the grant
// matches [ErrDenied], a failed connection [ErrUnavailable].
func (HTTPNamespace) Do(req Request) (*Response, error) {
	if req.Method == "" {
		req.Method = "GET"
	}
	head, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if tested != nil {
		tested.answerHTTP(req)
	}
	block, err := unpackBlock("http.request", hostHTTPRequest(bytesPtr(head), uint32(len(head)),
		bytesPtr(req.Body), uint32(len(req.Body))))
	if err != nil {
		return nil, err
	}
	// The block is head_len (u32 LE), the head JSON, then the body (§4.7).
	if len(block) < 4 {
		return nil, malformed("http.request", errShortBlock)
	}
	headLen := binary.LittleEndian.Uint32(block)
	if uint64(headLen) > uint64(len(block)-4) {
		return nil, malformed("http.request", errShortBlock)
	}
	resp := &Response{}
	if err := json.Unmarshal(block[4:4+headLen], resp); err != nil {
		return nil, malformed("http.request", err)
	}
	resp.Body = block[4+headLen:]
	return resp, nil
}

// Get is Do with a GET of url.
func (h HTTPNamespace) Get(url string) (*Response, error) {
	return h.Do(Request{Method: "GET", URL: url})
}

// Post is Do with a POST of body to url with the given content type.
func (h HTTPNamespace) Post(url, contentType string, body []byte) (*Response, error) {
	return h.Do(Request{Method: "POST", URL: url, Body: body,
		Headers: map[string]string{"content-type": contentType}})
}

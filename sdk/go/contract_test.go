package omnicore

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestContract runs the SDK's host calls on omnicore's test host through the host's answers
// (sdk/contract/host.json): the requests tests/sdk/test_contract_fakes.py passes in
// OMNICORE_CONTRACT_LINES, each outcome printed as "CONTRACT ok <JSON>" or
// "CONTRACT error <text>" for it to compare.
func TestContract(t *testing.T) {
	text := os.Getenv("OMNICORE_CONTRACT_LINES")
	if text == "" {
		t.Skip("OMNICORE_CONTRACT_LINES not set: tests/sdk/test_contract_fakes.py sets it")
	}
	var answer *Rows
	fresh := func() { UseTestHost(&TestHost{SQL: func(SQLCall) (any, error) { return answer, nil }}) }
	fresh()
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var req struct {
			Reset bool            `json:"reset"`
			Redis json.RawMessage `json:"redis"`
			SQL   json.RawMessage `json:"sql"`
		}
		if err := json.Unmarshal([]byte(line), &req); err != nil {
			t.Fatal(err)
		}
		var packed uint64
		switch {
		case req.Reset:
			fresh()
			continue
		case req.SQL != nil:
			// TestHost.SQL answers *Rows: an answer that is not one cannot be given to it.
			answer = &Rows{}
			if json.Unmarshal(req.SQL, answer) != nil || !typedColumns(req.SQL) {
				fmt.Println("CONTRACT typed")
				continue
			}
			body := []byte(`{"sql":"SELECT","params":[]}`)
			tested.answerSQL("db", body, true)
			packed = hostSQLQuery("db", &body[0], uint32(len(body)))
		default:
			packed = hostRedisCommand("cache", &req.Redis[0], uint32(len(req.Redis)))
		}
		data, err := unpackBlock("contract", packed)
		if err != nil {
			fmt.Println("CONTRACT error", err.(*HostError).Message)
			continue
		}
		fmt.Println("CONTRACT ok", string(data))
	}
}

// typedColumns is whether every column of the answer is an object with a name and a type.
func typedColumns(raw json.RawMessage) bool {
	var doc struct {
		Columns []map[string]any `json:"columns"`
		Rows    [][]any          `json:"rows"`
	}
	if json.Unmarshal(raw, &doc) != nil || doc.Columns == nil {
		return false
	}
	for _, c := range doc.Columns {
		if _, ok := c["name"].(string); !ok {
			return false
		}
		if _, ok := c["type"].(string); !ok {
			return false
		}
	}
	return true
}

package omnicore_test

// The README's "Test" section shows this file's test as it is (tests/test_docs.py checks that
// the excerpt is still here): a handler that reads SQL, tested against scripted rows.

import (
	"errors"
	"testing"

	"omnicore.dev/sdk"
)

type CheckInput struct {
	SKU string `json:"sku"`
}

type CheckOutput struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// Check reads one row of the stock table through the operator's orders connector.
func Check(in CheckInput) (CheckOutput, error) {
	rows, err := omnicore.SQL.Connect("orders").Query("select sku, qty from stock where sku = $1", in.SKU)
	if err != nil {
		return CheckOutput{}, err
	}
	if rows.Len() == 0 {
		return CheckOutput{}, errors.New("no such sku: " + in.SKU)
	}
	qty, _ := rows.Get(0, "qty").(int64)
	return CheckOutput{SKU: in.SKU, Qty: qty}, nil
}

func TestCheckReadsTheRow(t *testing.T) {
	host := omnicore.UseTestHost(&omnicore.TestHost{SQL: func(call omnicore.SQLCall) (any, error) {
		// Rows as a server answers them: typed columns, one cell per column.
		return &omnicore.Rows{
			Columns: []omnicore.SQLColumn{{Name: "sku", Type: "text"}, {Name: "qty", Type: "int4"}},
			Rows:    [][]any{{call.Params[0], int64(12)}},
		}, nil
	}})
	out, err := Check(CheckInput{SKU: "A-1"})
	if err != nil || out.Qty != 12 {
		t.Fatalf("Check = %+v, %v", out, err)
	}
	if call := host.SQLCalls[0]; call.Connector != "orders" || call.Params[0] != "A-1" {
		t.Fatalf("the statement ran: %+v", call)
	}
}

func TestCheckPassesTheHostsRefusalOn(t *testing.T) {
	omnicore.UseTestHost(&omnicore.TestHost{SQL: func(omnicore.SQLCall) (any, error) {
		return nil, errors.New("UNAVAILABLE: connector orders: connection refused")
	}})
	if _, err := Check(CheckInput{SKU: "A-1"}); !errors.Is(err, omnicore.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

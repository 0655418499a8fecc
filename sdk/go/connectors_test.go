package omnicore

import (
	"errors"
	"reflect"
	"testing"
)

func TestSQLQueryAnsweredByTestHostSQL(t *testing.T) {
	host := UseTestHost(&TestHost{SQL: func(call SQLCall) (any, error) {
		if call.Connector != "orders" || call.SQL != "select sku, qty, price, photo from stock where sku = $1" {
			t.Fatalf("unexpected call %+v", call)
		}
		return &Rows{Columns: []SQLColumn{{"sku", "text"}, {"qty", "int4"}, {"price", "numeric"}, {"photo", "bytea"}},
			Rows: [][]any{{call.Params[0], int64(3), Decimal("12.50"), []byte{0, 255}}}}, nil
	}})
	rows, err := SQL.Connect("orders").Query("select sku, qty, price, photo from stock where sku = $1", "A-1")
	if err != nil {
		t.Fatal(err)
	}
	if rows.Len() != 1 || rows.Get(0, "qty") != int64(3) || rows.Get(0, "price") != Decimal("12.50") ||
		!reflect.DeepEqual(rows.Get(0, "photo"), []byte{0, 255}) || rows.Get(0, "sku") != "A-1" {
		t.Fatalf("rows: %+v", rows)
	}
	if m := rows.Maps()[0]; m["qty"] != int64(3) || rows.Columns[1].Type != "int4" {
		t.Fatalf("maps: %+v", m)
	}
	if len(host.SQLCalls) != 1 || host.SQLCalls[0].Params[0] != "A-1" {
		t.Fatalf("calls: %+v", host.SQLCalls)
	}
}

func TestSQLErrorsMatchTheirStatus(t *testing.T) {
	UseTestHost(&TestHost{})
	db := SQL.Connect("orders")
	var hostErr *HostError
	if _, err := db.Query("select 1"); !errors.Is(err, ErrUnavailable) || !errors.As(err, &hostErr) ||
		hostErr.Op != "sql.query" {
		t.Fatalf("no TestHost.SQL: %v", err)
	}
	UseTestHost(&TestHost{SQL: func(SQLCall) (any, error) {
		return nil, errors.New("DENIED: connector orders is not granted")
	}})
	if _, err := db.Execute("delete from stock"); !errors.Is(err, ErrDenied) {
		t.Fatalf("denied: %v", err)
	}
	if _, err := db.Query("select $1", map[string]int{"a": 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a bare map is not a parameter: %v", err)
	}
}

func TestSQLTransactions(t *testing.T) {
	id := int64(7)
	host := UseTestHost(&TestHost{SQL: func(SQLCall) (any, error) {
		return ExecResult{RowsAffected: 1, LastInsertID: &id}, nil
	}})
	db := SQL.Connect("orders")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	res, err := tx.Execute("insert into t values ($1, $2, $3)", nil, JSON{map[string]int{"a": 1}}, Date("2026-11-24"))
	if err != nil || res.RowsAffected != 1 || *res.LastInsertID != 7 {
		t.Fatalf("execute: %+v %v", res, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil { // after Commit: nothing to do
		t.Fatal(err)
	}
	tx2, _ := db.Begin()
	if err := tx2.Rollback(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, c := range host.SQLCalls {
		seen = append(seen, c.SQL)
	}
	want := []string{"BEGIN", "insert into t values ($1, $2, $3)", "COMMIT", "BEGIN", "ROLLBACK"}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("statements: %v", seen)
	}
	params := host.SQLCalls[1].Params
	if params[0] != nil || !reflect.DeepEqual(params[1], JSON{map[string]any{"a": float64(1)}}) ||
		params[2] != Date("2026-11-24") {
		t.Fatalf("params: %#v", params)
	}
}

func TestRedisOnTheTestHost(t *testing.T) {
	host := UseTestHost(&TestHost{})
	cache := Redis.Connect("cache")
	if _, err := cache.Get("hits"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
	if n, _ := cache.Incr("hits"); n != 1 {
		t.Fatal(n)
	}
	if n, _ := cache.IncrBy("hits", 4); n != 5 {
		t.Fatal(n)
	}
	if ok, _ := cache.Expire("hits", 60); !ok || host.RedisTTL("hits") != 60 {
		t.Fatal("expire")
	}
	if n, _ := cache.TTL("hits"); n != 60 {
		t.Fatal(n)
	}
	if err := cache.SetEX("greeting", "hi", 300); err != nil {
		t.Fatal(err)
	}
	if v, _ := cache.Get("greeting"); v != "hi" {
		t.Fatal(v)
	}
	_ = cache.Set("blob", []byte{0, 159, 146, 150})
	if v, _ := cache.Get("blob"); v != string([]byte{0, 159, 146, 150}) {
		t.Fatalf("bytes: %q", v)
	}
	if isNew, _ := cache.HSet("h", "a", "1"); !isNew {
		t.Fatal("hset")
	}
	if all, _ := cache.HGetAll("h"); !reflect.DeepEqual(all, map[string]string{"a": "1"}) {
		t.Fatal(all)
	}
	if v, _ := cache.HGet("h", "a"); v != "1" {
		t.Fatal(v)
	}
	_, _ = cache.RPush("q", "a", "b")
	_, _ = cache.LPush("q", "z")
	if l, _ := cache.LRange("q", 0, -1); !reflect.DeepEqual(l, []string{"z", "a", "b"}) {
		t.Fatal(l)
	}
	if n, _ := cache.SAdd("s", "x", "y", "x"); n != 2 {
		t.Fatal(n)
	}
	_, _ = cache.SRem("s", "y")
	if m, _ := cache.SMembers("s"); !reflect.DeepEqual(m, []string{"x"}) {
		t.Fatal(m)
	}
	if n, _ := cache.Del("greeting", "nope"); n != 1 {
		t.Fatal(n)
	}
	_, _ = cache.Publish("news", "hello")
	want := []string{"omnicore:plugin:blob", "omnicore:plugin:h", "omnicore:plugin:hits",
		"omnicore:plugin:q", "omnicore:plugin:s"}
	if !reflect.DeepEqual(host.RedisKeys(), want) {
		t.Fatal(host.RedisKeys())
	}
	if got := host.RedisPublished(); len(got) != 1 || got[0].Topic != "omnicore:plugin:news" ||
		string(got[0].Payload) != "hello" || len(host.Events) != 0 {
		t.Fatal(got, host.Events)
	}
	if r, _ := cache.Command("HINCRBY", "h", "a", 2); r != int64(3) {
		t.Fatal(r)
	}
	if _, err := cache.Command("FLUSHALL"); !errors.Is(err, ErrDenied) {
		t.Fatal(err)
	}
	if _, err := cache.Incr("s"); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}

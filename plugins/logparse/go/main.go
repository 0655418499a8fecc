// Command logparse is a realistic omnicore plugin written with the Go SDK: it parses web
// server access logs (Common and Combined Log Format) into JSON records with statistics,
// using regexp, time and encoding/json from the Go standard library.
//
// Handler parse: raw log text in, {"records": [...], "stats": {...}, "skipped": [...]} out.
// Handler stats: raw log text in, only the statistics out (no per-line records).
// Config: "top" (default 5) is how many paths, IPs and user agents the top lists hold.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"sort"
	"strconv"
	"time"

	"omnicore.dev/sdk"
)

// One line of Combined Log Format (the referer/user-agent pair is optional, which makes it
// the Common Log Format):
// 127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "ref" "ua"
var lineRE = regexp.MustCompile(`^(\S+) (\S+) (\S+) \[([^\]]+)\] "([A-Z]+) (\S+)(?: (HTTP/[0-9.]+))?" ` +
	`(\d{3}) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?\s*$`)

const clfTime = "02/Jan/2006:15:04:05 -0700"

// maxSkipped bounds the skipped-lines report so a file of garbage cannot blow the output.
const maxSkipped = 100

// Record is one parsed request.
type Record struct {
	Line      int    `json:"line"`
	IP        string `json:"ip"`
	User      string `json:"user,omitempty"`
	Time      string `json:"time"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol,omitempty"`
	Status    int    `json:"status"`
	Bytes     int64  `json:"bytes"`
	Referer   string `json:"referer,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	at        time.Time
}

// Skipped is a line that is not an access-log line.
type Skipped struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// Count is one entry of a top list.
type Count struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Stats summarises the parsed records.
type Stats struct {
	Lines     int            `json:"lines"`
	Parsed    int            `json:"parsed"`
	Skipped   int            `json:"skipped"`
	Bytes     int64          `json:"bytes"`
	ByStatus  map[string]int `json:"by_status"`
	ByMethod  map[string]int `json:"by_method"`
	UniqueIPs int            `json:"unique_ips"`
	ErrorRate float64        `json:"error_rate"`
	First     string         `json:"first,omitempty"`
	Last      string         `json:"last,omitempty"`
	TopPaths  []Count        `json:"top_paths"`
	TopIPs    []Count        `json:"top_ips"`
	TopAgents []Count        `json:"top_user_agents"`
	PerMinute float64        `json:"requests_per_minute"`
}

// Report is the output of parse.
type Report struct {
	Records []Record  `json:"records"`
	Stats   Stats     `json:"stats"`
	Skipped []Skipped `json:"skipped"`
}

func parseLine(n int, line []byte) (Record, error) {
	m := lineRE.FindSubmatch(line)
	if m == nil {
		return Record{}, errors.New("not in Common or Combined Log Format")
	}
	when, err := time.Parse(clfTime, string(m[4]))
	if err != nil {
		return Record{}, errors.New("bad timestamp " + strconv.Quote(string(m[4])))
	}
	status, _ := strconv.Atoi(string(m[8]))
	var size int64
	if string(m[9]) != "-" {
		if size, err = strconv.ParseInt(string(m[9]), 10, 64); err != nil {
			return Record{}, errors.New("bad size " + strconv.Quote(string(m[9])))
		}
	}
	rec := Record{Line: n, IP: string(m[1]), Time: when.UTC().Format(time.RFC3339),
		Method: string(m[5]), Path: string(m[6]), Protocol: string(m[7]), Status: status,
		Bytes: size, Referer: dash(m[10]), UserAgent: dash(m[11]), at: when}
	if user := string(m[3]); user != "-" {
		rec.User = user
	}
	return rec, nil
}

func dash(b []byte) string {
	if string(b) == "-" {
		return ""
	}
	return string(b)
}

func analyse(input []byte) (Report, error) {
	if len(bytes.TrimSpace(input)) == 0 {
		return Report{}, errors.New("empty input: send access-log lines as plain text")
	}
	top := 5
	if text, err := omnicore.Config.Get("top"); err == nil {
		if top, err = strconv.Atoi(text); err != nil || top < 0 {
			return Report{}, errors.New("config top must be a non-negative integer, got " +
				strconv.Quote(text))
		}
	}
	report := Report{Records: []Record{}, Skipped: []Skipped{}}
	st := &report.Stats
	st.ByStatus, st.ByMethod = map[string]int{}, map[string]int{}
	paths, ips, agents := map[string]int{}, map[string]int{}, map[string]int{}
	var first, last time.Time
	errorsSeen := 0
	for n, line := range bytes.Split(input, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		st.Lines++
		rec, err := parseLine(n+1, line)
		if err != nil {
			st.Skipped++
			if len(report.Skipped) < maxSkipped {
				report.Skipped = append(report.Skipped, Skipped{Line: n + 1, Reason: err.Error()})
			}
			continue
		}
		st.Parsed++
		st.Bytes += rec.Bytes
		st.ByStatus[strconv.Itoa(rec.Status/100)+"xx"]++
		st.ByMethod[rec.Method]++
		paths[rec.Path]++
		ips[rec.IP]++
		if rec.UserAgent != "" {
			agents[rec.UserAgent]++
		}
		if rec.Status >= 400 {
			errorsSeen++
		}
		when := rec.at
		if first.IsZero() || when.Before(first) {
			first = when
		}
		if when.After(last) {
			last = when
		}
		report.Records = append(report.Records, rec)
	}
	st.UniqueIPs = len(ips)
	st.TopPaths, st.TopIPs, st.TopAgents = topN(paths, top), topN(ips, top), topN(agents, top)
	if st.Parsed > 0 {
		st.ErrorRate = float64(errorsSeen) / float64(st.Parsed)
		st.First, st.Last = first.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339)
		if minutes := last.Sub(first).Minutes(); minutes > 0 {
			st.PerMinute = float64(st.Parsed) / minutes
		}
	}
	omnicore.Log.Info("parsed " + strconv.Itoa(st.Parsed) + " of " + strconv.Itoa(st.Lines) +
		" lines")
	return report, nil
}

// topN returns the n most frequent values, ties broken alphabetically so output is stable.
func topN(counts map[string]int, n int) []Count {
	list := make([]Count, 0, len(counts))
	for value, count := range counts {
		list = append(list, Count{Value: value, Count: count})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Count != list[j].Count {
			return list[i].Count > list[j].Count
		}
		return list[i].Value < list[j].Value
	})
	if len(list) > n {
		list = list[:n]
	}
	return list
}

// Parse returns every record, the statistics and the skipped lines.
func Parse(input []byte) ([]byte, error) {
	report, err := analyse(input)
	if err != nil {
		return nil, err
	}
	return json.Marshal(report)
}

// StatsOnly returns only the statistics.
func StatsOnly(input []byte) ([]byte, error) {
	report, err := analyse(input)
	if err != nil {
		return nil, err
	}
	return json.Marshal(report.Stats)
}

var (
	_ = omnicore.DescribeHandler("parse", "Parses web access log text (Common or Combined "+
		"Log Format, one request a line) into records, statistics and the lines it skipped",
		omnicore.Title("Parse an access log"), omnicore.OutputOf[Report]())
	_ = omnicore.DescribeHandler("stats", "Summarises web access log text (Common or "+
		"Combined Log Format): status and method counts, top paths, IPs and user agents",
		omnicore.Title("Access log statistics"), omnicore.OutputOf[Stats]())
)

//go:wasmexport parse
func parseExport(ptr, size uint32) uint64 { return omnicore.Handle(ptr, size, Parse) }

//go:wasmexport stats
func statsExport(ptr, size uint32) uint64 { return omnicore.Handle(ptr, size, StatsOnly) }

func main() {}

package omnicore

import "encoding/json"

// Tier is a memory tier of omnicore:memory.
type Tier int32

// Memory tiers (specs/abi.md §4.4).
const (
	// TierWorking lives for the instance's TTL (default 1 h).
	TierWorking Tier = 0
	// TierShortTerm lives 7 days by default.
	TierShortTerm Tier = 1
	// TierLongTerm never expires.
	TierLongTerm Tier = 2
)

// MemoryItem is a text memory to remember.
type MemoryItem struct {
	Text string `json:"text"`
	// Metadata is matched by [RecallQuery.Filter].
	Metadata map[string]any `json:"metadata,omitempty"`
	// TTLSeconds overrides the tier's default lifetime when non-zero.
	TTLSeconds int64 `json:"ttl_s,omitempty"`
	// Importance, 0 to 1, weighs in the ranking, and a full tier evicts its least important
	// memory first; nil means 0.5. Set it with [Importance].
	Importance *float64 `json:"importance,omitempty"`
	// Vector is an embedding of Text: a recall with a vector then ranks by cosine
	// similarity too. Every vector a plugin remembers has the same dimension.
	Vector []float32 `json:"vector,omitempty"`
}

// Importance returns a pointer to v, for [MemoryItem.Importance].
func Importance(v float64) *float64 { return &v }

// RecallQuery selects memories; zero Tiers means all tiers, zero Limit means 10.
type RecallQuery struct {
	// Query is split into words and matched by full-text relevance; "" ranks by importance
	// and recency alone.
	Query string `json:"query"`
	Tiers []Tier `json:"tiers,omitempty"`
	Limit int    `json:"limit,omitempty"`
	// Filter keeps only memories whose metadata equals every key (values are strings,
	// numbers or booleans).
	Filter map[string]any `json:"filter,omitempty"`
	// Vector ranks by cosine similarity to the memories' vectors too.
	Vector []float32 `json:"vector,omitempty"`
}

// Recalled is one memory returned by [MemoryNamespace.Recall], best first.
type Recalled struct {
	ID        int64          `json:"id"`
	Tier      Tier           `json:"tier"`
	Text      string         `json:"text"`
	Metadata  map[string]any `json:"metadata"`
	Score     float64        `json:"score"`
	CreatedAt float64        `json:"created_at"`
}

// MemoryNamespace is the omnicore:memory capability (tiered text memories for agents).
// Use it through the [Memory] value.
type MemoryNamespace struct{}

// Memory stores and recalls text memories, ranked by relevance and recency.
var Memory MemoryNamespace

// Remember stores item in tier and returns its id. A bad field (importance outside 0..1, a
// NaN or wrongly sized vector, empty text) matches [ErrInvalid]; text or metadata over the
// grant's limits [ErrTooLarge].
func (MemoryNamespace) Remember(tier Tier, item MemoryItem) (int64, error) {
	payload, err := json.Marshal(item)
	if err != nil {
		return 0, unencodable("memory.remember", err)
	}
	id := hostMemoryRemember(int32(tier), bytesPtr(payload), uint32(len(payload)))
	if id < 0 {
		return 0, statusError("memory.remember", int32(id))
	}
	return id, nil
}

// Recall returns the memories matching query, best first.
func (MemoryNamespace) Recall(query RecallQuery) ([]Recalled, error) {
	payload, err := json.Marshal(query)
	if err != nil {
		return nil, unencodable("memory.recall", err)
	}
	raw, err := readBuffered("memory.recall", func(out *byte, capacity uint32) int32 {
		return hostMemoryRecall(bytesPtr(payload), uint32(len(payload)), out, capacity)
	})
	if err != nil {
		return nil, err
	}
	var found []Recalled
	if err := json.Unmarshal(raw, &found); err != nil {
		return nil, malformed("memory.recall", err)
	}
	return found, nil
}

// Forget deletes the memory id and reports whether it existed.
func (MemoryNamespace) Forget(id int64) (bool, error) {
	status := hostMemoryForget(id)
	if status < 0 {
		return false, statusError("memory.forget", status)
	}
	return status == 1, nil
}

// unencodable is what JSON cannot carry (NaN, infinity): the status the host would give.
func unencodable(op string, err error) error {
	return &HostError{Op: op, Message: err.Error(), err: ErrInvalid}
}

func malformed(op string, err error) error {
	return &HostError{Op: op, Message: "host sent malformed JSON: " + err.Error(),
		err: ErrUnavailable}
}

package omnicore

import (
	"encoding/json"
	"unsafe"
)

// Match is one result of [VectorsNamespace.Search], best first.
type Match struct {
	ID       string         `json:"id"`
	Score    float64        `json:"score"`
	Metadata map[string]any `json:"metadata"`
}

// VectorsNamespace is the omnicore:vectors capability. Use it through the [Vectors] value.
type VectorsNamespace struct{}

// Vectors holds named collections of fixed-dimension vectors (cosine distance).
var Vectors VectorsNamespace

// Upsert stores vec under id in collection coll, creating the collection with vec's
// dimension on first use; metadata may be nil. A dimension mismatch matches [ErrInvalid].
func (VectorsNamespace) Upsert(coll, id string, vec []float32, metadata map[string]any) error {
	var meta []byte
	if metadata != nil {
		var err error
		if meta, err = json.Marshal(metadata); err != nil {
			return err
		}
	}
	// wasm is little-endian, so a []float32 already has the ABI's layout.
	status := hostVectorsUpsert(coll, id, floatsPtr(vec), uint32(len(vec)), bytesPtr(meta),
		uint32(len(meta)))
	if status < 0 {
		return statusError("vectors.upsert", status)
	}
	return nil
}

// Search returns at most k (1-1000) nearest neighbours of vec in coll, best first; an
// unknown collection matches [ErrNotFound].
func (VectorsNamespace) Search(coll string, vec []float32, k int) ([]Match, error) {
	raw, err := unpackBlock("vectors.search",
		hostVectorsSearch(coll, floatsPtr(vec), uint32(len(vec)), int32(k)))
	if err != nil {
		return nil, err
	}
	var matches []Match
	if err := json.Unmarshal(raw, &matches); err != nil {
		return nil, malformed("vectors.search", err)
	}
	return matches, nil
}

// Query is [VectorsNamespace.Search] keeping only the vectors whose metadata equals every
// key of filter (values are strings, numbers or booleans); the filter applies before the k
// best are taken. A nil filter is Search.
func (VectorsNamespace) Query(coll string, vec []float32, k int,
	filter map[string]any) ([]Match, error) {
	var flt []byte
	if filter != nil {
		var err error
		if flt, err = json.Marshal(filter); err != nil {
			return nil, unencodable("vectors.query", err)
		}
	}
	raw, err := unpackBlock("vectors.query", hostVectorsQuery(coll, floatsPtr(vec),
		uint32(len(vec)), int32(k), bytesPtr(flt), uint32(len(flt))))
	if err != nil {
		return nil, err
	}
	var matches []Match
	if err := json.Unmarshal(raw, &matches); err != nil {
		return nil, malformed("vectors.query", err)
	}
	return matches, nil
}

// Delete removes id from coll and reports whether it existed; an unknown collection
// matches [ErrNotFound].
func (VectorsNamespace) Delete(coll, id string) (bool, error) {
	status := hostVectorsDelete(coll, id)
	if status < 0 {
		return false, statusError("vectors.delete", status)
	}
	return status == 1, nil
}

func floatsPtr(v []float32) *float32 {
	if len(v) == 0 {
		return nil
	}
	return (*float32)(unsafe.Pointer(&v[0]))
}

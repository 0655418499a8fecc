package omnicore

import (
	"encoding/json"
	"errors"
)

// ConfigNamespace is the omnicore:config capability. Use it through the [Config] value.
type ConfigNamespace struct{}

// Config reads the plugin's own config section, set by the operator.
var Config ConfigNamespace

// Get returns the value at key as text: a string verbatim, any other value as compact
// JSON ("42", "true", `{"a":1}`). Dotted keys ("db.host") walk nested objects. An absent
// key is an error matching [ErrNotFound].
func (ConfigNamespace) Get(key string) (string, error) {
	value, err := readBuffered("config.get", func(out *byte, capacity uint32) int32 {
		return hostConfigGet(key, out, capacity)
	})
	return string(value), err
}

// GetOr returns the value at key, or fallback when the key is absent. Other failures
// (the config capability not granted traps at load time, so there are none in practice)
// also yield fallback.
func (c ConfigNamespace) GetOr(key, fallback string) string {
	value, err := c.Get(key)
	if err != nil {
		return fallback
	}
	return value
}

// Load decodes the whole config section (a JSON object) into v, as json.Unmarshal does.
func (ConfigNamespace) Load(v any) error {
	section, err := readBuffered("config.get", func(out *byte, capacity uint32) int32 {
		return hostConfigGet("", out, capacity)
	})
	if errors.Is(err, ErrNotFound) {
		section = []byte("{}")
	} else if err != nil {
		return err
	}
	return json.Unmarshal(section, v)
}

package omnicore

import (
	"encoding/json"
	"errors"
	"strings"
)

// HandleJSON runs fn as a JSON handler: the input is decoded into In with encoding/json,
// fn's result is encoded as JSON.
//
// Input that is not valid JSON, or not the JSON shape In needs (an array where In is a
// struct), fails with a message starting "invalid JSON input: ". A field of the wrong type
// fails with "invalid input: <field> must be a <type>, got <type>", for example
// "invalid input: name must be a string, got number". Errors and panics of fn are handled
// as by [Handle].
func HandleJSON[In, Out any](ptr, size uint32, fn func(In) (Out, error)) uint64 {
	return Handle(ptr, size, func(input []byte) ([]byte, error) {
		var in In
		if err := json.Unmarshal(input, &in); err != nil {
			return nil, DecodeError(err)
		}
		out, err := fn(in)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	})
}

// DecodeError turns an encoding/json decoding error into the SDK's input error; handlers
// that decode input themselves use it to report bad input like [HandleJSON] does.
func DecodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return errors.New("invalid input: " + typeErr.Field + " must be " +
			article(jsonKind(typeErr.Type.Kind().String())) + ", got " + typeErr.Value)
	}
	if errors.As(err, &typeErr) {
		return errors.New("invalid JSON input: expected " +
			article(jsonKind(typeErr.Type.Kind().String())) + ", got " + typeErr.Value)
	}
	return errors.New("invalid JSON input: " + strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names a Go kind the way a JSON author thinks of it.
func jsonKind(kind string) string {
	switch {
	case kind == "string":
		return "string"
	case kind == "bool":
		return "boolean"
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "integer"
	case strings.HasPrefix(kind, "float"):
		return "number"
	case kind == "slice", kind == "array":
		return "array"
	case kind == "struct", kind == "map":
		return "object"
	}
	return kind
}

func article(noun string) string {
	if noun == "" {
		return "a value"
	}
	if strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}

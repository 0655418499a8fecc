package omnicore

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
)

// Tool is what an AI agent (and the console's invoke form) is told of a handler: the
// manifest's handler object (specs/abi.md §5). [Describe] fills the schemas from the
// handler's types.
type Tool struct {
	Description  string         `json:"description,omitempty"`
	Title        string         `json:"title,omitempty"`
	InputSchema  map[string]any `json:"input_schema,omitempty"`
	OutputSchema map[string]any `json:"output_schema,omitempty"`
	// Destructive says the handler may delete or overwrite what it was given (an MCP
	// tool's destructiveHint).
	Destructive bool `json:"destructive,omitempty"`
}

// An Option adds to what [Describe] says of a handler.
type Option func(*Tool)

// Title is a short human name for the handler.
func Title(title string) Option { return func(t *Tool) { t.Title = title } }

// Destructive marks a handler that deletes or overwrites data.
func Destructive() Option { return func(t *Tool) { t.Destructive = true } }

// InputOf gives a bytes handler ([DescribeHandler]) the input schema of T, the JSON it decodes.
func InputOf[T any]() Option {
	return func(t *Tool) { t.InputSchema = objectSchema(reflect.TypeOf((*T)(nil)).Elem()) }
}

// OutputOf gives a bytes handler ([DescribeHandler]) the output schema of T, the JSON it encodes.
func OutputOf[T any]() Option {
	return func(t *Tool) { t.OutputSchema = objectSchema(reflect.TypeOf((*T)(nil)).Elem()) }
}

var described = map[string]Tool{}

// DescribeHandler declares what a bytes handler ([Handle]) does; [InputOf] and [OutputOf]
// give it schemas when its input or output is JSON of a Go type:
//
//	var _ = omnicore.DescribeHandler("count", "Adds to the counter", omnicore.InputOf[CountInput]())
func DescribeHandler(name, description string, options ...Option) bool {
	tool := Tool{Description: description}
	for _, option := range options {
		option(&tool)
	}
	described[name] = tool
	return true
}

// Describe declares what handler name does, for AI agents: the description, and input and
// output schemas derived from fn's types (struct fields by their json tags, a field's
// `description:"..."` tag as its description). `omnicore build` reads it into the manifest;
// keys of omnicore.toml's [plugin.handler.NAME] win over it. Call it at package level:
//
//	var _ = omnicore.Describe("greet", "Greets someone by name", Greet)
//
// A pointer, or a field tagged omitempty, is optional; slices, maps and pointers may be
// null (encoding/json writes nil ones so). The return value is only there to allow `var _ =`.
func Describe[In, Out any](name, description string, fn func(In) (Out, error),
	options ...Option) bool {
	tool := Tool{Description: description,
		InputSchema:  objectSchema(reflect.TypeOf((*In)(nil)).Elem()),
		OutputSchema: objectSchema(reflect.TypeOf((*Out)(nil)).Elem())}
	for _, option := range options {
		option(&tool)
	}
	described[name] = tool
	return true
}

// Described is every handler declared with [Describe] so far, by name.
func Described() map[string]Tool {
	out := make(map[string]Tool, len(described))
	for name, tool := range described {
		out[name] = tool
	}
	return out
}

// describeJSON is what the omni_describe export returns (specs/abi.md §5.1).
func describeJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"handlers": described})
}

// objectSchema is t's schema when it is a JSON object (MCP tools take and give objects
// only), else nil: the manifest then says nothing of that side.
func objectSchema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct && !(t.Kind() == reflect.Map && t.Key().Kind() == reflect.String) {
		return nil
	}
	schema := schemaOf(t, map[reflect.Type]bool{})
	schema["type"] = "object" // a map's ["object", "null"]: the root is never null
	return schema
}

var rawMessage = reflect.TypeOf(json.RawMessage(nil))

func schemaOf(t reflect.Type, seen map[reflect.Type]bool) map[string]any {
	if t == rawMessage || t.Kind() == reflect.Interface {
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		inner := schemaOf(t.Elem(), seen)
		if len(inner) == 0 {
			return inner
		}
		return map[string]any{"anyOf": []any{inner, map[string]any{"type": "null"}}}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": []any{"string", "null"}, "contentEncoding": "base64"}
		}
		return map[string]any{"type": []any{"array", "null"}, "items": schemaOf(t.Elem(), seen)}
	case reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), seen),
			"minItems": t.Len(), "maxItems": t.Len()}
	case reflect.Map:
		return map[string]any{"type": []any{"object", "null"},
			"additionalProperties": schemaOf(t.Elem(), seen)}
	case reflect.Struct:
		if seen[t] {
			return map[string]any{} // a recursive type: anything below the first level
		}
		seen[t] = true
		defer delete(seen, t)
		props := map[string]any{}
		required := []string{}
		addFields(t, seen, props, &required)
		sort.Strings(required)
		schema := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			schema["required"] = required
		}
		return schema
	}
	return map[string]any{} // chan, func, complex: encoding/json refuses them anyway
}

func addFields(t reflect.Type, seen map[reflect.Type]bool, props map[string]any, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			addFields(f.Type, seen, props, required) // encoding/json flattens embedded structs
			continue
		}
		if name == "" {
			name = f.Name
		}
		schema := schemaOf(f.Type, seen)
		if doc := f.Tag.Get("description"); doc != "" {
			schema["description"] = doc
		}
		props[name] = schema
		if !strings.Contains(","+opts+",", ",omitempty,") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}

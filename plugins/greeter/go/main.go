// Command greeter is the omnicore example plugin that greets people, written with the Go SDK.
//
// Handler greet: {"name": "Ada"} -> {"message": "Hello, Ada!"}; the greeting comes from
// the plugin's config key "greeting" (default "Hello"), the name defaults to "world".
package main

import (
	"errors"

	"omnicore.dev/sdk"
)

// GreetInput is the input of greet. Name is a pointer so an absent name (default "world")
// differs from an empty one (refused).
type GreetInput struct {
	Name *string `json:"name" description:"who to greet (default \"world\")"`
}

// GreetOutput is the output of greet.
type GreetOutput struct {
	Message string `json:"message"`
}

// Greet builds the greeting for in.
func Greet(in GreetInput) (GreetOutput, error) {
	name := "world"
	if in.Name != nil {
		if *in.Name == "" {
			return GreetOutput{}, errors.New("name must not be empty")
		}
		name = *in.Name
	}
	greeting := omnicore.Config.GetOr("greeting", "Hello")
	omnicore.Log.Info("greeting " + name)
	return GreetOutput{Message: greeting + ", " + name + "!"}, nil
}

var _ = omnicore.Describe("greet", "Greets someone by name with the configured greeting",
	Greet, omnicore.Title("Greet"))

//go:wasmexport greet
func greet(ptr, size uint32) uint64 { return omnicore.HandleJSON(ptr, size, Greet) }

func main() {}

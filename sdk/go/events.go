package omnicore

import "encoding/json"

// EventsNamespace is the omnicore:events capability. Use it through the [Events] value.
type EventsNamespace struct{}

// Events publishes on the host's event bus. Subscriptions are declared in omnicore.toml.
var Events EventsNamespace

// Publish sends payload on topic; the host prefixes the topic with "plugin.<name>." so a
// plugin cannot forge host events. A topic outside the grant matches [ErrDenied].
func (EventsNamespace) Publish(topic string, payload []byte) error {
	status := hostEventsPublish(topic, bytesPtr(payload), uint32(len(payload)))
	changed(eventState)
	if status < 0 {
		return statusError("events.publish", status)
	}
	return nil
}

// Event is what the host sends to a handler subscribed to a topic (the manifest's
// subscriptions in omnicore.toml). Use it as the input type of [HandleJSON]:
//
//	func onUser(e omnicore.Event) (struct{}, error) { ...; return struct{}{}, nil }
//
//	//go:wasmexport on_user
//	func onUserExport(ptr, size uint32) uint64 { return omnicore.HandleJSON(ptr, size, onUser) }
type Event struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

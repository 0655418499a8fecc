package omnicore

//go:wasmimport omnicore:events publish
func hostEventsPublish(topic string, payload *byte, payloadLen uint32) int32

// EventsNamespace is the omnicore:events capability. Use it through the [Events] value.
type EventsNamespace struct{}

// Events publishes on the host's event bus. Subscriptions are declared in omnicore.toml.
var Events EventsNamespace

// Publish sends payload on topic; the host prefixes the topic with "plugin.<name>." so a
// plugin cannot forge host events. A topic outside the grant matches [ErrDenied].
func (EventsNamespace) Publish(topic string, payload []byte) error {
	if status := hostEventsPublish(topic, bytesPtr(payload), uint32(len(payload))); status < 0 {
		return statusError("events.publish", status)
	}
	return nil
}

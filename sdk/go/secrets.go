package omnicore

// SecretsNamespace is the omnicore:secrets capability. Use it through the [Secrets] value.
type SecretsNamespace struct{}

// Secrets reads secrets the operator exposed to this plugin.
var Secrets SecretsNamespace

// Get returns the secret name. A name not exposed to the plugin matches [ErrDenied]; an
// exposed but unset one matches [ErrNotFound].
func (SecretsNamespace) Get(name string) ([]byte, error) {
	return readBuffered("secrets.get", func(out *byte, capacity uint32) int32 {
		return hostSecretsGet(name, out, capacity)
	})
}

package omnicore

// Level is a log level of omnicore:log.
type Level int32

// Log levels (specs/abi.md §4.1).
const (
	LevelTrace Level = 0
	LevelDebug Level = 1
	LevelInfo  Level = 2
	LevelWarn  Level = 3
	LevelError Level = 4
)

// LogNamespace is the omnicore:log capability (granted to every plugin). Use it through
// the [Log] value.
type LogNamespace struct{}

// Log writes to the plugin's log: the host's structured log plus the plugin's ring buffer.
var Log LogNamespace

// Write logs msg at level.
func (LogNamespace) Write(level Level, msg string) {
	hostLogWrite(int32(level), msg)
	changed(logState)
}

// Enabled reports whether a message at level would be kept, so a plugin can skip building
// an expensive message.
func (LogNamespace) Enabled(level Level) bool { return hostLogEnabled(int32(level)) == 1 }

// Trace logs msg at trace level.
func (l LogNamespace) Trace(msg string) { l.Write(LevelTrace, msg) }

// Debug logs msg at debug level.
func (l LogNamespace) Debug(msg string) { l.Write(LevelDebug, msg) }

// Info logs msg at info level.
func (l LogNamespace) Info(msg string) { l.Write(LevelInfo, msg) }

// Warn logs msg at warn level.
func (l LogNamespace) Warn(msg string) { l.Write(LevelWarn, msg) }

// Error logs msg at error level.
func (l LogNamespace) Error(msg string) { l.Write(LevelError, msg) }

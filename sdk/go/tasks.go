package omnicore

import "time"

// TasksNamespace is the omnicore:tasks capability. Use it through the [Tasks] value.
type TasksNamespace struct{}

// Tasks schedules durable background calls of this plugin's own handlers.
var Tasks TasksNamespace

// Enqueue schedules handler(payload) after delay and returns the task id. Delivery is
// at-least-once with retries, so the handler must be idempotent. An unknown handler
// matches [ErrNotFound], a full queue [ErrQuota].
func (TasksNamespace) Enqueue(handler string, payload []byte, delay time.Duration) (int64, error) {
	if delay < 0 {
		delay = 0
	}
	id := hostTasksEnqueue(handler, bytesPtr(payload), uint32(len(payload)), delay.Milliseconds())
	changed(taskState)
	if id < 0 {
		return 0, statusError("tasks.enqueue", int32(id))
	}
	return id, nil
}

// Cancel cancels task id and reports whether it was still pending; an unknown id matches
// [ErrNotFound].
func (TasksNamespace) Cancel(id int64) (bool, error) {
	status := hostTasksCancel(id)
	changed(taskState)
	if status < 0 {
		return false, statusError("tasks.cancel", status)
	}
	return status == 1, nil
}

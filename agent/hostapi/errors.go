package hostapi

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrNoUpdate means prepare found no chosen update, or activate/deactivate
	// found no staged image (HTTP 404).
	ErrNoUpdate = errors.New("no update chosen or staged")
	// ErrWrongState means the command is not allowed in the host's update state (HTTP 409).
	ErrWrongState = errors.New("command not allowed in the current update state")
	// ErrStatusUninitialized means GET /updates/status answered 404: the status
	// is lost at every reboot and comes back with the next refresh.
	ErrStatusUninitialized = errors.New("update status not initialized: run refresh-updates")
	// ErrLocked means the host kept answering 423 Locked until the retries ran out.
	ErrLocked = errors.New("host update lock held")
	// ErrOutcomeUnknown means a command ended but another caller's command replaced its
	// record (the host keeps only the most recent one); read the state to learn the outcome.
	ErrOutcomeUnknown = errors.New("command outcome unknown")
	// ErrCommandTimeout means the host did not record a command's outcome in time: it hangs
	// holding its update lock, or the command ended without a record.
	ErrCommandTimeout = errors.New("host command did not finish in time")
	// ErrUnavailable means the host API could not be reached (transport error).
	ErrUnavailable = errors.New("host API unavailable")
)

// HTTPError is an unexpected HTTP answer from the host API.
type HTTPError struct {
	// StatusCode is the HTTP status code.
	StatusCode int
	// Body is the (possibly empty) response body.
	Body string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("host API answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// IsServerError reports whether err carries a 5xx answer from the host API.
func IsServerError(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.StatusCode >= 500
}

// CommandFailedError is an update command the host ran and reported Failed.
type CommandFailedError struct {
	// Command is the command that failed.
	Command CommandType
	// ExitStatus is the command's exit status, -1 if the host reported none.
	ExitStatus int
	// Stderr is the host's error output for the command.
	Stderr string
}

func (e *CommandFailedError) Error() string {
	msg := fmt.Sprintf("%s failed on the host (exit status %d)", e.Command, e.ExitStatus)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// failedError builds a CommandFailedError from the host's command record.
func failedError(c *Command) *CommandFailedError {
	e := &CommandFailedError{Command: c.Type, ExitStatus: -1}
	if c.ExitStatus != nil {
		e.ExitStatus = *c.ExitStatus
	}
	if c.Stderr != nil {
		e.Stderr = *c.Stderr
	}
	return e
}

// statusError maps a non-2xx answer to an error; notFound is the meaning of 404.
func statusError(code int, body []byte, notFound error) error {
	he := &HTTPError{StatusCode: code, Body: trimBody(body)}
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusNotFound && notFound != nil:
		return fmt.Errorf("%w (%w)", notFound, he)
	case code == http.StatusConflict:
		return fmt.Errorf("%w (%w)", ErrWrongState, he)
	case code == http.StatusLocked:
		return fmt.Errorf("%w (%w)", ErrLocked, he)
	}
	return he
}

func trimBody(b []byte) string {
	const maxBody = 4096
	if len(b) > maxBody {
		b = b[:maxBody]
	}
	return string(bytes.TrimSpace(b))
}

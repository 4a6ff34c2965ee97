package hostapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/bottlerocket-ops/update-operator/internal/clockwait"
)

// Client talks to one host's API over its Unix socket. It is safe for
// concurrent use.
type Client struct {
	http         *http.Client
	pollInterval time.Duration
	backoff      backoff
	clock        clock.Clock
	limits       map[CommandType]time.Duration
}

// DefaultCommandTimeouts are how long the client waits for the host to record a command's
// outcome: what Bottlerocket's own apiclient allows (sources/api/apiclient/src/update.rs:
// refresh 10s, prepare 10 minutes, activate 5s), refresh and activate doubled for a busy
// host. A command still unrecorded then is a failure (ErrCommandTimeout).
var DefaultCommandTimeouts = map[CommandType]time.Duration{
	CommandRefresh:    20 * time.Second,
	CommandPrepare:    10 * time.Minute,
	CommandActivate:   10 * time.Second,
	CommandDeactivate: 10 * time.Second,
}

type backoff struct {
	initial, max time.Duration
	attempts     int
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPTimeout bounds each single HTTP request (default 30s).
func WithHTTPTimeout(d time.Duration) Option { return func(c *Client) { c.http.Timeout = d } }

// WithPollInterval sets how often a command's completion is polled (default 500ms,
// as apiclient does).
func WithPollInterval(d time.Duration) Option { return func(c *Client) { c.pollInterval = d } }

// WithCommandTimeout bounds the wait for cmd's outcome (see DefaultCommandTimeouts).
func WithCommandTimeout(cmd CommandType, d time.Duration) Option {
	return func(c *Client) { c.limits[cmd] = d }
}

// WithLockBackoff sets the retries of requests answered 423 Locked: the delay
// starts at initial, doubles up to max, each wait jittered to [d/2, d], for at
// most attempts tries in all (0: until the context ends). Default 250ms, 10s, 12 (about a
// minute and a half).
func WithLockBackoff(initial, max time.Duration, attempts int) Option {
	return func(c *Client) { c.backoff = backoff{initial: initial, max: max, attempts: attempts} }
}

// New returns a client for the host API served on socketPath (normally
// DefaultSocketPath). The client waits between polls and between 423 retries, and measures
// command timeouts, on clk; the agent's process passes the clock it gives the agent. It never
// compares clk with the host's clock (a command's end is told by its record changing). Only
// the HTTP timeout (WithHTTPTimeout) is measured by net/http on the real clock.
func New(socketPath string, clk clock.Clock, opts ...Option) *Client {
	var d net.Dialer
	c := &Client{
		http: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, "unix", socketPath)
				},
				// A connection never outlives a request: the host restarts its
				// server at every reboot and a stale idle connection would turn
				// the next POST into a spurious transport error.
				DisableKeepAlives: true,
			},
		},
		pollInterval: 500 * time.Millisecond,
		backoff:      backoff{initial: 250 * time.Millisecond, max: 10 * time.Second, attempts: 12},
		clock:        clk,
		limits:       maps.Clone(DefaultCommandTimeouts),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// reply is one HTTP answer.
type reply struct {
	code int
	body []byte
}

// once sends one request. wrote, if not nil, reports whether the request was
// fully written. Transport errors wrap ErrUnavailable, or the context's error
// when it has ended.
func (c *Client) once(ctx context.Context, method, path string, body any, wrote *atomic.Bool) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	if wrote != nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
		})
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, rd)
	if err != nil {
		return reply{}, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	var r reply
	resp, err := c.http.Do(req)
	if err == nil {
		r.code = resp.StatusCode
		r.body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		// The answer is read (or failed to be): closing only releases a connection that is
		// never reused (DisableKeepAlives), so its error changes nothing.
		_ = resp.Body.Close()
		if err == nil {
			return r, nil
		}
	}
	if ctx.Err() != nil {
		return reply{}, ctx.Err()
	}
	return reply{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// call sends a request, retrying 423 Locked answers with backoff under ctx.
// Any other answer is returned as it is. wrote is as for once.
func (c *Client) call(ctx context.Context, method, path string, body any, wrote *atomic.Bool) (reply, error) {
	delay := c.backoff.initial
	for attempt := 1; ; attempt++ {
		r, err := c.once(ctx, method, path, body, wrote)
		if err != nil || r.code != http.StatusLocked {
			return r, err
		}
		if c.backoff.attempts > 0 && attempt >= c.backoff.attempts {
			return r, nil
		}
		if err := clockwait.Sleep(ctx, c.clock, jitter(delay)); err != nil {
			return reply{}, fmt.Errorf("%w (waiting out 423 Locked)", err)
		}
		delay = min(2*delay, c.backoff.max)
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mrand.N(d/2+1)
}

// OS returns the host's OS release information (GET /os).
func (c *Client) OS(ctx context.Context) (OSInfo, error) {
	var info OSInfo
	if err := c.getJSON(ctx, "/os", &info); err != nil {
		return OSInfo{}, fmt.Errorf("get os: %w", err)
	}
	return info, nil
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	r, err := c.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if err := statusError(r.code, r.body, nil); err != nil {
		return err
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// Status returns the update status (GET /updates/status). It returns an error
// wrapping ErrStatusUninitialized when the host has not refreshed since it booted.
func (c *Client) Status(ctx context.Context) (*UpdateStatus, error) {
	r, err := c.call(ctx, http.MethodGet, "/updates/status", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("get update status: %w", err)
	}
	return statusFrom(r)
}

func statusFrom(r reply) (*UpdateStatus, error) {
	if err := statusError(r.code, r.body, ErrStatusUninitialized); err != nil {
		return nil, fmt.Errorf("get update status: %w", err)
	}
	return DecodeStatus(r.body)
}

// Refresh makes the host re-read its update repository and waits for the outcome.
func (c *Client) Refresh(ctx context.Context) error { return c.run(ctx, CommandRefresh) }

// Prepare downloads and stages the chosen update and waits for the outcome.
// It returns an error wrapping ErrNoUpdate when no update is chosen.
func (c *Client) Prepare(ctx context.Context) error {
	_, err := c.PrepareOutput(ctx)
	return err
}

// PrepareOutput is Prepare, returning what the host's downloader said (the prepare record's
// stderr): the host records the refresh-time choice as staged whatever the downloader did,
// and only its words say what it wrote ("Starting update to X", or "No update required").
func (c *Client) PrepareOutput(ctx context.Context) (string, error) {
	rec, err := c.runCommand(ctx, CommandPrepare)
	if err != nil {
		return "", fmt.Errorf("%s: %w", CommandPrepare.Action(), err)
	}
	if rec.Stderr == nil {
		return "", nil
	}
	return *rec.Stderr, nil
}

// Activate makes the staged image boot next and waits for the outcome.
func (c *Client) Activate(ctx context.Context) error { return c.run(ctx, CommandActivate) }

// Deactivate undoes an activation and waits for the outcome.
func (c *Client) Deactivate(ctx context.Context) error { return c.run(ctx, CommandDeactivate) }

// run starts an asynchronous command and waits until the host reports its
// outcome: nil on Success, a *CommandFailedError on Failed, or an error when
// the host refuses it, does not record it in time, or ctx ends first.
func (c *Client) run(ctx context.Context, cmd CommandType) error {
	if _, err := c.runCommand(ctx, cmd); err != nil {
		return fmt.Errorf("%s: %w", cmd.Action(), err)
	}
	return nil
}

// runCommand runs cmd and returns the host's record of its successful end.
func (c *Client) runCommand(ctx context.Context, cmd CommandType) (*Command, error) {
	// The record read before the request is what "finished" is decided against: the host
	// keeps only the most recent one, and its clock may have stepped since it wrote it.
	before, err := c.record(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the last command record: %w", err)
	}
	var notFound error
	if cmd != CommandRefresh {
		notFound = ErrNoUpdate
	}
	r, err := c.call(ctx, http.MethodPost, cmd.Path(), nil, nil)
	if err != nil {
		return nil, err
	}
	if err := statusError(r.code, r.body, notFound); err != nil {
		return nil, err
	}
	return c.await(ctx, cmd, before)
}

// record returns the host's most recent command record (nil if there is none, or no status
// since the boot).
func (c *Client) record(ctx context.Context) (*Command, error) {
	st, err := c.Status(ctx)
	switch {
	case errors.Is(err, ErrStatusUninitialized):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return st.MostRecentCommand, nil
}

// await polls the status until it holds a record of cmd other than before, for at most
// cmd's timeout on the client's clock, and returns that record.
func (c *Client) await(ctx context.Context, cmd CommandType, before *Command) (*Command, error) {
	limit := c.limits[cmd]
	deadline := c.clock.Now().Add(limit)
	for {
		r, err := c.once(ctx, http.MethodGet, "/updates/status", nil, nil)
		if err != nil {
			return nil, fmt.Errorf("await outcome: %w", err)
		}
		if rec, done, err := outcome(cmd, before, r); done {
			return rec, err
		}
		if limit > 0 && !c.clock.Now().Before(deadline) {
			held := "no record of it was written"
			if r.code == http.StatusLocked {
				held = "the host still holds its update lock"
			}
			return nil, fmt.Errorf("%w: no outcome within %s (%s)", ErrCommandTimeout, limit, held)
		}
		if err := clockwait.Sleep(ctx, c.clock, c.pollInterval); err != nil {
			return nil, fmt.Errorf("await outcome: %w", err)
		}
	}
}

// outcome reads one answer to GET /updates/status for cmd, started after the host held the
// record before. It is done when the host recorded cmd's outcome (err is then nil on
// Success — with the record —, a *CommandFailedError on Failed), when another command ran
// after it, or when the answer is an error; not done while cmd still runs.
func outcome(cmd CommandType, before *Command, r reply) (rec *Command, done bool, err error) {
	switch {
	case r.code == http.StatusLocked:
		return nil, false, nil // still running
	case r.code == http.StatusNotFound && cmd == CommandRefresh:
		return nil, false, nil // not initialized yet; the refresh will initialize it
	}
	st, err := statusFrom(r)
	if err != nil {
		return nil, true, fmt.Errorf("await outcome: %w", err)
	}
	switch m := st.MostRecentCommand; {
	case m == nil || before != nil && m.Type == before.Type && m.Timestamp.Equal(before.Timestamp):
		return nil, false, nil // nothing recorded since the request
	case m.Type == cmd && m.Status.Final():
		if m.Status == CommandFailed {
			return nil, true, failedError(m)
		}
		return m, true, nil
	case m.Type != cmd:
		// Another caller's command ran after ours and the host keeps only the most recent
		// record: ours ended, how is for the caller to read from the state.
		return nil, true, fmt.Errorf("await outcome: %w: %s ran after it", ErrOutcomeUnknown, m.Type)
	}
	return nil, false, nil
}

// Reboot asks the host to reboot. An answer that never comes because the
// connection drops after the request was sent counts as success: the host is
// going down.
func (c *Client) Reboot(ctx context.Context) error {
	var wrote atomic.Bool
	r, err := c.call(ctx, http.MethodPost, "/actions/reboot", nil, &wrote)
	if err != nil && wrote.Load() && ctx.Err() == nil && !isTimeout(err) {
		return nil // the connection dropped under us: rebooting
	}
	if err == nil {
		err = statusError(r.code, r.body, nil)
	}
	if err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// settingsDoc is the part of GET /settings the client reads and writes.
type settingsDoc struct {
	Updates UpdateSettings `json:"updates"`
}

// UpdateSettings reads settings.updates (GET /settings).
func (c *Client) UpdateSettings(ctx context.Context) (UpdateSettings, error) {
	var doc settingsDoc
	if err := c.getJSON(ctx, "/settings", &doc); err != nil {
		return UpdateSettings{}, fmt.Errorf("get settings: %w", err)
	}
	return doc.Updates, nil
}

// SetUpdateSettings sets settings.updates.version-lock and ignore-waves in one
// transaction (PATCH /settings?tx=T, then POST /tx/commit_and_apply?tx=T).
// Change them before a refresh: prepare re-reads them.
func (c *Client) SetUpdateSettings(ctx context.Context, versionLock string, ignoreWaves bool) error {
	if err := c.setUpdateSettings(ctx, versionLock, ignoreWaves); err != nil {
		return fmt.Errorf("set update settings: %w", err)
	}
	return nil
}

func (c *Client) setUpdateSettings(ctx context.Context, versionLock string, ignoreWaves bool) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	tx := url.QueryEscape("update-operator-" + hex.EncodeToString(id[:]))
	patch := map[string]any{"updates": map[string]any{"version-lock": versionLock, "ignore-waves": ignoreWaves}}
	for _, step := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPatch, "/settings?tx=" + tx, patch},
		{http.MethodPost, "/tx/commit_and_apply?tx=" + tx, nil},
	} {
		r, err := c.call(ctx, step.method, step.path, step.body, nil)
		if err != nil {
			return err
		}
		if err := statusError(r.code, r.body, nil); err != nil {
			return fmt.Errorf("%s %s: %w", step.method, step.path, err)
		}
	}
	return nil
}

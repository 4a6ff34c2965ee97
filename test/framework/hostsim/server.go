package hostsim

import (
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strings"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
)

func (h *Host) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /os", h.getOS)
	m.HandleFunc("GET /updates/status", h.getStatus)
	for _, cmd := range []hostapi.CommandType{hostapi.CommandRefresh, hostapi.CommandPrepare, hostapi.CommandActivate, hostapi.CommandDeactivate} {
		m.HandleFunc("POST "+cmd.Path(), func(w http.ResponseWriter, _ *http.Request) {
			h.mu.Lock()
			code, msg := h.startLocked(cmd)
			h.mu.Unlock()
			switch code {
			case 0:
				drop(w)
			case http.StatusNoContent:
				w.WriteHeader(code)
			default:
				text(w, code, msg)
			}
		})
	}
	m.HandleFunc("POST /actions/reboot", h.postReboot)
	m.HandleFunc("GET /settings", h.getSettings)
	m.HandleFunc("PATCH /settings", h.patchSettings)
	m.HandleFunc("POST /tx/commit_and_apply", h.commitAndApply)
	return m
}

// ServeHTTP serves the host API, applying the injected faults first.
func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	up, hang, slow, stop := h.up, h.hang, h.slow, h.stop
	fail := h.fail500 != 0
	if h.fail500 > 0 {
		h.fail500--
	}
	h.mu.Unlock()
	if !up {
		drop(w) // going down: the API is already gone
		return
	}
	if hang != nil {
		select {
		case <-hang:
		case <-stop:
			drop(w)
			return
		case <-r.Context().Done():
			return
		}
	}
	if slow > 0 && !h.pause(slow, stop) {
		drop(w)
		return
	}
	if fail {
		text(w, http.StatusInternalServerError, "Update dispatcher failed")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// text answers an error as the host's API server does: the error's text as the body
// (apiserver's From<Error> for HttpResponse).
func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection silently
	}
	_ = conn.Close()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func (h *Host) getOS(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	v := h.parts[h.active].image.Version
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, hostapi.OSInfo{
		PrettyName: fmt.Sprintf("Bottlerocket OS %s (%s)", v, h.cfg.Variant),
		VersionID:  v,
		VariantID:  h.cfg.Variant,
		BuildID:    fmt.Sprintf("%08x", fnv32(v)),
		Arch:       h.cfg.Arch,
	})
}

func fnv32(s string) uint32 {
	x := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		x = (x ^ uint32(s[i])) * 16777619
	}
	return x
}

func (h *Host) getStatus(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.busy:
		text(w, http.StatusLocked, msgStatusLocked)
	case !h.initialized:
		text(w, http.StatusNotFound, msgUninitialized)
	default:
		writeJSON(w, http.StatusOK, h.statusLocked())
	}
}

// postReboot is the API server's reboot handler: `systemctl reboot --check-inhibitors=yes`,
// 204 once systemd took the job (the host then lingers for RebootLinger), 500 with
// systemctl's text when it refuses.
func (h *Host) postReboot(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.up {
		drop(w)
		return
	}
	if h.refuse != 0 {
		if h.refuse > 0 {
			h.refuse--
		}
		text(w, http.StatusInternalServerError, "Failed to reboot, exit code: 1, stderr: "+h.refusal)
		return
	}
	if h.cfg.RebootResponse == RebootDrop || h.cfg.RebootResponse == RebootRandom && mrand.IntN(2) == 0 {
		drop(w)
		h.rebootLocked()
		return
	}
	w.WriteHeader(http.StatusNoContent)
	_ = http.NewResponseController(w).Flush()
	h.leaveLocked()
}

func (h *Host) getSettings(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	writeJSON(w, http.StatusOK, h.settings)
}

func txName(r *http.Request) string {
	if tx := r.URL.Query().Get("tx"); tx != "" {
		return tx
	}
	return "default"
}

// patchSettings merges a settings patch into a pending transaction.
func (h *Host) patchSettings(w http.ResponseWriter, r *http.Request) {
	var patch map[string]any
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &patch)
	}
	if err == nil {
		err = validateSettings(patch)
	}
	if err != nil {
		text(w, http.StatusBadRequest, fmt.Sprintf("Unable to deserialize settings: %v", err))
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	tx := txName(r)
	if h.txs[tx] == nil {
		h.txs[tx] = map[string]any{}
	}
	merge(h.txs[tx], patch)
	w.WriteHeader(http.StatusNoContent)
}

// validateSettings checks the types of the update settings, as the host's
// settings model does.
func validateSettings(patch map[string]any) error {
	if patch == nil {
		return fmt.Errorf("expected a JSON object")
	}
	u, ok := patch["updates"]
	if !ok {
		return nil
	}
	um, ok := u.(map[string]any)
	if !ok {
		return fmt.Errorf("updates: expected an object")
	}
	if v, ok := um["version-lock"]; ok {
		s, ok := v.(string)
		if !ok || s != hostapi.VersionLockLatest && !isVersion(s) {
			return fmt.Errorf("updates.version-lock: expected \"latest\" or a version, got %v", v)
		}
	}
	if v, ok := um["ignore-waves"]; ok {
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("updates.ignore-waves: expected a boolean, got %v", v)
		}
	}
	return nil
}

func isVersion(s string) bool {
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return len(parts) == 3
}

// merge merges src into dst as a JSON merge patch (RFC 7386).
func merge(dst, src map[string]any) {
	for k, v := range src {
		sm, ok := v.(map[string]any)
		switch dm, dok := dst[k].(map[string]any); {
		case v == nil:
			delete(dst, k)
		case ok && dok:
			merge(dm, sm)
		case ok:
			dst[k] = map[string]any{}
			merge(dst[k].(map[string]any), sm)
		default:
			dst[k] = v
		}
	}
}

// commitAndApply commits a pending transaction and answers the changed keys; the new values
// take effect later (Config.SettingsDelay). An empty transaction is refused with 422.
func (h *Host) commitAndApply(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tx := txName(r)
	patch := h.txs[tx]
	delete(h.txs, tx)
	keys := []string{}
	flatten("settings", patch, &keys)
	if len(keys) == 0 {
		text(w, http.StatusUnprocessableEntity, msgNoPending)
		return
	}
	sort.Strings(keys)
	merge(h.settings, patch)
	h.applyLaterLocked() // thar-be-settings is forked; the answer does not wait for it
	h.notifyLocked()
	writeJSON(w, http.StatusOK, keys)
}

func flatten(prefix string, m map[string]any, keys *[]string) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flatten(prefix+"."+k, sub, keys)
		} else {
			*keys = append(*keys, prefix+"."+k)
		}
	}
}

// Package hostapi is a client for the Bottlerocket host API that the update
// agent drives over the host's Unix socket (/run/api.sock): the update status
// document, the asynchronous update commands, reboot and the update settings.
//
// The wire types follow what the host really sends (snake_case, nullable
// fields as pointers, fractional-second RFC 3339 timestamps); see
// docs/host-simulator.md and the package hostsim for a faithful simulator.
package hostapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultSocketPath is where a Bottlerocket host serves its API.
const DefaultSocketPath = "/run/api.sock"

// UpdateState is the host's update state (update_state).
type UpdateState string

const (
	// StateIdle means no update is chosen and nothing is staged.
	StateIdle UpdateState = "Idle"
	// StateAvailable means an update is chosen but not yet downloaded.
	StateAvailable UpdateState = "Available"
	// StateStaged means an image is written to the inactive partition set.
	StateStaged UpdateState = "Staged"
	// StateReady means the staged image is activated and boots next.
	StateReady UpdateState = "Ready"
)

// CommandType names an update command (most_recent_command.cmd_type).
type CommandType string

const (
	// CommandRefresh re-reads the update repository (POST /actions/refresh-updates).
	CommandRefresh CommandType = "refresh"
	// CommandPrepare downloads and stages the chosen update (POST /actions/prepare-update).
	CommandPrepare CommandType = "prepare"
	// CommandActivate makes the staged image boot next (POST /actions/activate-update).
	CommandActivate CommandType = "activate"
	// CommandDeactivate undoes an activation (POST /actions/deactivate-update).
	CommandDeactivate CommandType = "deactivate"
)

// Path is the host API path that starts the command.
func (c CommandType) Path() string {
	switch c {
	case CommandRefresh:
		return "/actions/refresh-updates"
	case CommandPrepare:
		return "/actions/prepare-update"
	case CommandActivate:
		return "/actions/activate-update"
	case CommandDeactivate:
		return "/actions/deactivate-update"
	}
	return ""
}

// Action is the name of the command's host API action, e.g. "prepare-update".
func (c CommandType) Action() string { return strings.TrimPrefix(c.Path(), "/actions/") }

// CommandStatus is the outcome of the most recent command (cmd_status).
type CommandStatus string

const (
	// CommandSuccess means the command finished successfully.
	CommandSuccess CommandStatus = "Success"
	// CommandFailed means the command finished with an error; see stderr.
	CommandFailed CommandStatus = "Failed"
	// CommandUnknown means the outcome is not (yet) known.
	CommandUnknown CommandStatus = "Unknown"
)

// Final reports whether the status is an outcome (Success or Failed).
func (s CommandStatus) Final() bool { return s == CommandSuccess || s == CommandFailed }

// Image identifies an OS image (chosen_update, partition images).
type Image struct {
	// Arch is the image's architecture, e.g. "x86_64".
	Arch string `json:"arch"`
	// Version is the image's version, e.g. "1.26.1".
	Version string `json:"version"`
	// Variant is the image's variant, e.g. "aws-k8s-1.31".
	Variant string `json:"variant"`
}

// Partition describes one of the two partition sets.
type Partition struct {
	// Image is the image written to the set; null if it holds none.
	Image *Image `json:"image"`
	// NextToBoot reports whether the firmware boots this set next.
	NextToBoot bool `json:"next_to_boot"`
}

// Command is the record of the most recent update command.
type Command struct {
	// Type is the command (cmd_type).
	Type CommandType `json:"cmd_type"`
	// Status is its outcome (cmd_status).
	Status CommandStatus `json:"cmd_status"`
	// Timestamp is when the host recorded it (UTC, fractional seconds).
	Timestamp time.Time `json:"timestamp"`
	// ExitStatus is the command's exit status; may be null.
	ExitStatus *int `json:"exit_status"`
	// Stderr is the command's error output; may be null.
	Stderr *string `json:"stderr"`
}

// UpdateStatus is the document served by GET /updates/status.
type UpdateStatus struct {
	// State is update_state.
	State UpdateState `json:"update_state"`
	// AvailableUpdates lists the versions the repository offers, newest first.
	AvailableUpdates []string `json:"available_updates"`
	// ChosenUpdate is the update the host would prepare; may be null.
	ChosenUpdate *Image `json:"chosen_update"`
	// ActivePartition is the partition set running now; may be null.
	ActivePartition *Partition `json:"active_partition"`
	// StagingPartition is the inactive partition set; may be null.
	StagingPartition *Partition `json:"staging_partition"`
	// MostRecentCommand is the last command run; may be null.
	MostRecentCommand *Command `json:"most_recent_command"`
}

// ChosenVersion is the chosen update's version, or "" if none is chosen.
func (s *UpdateStatus) ChosenVersion() string {
	if s == nil || s.ChosenUpdate == nil {
		return ""
	}
	return s.ChosenUpdate.Version
}

// StagedVersion is the version of the image in the inactive partition set, or "".
func (s *UpdateStatus) StagedVersion() string {
	if s == nil || s.StagingPartition == nil || s.StagingPartition.Image == nil {
		return ""
	}
	return s.StagingPartition.Image.Version
}

// DecodeStatus decodes an update status document as the host sends it.
// It accepts nulls wherever the host may send them and ignores unknown fields;
// it never panics.
func DecodeStatus(data []byte) (*UpdateStatus, error) {
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("decode update status: not a JSON object")
	}
	var s UpdateStatus
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode update status: %w", err)
	}
	return &s, nil
}

// OSInfo is the document served by GET /os.
type OSInfo struct {
	// PrettyName is a human-readable name, e.g. "Bottlerocket OS 1.26.1 (aws-k8s-1.31)".
	PrettyName string `json:"pretty_name,omitempty"`
	// VersionID is the running OS version, e.g. "1.26.1".
	VersionID string `json:"version_id"`
	// VariantID is the variant, e.g. "aws-k8s-1.31".
	VariantID string `json:"variant_id"`
	// BuildID is the build's commit identifier.
	BuildID string `json:"build_id,omitempty"`
	// Arch is the architecture, e.g. "x86_64".
	Arch string `json:"arch"`
}

// VersionLockLatest is the version-lock value that follows the newest release.
const VersionLockLatest = "latest"

// UpdateSettings is settings.updates as served by GET /settings.
type UpdateSettings struct {
	// VersionLock is "latest" or the version the host is pinned to (version-lock).
	VersionLock string `json:"version-lock"`
	// IgnoreWaves makes the host ignore its time-based waves (ignore-waves).
	IgnoreWaves bool `json:"ignore-waves"`
	// MetadataBaseURL is the update repository's metadata URL (metadata-base-url).
	MetadataBaseURL string `json:"metadata-base-url,omitempty"`
	// TargetsBaseURL is the update repository's targets URL (targets-base-url).
	TargetsBaseURL string `json:"targets-base-url,omitempty"`
	// Seed places the host in the waves (seed).
	Seed *int `json:"seed,omitempty"`
}

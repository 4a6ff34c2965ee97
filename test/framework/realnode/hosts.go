package realnode

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// etcHosts is where the API server finds a real node's address. It dials a kubelet at the
// Node's first address of --kubelet-preferred-address-types (default: Hostname first), and
// the kubelet refuses a loopback --node-ip (validateNodeIP in
// pkg/kubelet/kubelet_node_status.go), so the Node's Hostname, its name, must resolve to
// 127.0.0.1: Go's resolver reads /etc/hosts before any DNS server.
const etcHosts = "/etc/hosts"

// hostsMarker ends the line a node adds to /etc/hosts: only such a line is ever removed.
const hostsMarker = "# test/framework/realnode"

func (h hostState) hostsLine() string { return "127.0.0.1 " + h.name + " " + hostsMarker }

// hostsLines returns /etc/hosts's lines.
func hostsLines() ([]string, error) {
	raw, err := os.ReadFile(etcHosts)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", etcHosts, err)
	}
	return strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n"), nil
}

// writeHosts rewrites /etc/hosts in place: it may be a file mounted into this machine's
// container, which a rename could not replace.
func writeHosts(lines []string) error {
	if err := os.WriteFile(etcHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", etcHosts, err)
	}
	return nil
}

// addHostsEntry makes the node's name resolve to 127.0.0.1.
func (h hostState) addHostsEntry() error {
	lines, err := hostsLines()
	if err != nil || slices.Contains(lines, h.hostsLine()) {
		return err
	}
	return writeHosts(append(lines, h.hostsLine()))
}

// removeHostsEntry removes the line addHostsEntry added, if it is there.
func (h hostState) removeHostsEntry() error {
	lines, err := hostsLines()
	if err != nil || !slices.Contains(lines, h.hostsLine()) {
		return err
	}
	return writeHosts(slices.DeleteFunc(lines, func(l string) bool { return l == h.hostsLine() }))
}

// hasHostsEntry reports whether /etc/hosts holds the node's line.
func (h hostState) hasHostsEntry() bool {
	lines, err := hostsLines()
	return err == nil && slices.Contains(lines, h.hostsLine())
}

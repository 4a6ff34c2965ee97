// Command hostsim serves a simulated Bottlerocket host API on a Unix socket:
//
//	go run ./hack/hostsim -socket /tmp/h.sock -version 1.25.0 -available 1.25.0,1.26.0
//	curl --unix-socket /tmp/h.sock http://localhost/updates/status
//
// See docs/host-simulator.md. SIGHUP clears the injected faults (and revives a
// hung reboot); SIGINT or SIGTERM stops it.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/utils/clock"

	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
)

func main() {
	var cfg hostsim.Config
	var available, withheld, reboot, failPrepare, failActivate string
	var failBoot, hangReboot bool
	var fail500 int
	flag.StringVar(&cfg.Version, "version", "1.25.0", "running OS version")
	flag.StringVar(&cfg.Variant, "variant", "aws-k8s-1.31", "OS variant")
	flag.StringVar(&cfg.Arch, "arch", "x86_64", "architecture")
	flag.StringVar(&available, "available", "", "comma-separated versions the update repository offers")
	flag.StringVar(&withheld, "withheld", "", "comma-separated versions withheld by waves (offered, chosen only with ignore-waves)")
	flag.StringVar(&cfg.VersionLock, "version-lock", "latest", "initial settings.updates.version-lock")
	flag.BoolVar(&cfg.IgnoreWaves, "ignore-waves", false, "initial settings.updates.ignore-waves")
	flag.DurationVar(&cfg.RefreshDuration, "refresh", 0, "how long refresh-updates holds the lock")
	flag.DurationVar(&cfg.PrepareDuration, "prepare", 0, "how long prepare-update holds the lock")
	flag.DurationVar(&cfg.ActivateDuration, "activate", 0, "how long activate/deactivate-update hold the lock")
	flag.DurationVar(&cfg.RebootDuration, "reboot", 0, "how long the API is gone during a reboot")
	flag.StringVar(&reboot, "reboot-response", "random", "reboot answer: random, respond (204) or drop (connection closed)")
	flag.StringVar(&cfg.BootIDFile, "boot-id-file", "", "file to write the boot ID to at every boot")
	flag.StringVar(&failPrepare, "fail-prepare", "", "make the next prepare fail with this stderr")
	flag.StringVar(&failActivate, "fail-activate", "", "make the next activate fail with this stderr")
	flag.BoolVar(&failBoot, "fail-boot", false, "make the next reboot into a new image come back on the old version")
	flag.BoolVar(&hangReboot, "hang-reboot", false, "make the next reboot hang until SIGHUP")
	flag.IntVar(&fail500, "fail500", 0, "answer the next N requests with 500 (-1: all, until SIGHUP)")
	socket := flag.String("socket", "/tmp/hostsim.sock", "Unix socket to serve on")
	flag.Parse()

	switch reboot {
	case "random":
		cfg.RebootResponse = hostsim.RebootRandom
	case "respond":
		cfg.RebootResponse = hostsim.RebootRespond
	case "drop":
		cfg.RebootResponse = hostsim.RebootDrop
	default:
		log.Fatalf("hostsim: unknown -reboot-response %q", reboot)
	}
	held := map[string]bool{}
	for _, v := range split(withheld) {
		held[v] = true
	}
	for _, v := range split(available) {
		cfg.Releases = append(cfg.Releases, hostsim.Release{Version: v, Withheld: held[v]})
		delete(held, v)
	}
	for v := range held {
		cfg.Releases = append(cfg.Releases, hostsim.Release{Version: v, Withheld: true})
	}
	cfg.OnReboot = func(ev hostsim.RebootEvent) {
		log.Printf("reboot %s: from %s, version %s, boot ID %s, fell back %t, err %v",
			ev.Phase, ev.FromVersion, ev.Version, ev.BootID, ev.FellBack, ev.Err)
	}

	cfg.Clock = clock.RealClock{}
	h := hostsim.New(cfg)
	if failPrepare != "" {
		h.FailPrepare(failPrepare)
	}
	if failActivate != "" {
		h.FailActivate(failActivate)
	}
	if failBoot {
		h.FailBoot()
	}
	if hangReboot {
		h.HangReboot()
	}
	h.Fail500(fail500)
	if err := h.Start(*socket); err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	fmt.Fprintf(os.Stderr, "hostsim: serving Bottlerocket %s (%s) on %s, boot ID %s\n", h.Version(), cfg.Variant, *socket, h.BootID())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for s := range sig {
		if s != syscall.SIGHUP {
			return
		}
		log.Print("hostsim: clearing faults")
		h.ClearFaults()
	}
}

func split(list string) []string {
	var out []string
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

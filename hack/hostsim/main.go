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
	var available, reached, reboot, failPrepare, failActivate string
	var failBoot, hangReboot bool
	var fail500, refuseReboot, seed int
	flag.StringVar(&cfg.Version, "version", "1.25.0", "running OS version")
	flag.StringVar(&cfg.Variant, "variant", "aws-k8s-1.31", "OS variant")
	flag.StringVar(&cfg.Arch, "arch", "x86_64", "architecture")
	flag.StringVar(&available, "available", "", "comma-separated versions published just now: offered by Bottlerocket's default waves, or at once with ignore-waves")
	flag.StringVar(&reached, "reached", "", "comma-separated versions every host is offered (published without waves, or long ago)")
	flag.IntVar(&seed, "seed", -1, "the host's wave seed, 0-2047 (-1: random, as a host draws at first boot)")
	flag.DurationVar(&cfg.SettingsDelay, "settings-delay", 0, "how long after a commit the update settings take effect (0: default 50ms, negative: at once)")
	flag.DurationVar(&cfg.RebootLinger, "reboot-linger", 0, "how long the host keeps serving after accepting a reboot (0: default 100ms)")
	flag.IntVar(&refuseReboot, "refuse-reboot", 0, "refuse the next N reboot requests with systemctl's inhibitor text (-1: all, until SIGHUP)")
	flag.StringVar(&cfg.VersionLock, "version-lock", "latest", "initial settings.updates.version-lock")
	flag.BoolVar(&cfg.IgnoreWaves, "ignore-waves", false, "initial settings.updates.ignore-waves")
	flag.DurationVar(&cfg.RefreshDuration, "refresh", 0, "how long refresh-updates holds the lock")
	flag.DurationVar(&cfg.PrepareDuration, "prepare", 0, "how long prepare-update holds the lock")
	flag.DurationVar(&cfg.ActivateDuration, "activate", 0, "how long activate/deactivate-update hold the lock")
	flag.DurationVar(&cfg.RebootDuration, "reboot", 0, "how long the API is gone during a reboot")
	flag.StringVar(&reboot, "reboot-response", "respond", "reboot answer: respond (204), drop (connection closed) or random")
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
	cfg.Releases = append(hostsim.Releases(split(available)...), hostsim.Reached(split(reached)...)...)
	if seed >= 0 {
		cfg.Seed = hostsim.Seed(uint32(seed))
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
	h.RefuseReboot(refuseReboot)
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

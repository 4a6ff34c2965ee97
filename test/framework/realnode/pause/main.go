// Command pause is the real nodes' pod sandbox ("pause") image: it holds the pod's namespaces
// and does nothing until the runtime stops it, as upstream's pause
// (kubernetes/build/pause/linux/pause.c) does. Built static (CGO_ENABLED=0) into an image of
// that one file by test/framework/realnode, since the nodes pull nothing.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// As PID 1 of its namespace, a process gets no default signal handling: without these
	// handlers SIGTERM would be ignored and every stop would wait for SIGKILL.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("pause: holding the pod until stopped") // read back through the API server by the test
	<-stop
}

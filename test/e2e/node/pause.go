// The node's pause image: the sandbox process every pod's containers share namespaces with.
// Like Kubernetes' own pause (build/pause/linux/pause.c), it waits for a signal, reaps zombies
// and exits 0 on SIGINT or SIGTERM. Built static by images.sh (CGO_ENABLED=0), image FROM scratch.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		os.Stdout.WriteString("imageshift-e2e pause\n")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}

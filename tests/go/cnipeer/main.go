// cnipeer: the reference CNI runtime (libcni, as Debian packages it) driving a conflist, the
// peer Drover's network setup is measured against in the same run.
//
//	cnipeer bench CNI_PATH CONFLIST N BASE_PORT
//
// For each of N containers it creates a named network namespace (`ip netns add`), runs the
// list's ADD with one port mapped (host port BASE+i to 8080, TCP and UDP, as Drover maps an
// allocation's port), then, for each, the list's DEL and `ip netns del`. It prints one line
// per operation: `setup <microseconds>` and `teardown <microseconds>`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

func run(args ...string) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v: %s\n", strings.Join(args, " "), err, out)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 6 || os.Args[1] != "bench" {
		fmt.Fprintln(os.Stderr, "usage: cnipeer bench CNI_PATH CONFLIST N BASE_PORT")
		os.Exit(2)
	}
	conf, err := libcni.ConfListFromFile(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, err := strconv.Atoi(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	base, err := strconv.Atoi(os.Args[5])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cni := libcni.NewCNIConfig(strings.Split(os.Args[2], ":"), nil)
	ctx := context.Background()
	rts := make([]*libcni.RuntimeConf, n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("cnipeer-%d-%d", os.Getpid(), i)
		mappings := []map[string]interface{}{
			{"hostPort": base + i, "containerPort": 8080, "protocol": "tcp"},
			{"hostPort": base + i, "containerPort": 8080, "protocol": "udp"},
		}
		rts[i] = &libcni.RuntimeConf{
			ContainerID:    id,
			NetNS:          "/var/run/netns/" + id,
			IfName:         "eth0",
			CapabilityArgs: map[string]interface{}{"portMappings": mappings},
		}
		start := time.Now()
		run("ip", "netns", "add", id)
		if _, err := cni.AddNetworkList(ctx, conf, rts[i]); err != nil {
			fmt.Fprintln(os.Stderr, "ADD:", err)
			os.Exit(1)
		}
		fmt.Printf("setup %d\n", time.Since(start).Microseconds())
	}
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := cni.DelNetworkList(ctx, conf, rts[i]); err != nil {
			fmt.Fprintln(os.Stderr, "DEL:", err)
			os.Exit(1)
		}
		run("ip", "netns", "del", rts[i].ContainerID)
		fmt.Printf("teardown %d\n", time.Since(start).Microseconds())
	}
}

// CoreDNS with only the plugins of kubeadm's default Corefile (errors, health, ready,
// kubernetes, prometheus, forward, cache, loop, reload, loadbalance), built as a library from the
// Go module proxy: the full plugin set pulls in every cloud SDK and triples the build time.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The order matters (it is the order plugins see a query); it is upstream's plugin.cfg order.
var directives = []string{
	"reload", "ready", "health", "prometheus", "errors", "loadbalance", "cache",
	"kubernetes", "loop", "forward",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}

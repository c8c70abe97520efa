// Command etcd is the etcd server at the version kube-apiserver itself depends on,
// built from the Go module proxy (Debian's etcd 3.4 is too old for current apiservers).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }

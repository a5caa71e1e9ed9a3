// Command etcd is upstream etcd (go.etcd.io/etcd/server/v3), at the version that
// k8s.io/kubernetes' module graph selects, with the upstream command line.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

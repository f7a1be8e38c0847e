package chcluster

import (
	"fmt"
	"strings"
)

// profileSettings go into every node's default profile. ON CLUSTER DDL
// waits for every host; with one down it would block for 180 s (the
// default) before failing, longer than a test should hang.
const profileSettings = "<distributed_ddl_task_timeout>30</distributed_ddl_task_timeout>\n"

// ddlPath is where ON CLUSTER queries queue in ZooKeeper.
const ddlPath = "/clickhouse/task_queue/ddl"

// nodeConfig is what a node adds to chtest's config.xml: the interserver
// port replicas fetch parts from (on the host it advertises, hence
// 127.0.0.1), ZooKeeper, the cluster, its macros and the DDL queue.
func (c *Cluster) nodeConfig(n *Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "    <interserver_http_port>%d</interserver_http_port>\n", n.interserverPort)
	b.WriteString("    <interserver_http_host>127.0.0.1</interserver_http_host>\n")
	// A session outlives a short stall of this loaded machine, and a
	// killed node's session (and its replica's "is_active") ends soon.
	fmt.Fprintf(&b, "    <zookeeper><node><host>127.0.0.1</host><port>%d</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>\n", c.zkPort)
	b.WriteString(c.remoteServers())
	fmt.Fprintf(&b, "    <macros><shard>%d</shard><replica>%s</replica></macros>\n", n.shard, n.replica)
	fmt.Fprintf(&b, "    <distributed_ddl><path>%s</path></distributed_ddl>\n", ddlPath)
	return b.String()
}

// remoteServers names every node by its native port: all listen on
// 127.0.0.1. internal_replication makes a Distributed table write each
// block to one replica of a shard and leave the rest to replication.
func (c *Cluster) remoteServers() string {
	var b strings.Builder
	fmt.Fprintf(&b, "    <remote_servers><%s>\n", c.name)
	for s := 1; s <= c.shards; s++ {
		b.WriteString("      <shard><internal_replication>true</internal_replication>\n")
		for _, n := range c.nodes {
			if n.shard == s {
				fmt.Fprintf(&b, "        <replica><host>127.0.0.1</host><port>%d</port></replica>\n", n.port)
			}
		}
		b.WriteString("      </shard>\n")
	}
	fmt.Fprintf(&b, "    </%s></remote_servers>\n", c.name)
	return b.String()
}

// Which address of this host the others reach it at: the one question every multi-host rendezvous
// asks (the store's bind address, the address Gloo advertises to its peers, the store endpoint
// rank 0 hands out under mpirun).
//
// The one decision: never guess from the hostname alone. A hostname often resolves to loopback
// (Debian's 127.0.1.1) or not at all, and a host may have several interfaces. The address that
// reaches a peer is the one the kernel's routing table picks for it, which address_toward() asks
// for directly (a UDP socket "connected" to the peer sends nothing); where no peer is known yet,
// candidate_addresses() lists every usable address, the hostname's own first, and the peers try
// them in order.
//
// Thread-safe; IPv4 and IPv6 (bracketed when joined with a port).
#pragma once

#include <string>
#include <vector>

namespace tandem {

// gethostname(), or "localhost" when it fails.
std::string this_hostname();

// "host:port", with brackets around an IPv6 literal.
std::string join_host_port(const std::string& host, int port);

// True for a numeric IPv4 or IPv6 address.
bool is_ip_literal(const std::string& host);

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(const std::string& host);

// Every address `host` resolves to (numeric strings, resolver order, no duplicates). Throws
// CommError naming the host when it does not resolve.
std::vector<std::string> resolve_host(const std::string& host);

// This host's addresses on interfaces that are up, loopback excluded, IPv4 first, interface order.
std::vector<std::string> local_addresses();

// The address of interface `name` (IPv4 preferred). Throws ConfigError naming the interface and
// the ones that exist when it has none.
std::string interface_address(const std::string& name);

// The local address the kernel would send from to reach `peer` (a name or address). Throws
// CommError when `peer` does not resolve or no route leads to it.
std::string address_toward(const std::string& peer);

// Of the addresses `host` resolves to, the first that belongs to this host (loopback ones count:
// a name that resolves to 127.0.1.1 is this host). Throws ConfigError naming the host and what it
// resolves to when none does: a store or server can only listen on an address of its own.
std::string local_address_of(const std::string& host);

// Where peers on other hosts may reach this one, best first: the addresses this hostname resolves
// to that belong to this host and are not loopback, then every other local address. Empty when
// the host has no address but loopback.
std::vector<std::string> candidate_addresses();

// Connects to host:port within `timeout_ms`; true when something accepted.
bool can_connect(const std::string& host, int port, int timeout_ms);

}  // namespace tandem

// What every Chorus process that talks to others sets up: CAF's middleman,
// heartbeats on both sides, and optionally mutual TLS through CAF's OpenSSL
// module. Shared by the coordinator (tools/cluster.hpp) and the node
// (tools/node.hpp).
//
// CAF 0.17.6 facts this rests on (../shared/caf-middleman/FACTS.md):
//  - a plain port accepts messages from anyone who connects, and a 32-byte
//    header claiming 4 GiB makes the process zero-fill 4 GiB; a TLS port
//    resets such a connection without allocating. Hence: plain only on
//    loopback, unless the user says --insecure.
//  - a peer that freezes is noticed only with heartbeats set on BOTH sides
//    (one side alone drops healthy idle peers).
//  - a wrong key passphrase throws inside CAF's OpenSSL manager and
//    remote_actor never returns: the key is read here first.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

#include "messages/data_plane.hpp"

namespace chorus {

/// Mutual TLS: this side's certificate and key, and the CA the other side's
/// certificate must come from. All empty: plain TCP.
struct tls_options {
  std::string cert, key, ca;
  std::string passphrase;  ///< for an encrypted key (CHORUS_TLS_PASSPHRASE)
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

/// Heartbeats: a silent peer counts as gone after `connection_timeout`.
constexpr std::chrono::milliseconds heartbeat_interval{250};
constexpr std::chrono::milliseconds connection_timeout{3000};

/// Loads the middleman (and the OpenSSL manager when tls.enabled()) into
/// cfg with the heartbeats above. Throws std::invalid_argument when the TLS
/// files are incomplete, unreadable, or the key does not open with the
/// passphrase or does not match the certificate.
void configure_network(caf::actor_system_config& cfg, const tls_options& tls);

/// A "host:port" split; throws std::invalid_argument naming `what`.
struct endpoint {
  std::string host;
  uint16_t port = 0;
  std::string str() const { return host + ":" + std::to_string(port); }
};
endpoint parse_endpoint(const std::string& text, const std::string& what);

/// Whether a host name or address is this machine's loopback.
bool is_loopback(const std::string& host);

/// The data plane for large buffers (messages/data_plane.hpp) a process
/// uses: `choice` is caf, ucx or auto (ucx when this build has it, except
/// with TLS: UCX's transports do not go through CAF's TLS). Throws
/// std::invalid_argument for an unknown name, ucx in a build without UCX,
/// or ucx with TLS.
data_plane::kind resolve_data_plane(const std::string& choice, bool tls);

/// Resolves `choice` and selects it for this process; `off_host`: peers may
/// be on other hosts (else UCX keeps to shared memory). Throws
/// std::invalid_argument as resolve_data_plane, std::runtime_error if UCX
/// cannot start.
data_plane::kind use_data_plane(const std::string& choice, bool tls, bool off_host);

/// Prints to stderr, as `who`, what went through the UCX data plane (the
/// buffers this process offered and fetched), if anything did.
void report_data_plane(const std::string& who);

/// Publishes `whom` at ep (TLS when tls.enabled()); returns the bound port.
caf::expected<uint16_t> publish_actor(caf::actor_system& sys, const caf::strong_actor_ptr& whom,
                                      const endpoint& ep, const tls_options& tls);

/// Connects to the actor published at ep within `timeout` (TLS when
/// tls.enabled()), retrying while the port refuses (a node still starting).
/// Never blocks longer than the timeout, even against a port that accepts
/// and never speaks CAF's protocol.
caf::expected<caf::strong_actor_ptr> connect_actor(caf::actor_system& sys, const endpoint& ep,
                                                   const tls_options& tls,
                                                   std::chrono::milliseconds timeout);

/// TLS options from the environment's CHORUS_TLS_PASSPHRASE and the files.
tls_options make_tls(std::string cert, std::string key, std::string ca);

} // namespace chorus

#include "tools/network.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "messages/errors.hpp"

namespace chorus {

namespace {

struct file_closer {
  void operator()(FILE* f) const {
    if (f)
      std::fclose(f);
  }
};
using file_ptr = std::unique_ptr<FILE, file_closer>;

file_ptr open_pem(const std::string& path, const char* what) {
  file_ptr f(std::fopen(path.c_str(), "rb"));
  if (!f)
    throw std::invalid_argument(std::string(what) + " " + path + ": cannot open it");
  return f;
}

int passphrase_callback(char* buf, int size, int, void* user) {
  auto* pass = static_cast<const std::string*>(user);
  if (pass == nullptr || pass->empty() || size <= 0)
    return 0;
  auto n = std::min<size_t>(pass->size(), static_cast<size_t>(size));
  std::copy(pass->begin(), pass->begin() + static_cast<long>(n), buf);
  return static_cast<int>(n);
}

// Reads the three files as CAF's OpenSSL manager will, so a mistake is a
// clear error here and not an exception inside CAF (which leaves
// remote_actor waiting forever).
void check_tls_files(const tls_options& tls) {
  if (tls.cert.empty() || tls.key.empty() || tls.ca.empty())
    throw std::invalid_argument("TLS needs all of --tls-cert, --tls-key and --tls-ca");
  auto cert_file = open_pem(tls.cert, "--tls-cert");
  std::unique_ptr<X509, void (*)(X509*)> cert(PEM_read_X509(cert_file.get(), nullptr, nullptr, nullptr),
                                              X509_free);
  if (!cert)
    throw std::invalid_argument("--tls-cert " + tls.cert + ": not a PEM certificate");
  auto key_file = open_pem(tls.key, "--tls-key");
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
    PEM_read_PrivateKey(key_file.get(), nullptr, passphrase_callback,
                        const_cast<std::string*>(&tls.passphrase)),
    EVP_PKEY_free);
  ERR_clear_error();
  if (!key)
    throw std::invalid_argument("--tls-key " + tls.key + ": cannot read the private key (" +
                                (tls.passphrase.empty()
                                   ? "not a PEM key, or encrypted: set CHORUS_TLS_PASSPHRASE"
                                   : "wrong passphrase in CHORUS_TLS_PASSPHRASE, or not a PEM key")
                                + ")");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    throw std::invalid_argument("--tls-key " + tls.key + " does not belong to --tls-cert " + tls.cert);
  }
  auto ca_file = open_pem(tls.ca, "--tls-ca");
  std::unique_ptr<X509, void (*)(X509*)> ca(PEM_read_X509(ca_file.get(), nullptr, nullptr, nullptr),
                                            X509_free);
  if (!ca)
    throw std::invalid_argument("--tls-ca " + tls.ca + ": not a PEM certificate");
}

} // namespace

tls_options make_tls(std::string cert, std::string key, std::string ca) {
  tls_options t{std::move(cert), std::move(key), std::move(ca), {}};
  if (const char* p = std::getenv("CHORUS_TLS_PASSPHRASE"))
    t.passphrase = p;
  return t;
}

void configure_network(caf::actor_system_config& cfg, const tls_options& tls) {
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", caf::timespan{heartbeat_interval});
  cfg.set("middleman.connection-timeout", caf::timespan{connection_timeout});
  if (tls.enabled()) {
    check_tls_files(tls);
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = tls.cert;
    cfg.openssl_key = tls.key;
    cfg.openssl_cafile = tls.ca;
    cfg.openssl_passphrase = tls.passphrase;
  }
}

endpoint parse_endpoint(const std::string& text, const std::string& what) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw std::invalid_argument(what + ": expected HOST:PORT, got '" + text.substr(0, 80) + "'");
  endpoint ep;
  ep.host = text.substr(0, colon);
  if (ep.host.size() > 2 && ep.host.front() == '[' && ep.host.back() == ']')
    ep.host = ep.host.substr(1, ep.host.size() - 2);
  auto digits = text.substr(colon + 1);
  if (digits.size() > 5 || digits.find_first_not_of("0123456789") != std::string::npos
      || std::stol(digits) > 65535)
    throw std::invalid_argument(what + ": '" + digits.substr(0, 20) + "' is not a port (0-65535)");
  ep.port = static_cast<uint16_t>(std::stol(digits));
  return ep;
}

data_plane::kind resolve_data_plane(const std::string& choice, bool tls) {
  if (choice == "auto")
    return tls ? data_plane::kind::caf : data_plane::default_kind();
  auto k = data_plane::parse(choice);  // throws invalid_argument naming the choices
  if (!data_plane::available(k))
    throw std::invalid_argument("--data-plane " + choice
                                + ": this chorus was built without UCX (install libucx-dev and "
                                  "rebuild), use --data-plane caf");
  if (k == data_plane::kind::ucx && tls)
    throw std::invalid_argument("--data-plane ucx with TLS: UCX would carry the payloads outside "
                                "the TLS connection, unencrypted; use --data-plane caf");
  return k;
}

data_plane::kind use_data_plane(const std::string& choice, bool tls, bool off_host) {
  auto k = resolve_data_plane(choice, tls);
  data_plane::select(k, off_host);
  // Descriptors from peers are fetched whatever plane this process sends
  // with, unless the connection is TLS (the floats would bypass it).
  data_plane::set_accepting(!tls && data_plane::available(data_plane::kind::ucx));
  return k;
}

void report_data_plane(const std::string& who) {
  auto c = data_plane::stats();
  if (c.offered + c.fetched + c.failed == 0)
    return;
  std::fprintf(stderr,
               "%s: data plane ucx: %llu buffers offered (%llu fetched by peers, %llu expired), "
               "%llu fetched (%llu read in place in shared memory, %llu copied from it), "
               "%llu failed\n",
               who.c_str(), static_cast<unsigned long long>(c.offered),
               static_cast<unsigned long long>(c.served), static_cast<unsigned long long>(c.expired),
               static_cast<unsigned long long>(c.fetched), static_cast<unsigned long long>(c.borrowed),
               static_cast<unsigned long long>(c.copied), static_cast<unsigned long long>(c.failed));
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

caf::expected<uint16_t> publish_actor(caf::actor_system&, const caf::strong_actor_ptr& whom,
                                      const endpoint& ep, const tls_options& tls) {
  auto handle = caf::actor_cast<caf::actor>(whom);
  if (tls.enabled())
    return caf::openssl::publish(handle, ep.port, ep.host.c_str(), true);
  return caf::io::publish(handle, ep.port, ep.host.c_str(), true);
}

caf::expected<caf::strong_actor_ptr> connect_actor(caf::actor_system& sys, const endpoint& ep,
                                                   const tls_options& tls,
                                                   std::chrono::milliseconds timeout) {
  // The middleman's own connect request, with our deadline: remote_actor()
  // would wait forever on a port that accepts and never answers.
  auto manager = tls.enabled() ? sys.openssl_manager().actor_handle()
                               : sys.middleman().actor_handle();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  caf::error last;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      break;
    caf::scoped_actor self{sys};
    caf::strong_actor_ptr found;
    bool retry = false;
    self->request(manager, left, caf::connect_atom::value, ep.host, ep.port)
      .receive(
        [&](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
          found = std::move(ptr);
          if (!found)
            last = make_error(errc::bad_request, "nothing is published at " + ep.str());
        },
        [&](caf::error& err) {
          last = std::move(err);
          // A port that refuses may be a node still starting, and a
          // handshake that timed out one still busy loading its data (seen
          // on a loaded machine): try again while the deadline allows.
          retry = last == caf::sec::cannot_connect_to_node || last == caf::sec::connection_timeout;
        });
    if (found)
      return found;
    if (!retry)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!last || last == caf::sec::request_timeout)
    return make_error(errc::timeout, "no Chorus node answered at " + ep.str() + " within "
                                       + std::to_string(timeout.count()) + " ms");
  return make_error(errc::worker_lost, "cannot reach a Chorus node at " + ep.str() + ": "
                                         + describe(last));
}

} // namespace chorus

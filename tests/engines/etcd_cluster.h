// EtcdCluster: a real etcd cluster on loopback for tests: N members, member i an `etcd` process
// on its own loopback address 127.0.0.<i+1> with client and peer ports the test picked there
// (free at the time), its own data directory under a private temporary directory, and the
// members listed in --initial-cluster.
//
// Start waits for every member's /health to answer {"health":"true"} (a quorum read through it)
// by polling, with a deadline; Kill / Restart take members down and bring them back (same data
// directory, --initial-cluster-state existing). The destructor kills every member still running
// (SIGKILL), reaps it and removes the temporary directory; and each member dies with the test
// process (PR_SET_PDEATHSIG), so no etcd outlives a crashed test.
//
// EtcdBinary() is "" when no etcd is installed: the tests then skip (GTEST_SKIP) saying so.
//
// Thread safety: one thread drives a cluster.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "sync/status.h"

namespace kvfs::test {

// The etcd server binary on PATH (or /usr/bin/etcd), or "".
std::string EtcdBinary();

struct EtcdClusterOptions {
  int members = 3;
  // Extra flags for every member, e.g. "--quota-backend-bytes=2097152".
  std::vector<std::string> flags;
  std::chrono::milliseconds start_deadline{30000};
  // Client URLs over TLS (https) with certificates made by `openssl` in the cluster's
  // directory (MakeTestCertificates), and client certificates required (--client-cert-auth).
  // Peers talk plain http among themselves.
  bool tls = false;
};

// A throwaway CA and, signed by it, a server certificate for 127.0.0.1..127.0.0.9 and a client
// certificate, made with `openssl` in `dir`: ca.pem, server.pem, server.key, client.pem,
// client.key (ca.key signs). kNotFound if there is no openssl binary.
Status MakeTestCertificates(const std::string& dir);

class EtcdCluster {
 public:
  EtcdCluster() = default;
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Starts the members and waits until all of them are healthy.
  Status Start(const EtcdClusterOptions& options = {});
  // SIGKILLs member i and reaps it.
  void Kill(int i);
  // SIGSTOPs member i: its sockets still accept connections, nothing answers. Cont resumes it.
  void Pause(int i);
  void Cont(int i);
  // Starts member i again on its data directory; Status of WaitHealthy(i) unless `wait` false.
  Status Restart(int i, bool wait = true);
  // Polls member i's /health until it answers healthy, up to `deadline`.
  Status WaitHealthy(int i, std::chrono::milliseconds deadline = std::chrono::seconds(30));
  // Kills every running member and removes the temporary directory.
  void Stop();
  // etcd auth on: a root user (password "root-pw") with the root role, then `user` with
  // `password` and a role of its own that may read and write [prefix, prefix's end), then
  // /v3/auth/enable. From then on every request needs a user's token.
  Status EnableAuth(const std::string& user, const std::string& password,
                    const std::string& prefix);
  // The running member that leads the cluster now, asked through each member's
  // /v3/maintenance/status; kIOError if none does.
  Result<int> Leader() const;

  int size() const { return static_cast<int>(members_.size()); }
  bool running(int i) const { return members_[i].pid > 0; }
  // "http://127.0.0.<i+1>:P" of member i, and every member's, comma-separated.
  const std::string& client_url(int i) const { return members_[i].client_url; }
  std::string endpoints() const;
  // The directory the members' data and logs live in.
  const std::string& dir() const { return dir_; }
  // With options.tls: the CA, and a client certificate and key it signed ("" without).
  std::string ca_file() const { return tls_dir_.empty() ? "" : tls_dir_ + "/ca.pem"; }
  std::string client_cert() const { return tls_dir_.empty() ? "" : tls_dir_ + "/client.pem"; }
  std::string client_key() const { return tls_dir_.empty() ? "" : tls_dir_ + "/client.key"; }
  // The last lines of member i's log, for failure messages.
  std::string LogTail(int i) const;

 private:
  struct Member {
    std::string name, data_dir, log, client_url, peer_url;
    pid_t pid = -1;
  };
  Status Spawn(int i, bool existing);

  EtcdClusterOptions options_;
  std::string dir_;
  std::string tls_dir_;  // with options.tls: the certificates
  std::string initial_cluster_;
  std::string token_;
  std::vector<Member> members_;
};

}  // namespace kvfs::test

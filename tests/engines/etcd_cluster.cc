#include "tests/engines/etcd_cluster.h"

#include <absl/strings/escaping.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace kvfs::test {
namespace {

using Clock = std::chrono::steady_clock;

// The loopback address of member i: 127.0.0.1, .2, .3, ... (Linux routes all of 127/8 to lo).
std::string MemberHost(int i) { return "127.0.0." + std::to_string(i + 1); }

// `n` distinct ports free on `host` now: each bound to port 0 and held until all are chosen.
Result<std::vector<int>> FreePorts(const std::string& host, int n) {
  std::vector<int> fds, ports;
  Status s;
  for (int i = 0; i < n && s.ok(); ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      s = Status::FromErrno(errno, "socket");
      break;
    }
    fds.push_back(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    socklen_t len = sizeof(a);
    if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      s = Status::FromErrno(errno, "bind " + host + ":0");
      break;
    }
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) ::close(fd);
  if (!s.ok()) return s;
  return ports;
}

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// GET url (POST `post` if not null), the body if the answer is 200 within `timeout`; over TLS
// with the certificates in `tls_dir` if not empty.
Result<std::string> Get(const std::string& url, std::chrono::milliseconds timeout,
                        const char* post = nullptr, const std::string& tls_dir = "") {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Status::IOError("curl_easy_init");
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  const std::string ca = tls_dir + "/ca.pem", cert = tls_dir + "/client.pem",
                    key = tls_dir + "/client.key";
  if (!tls_dir.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLCERT, cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, key.c_str());
  }
  if (post != nullptr) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const CURLcode rc = curl_easy_perform(curl);
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) return Status::IOError(url + ": " + curl_easy_strerror(rc));
  if (http != 200) return Status::IOError(url + ": HTTP " + std::to_string(http) + " " + body);
  return body;
}

// The binary `name` on PATH, or "".
std::string OnPath(const std::string& name) {
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe)
  std::stringstream dirs(path != nullptr ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Runs argv to its end, its output appended to `log`; OK if it exited 0.
Status RunTool(std::vector<std::string> args, const std::string& log) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(errno, "fork");
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return Status::FromErrno(errno, "waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    return Status::IOError(args[0] + " " + args[1] + " failed; its output:\n" + text.str());
  }
  return Status::OK();
}

}  // namespace

Status MakeTestCertificates(const std::string& dir) {
  const std::string openssl = OnPath("openssl");
  if (openssl.empty()) {
    return Status::NotFound("no openssl binary on PATH (scripts/setup-deps installs openssl)");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("mkdir " + dir + ": " + ec.message());
  const std::string log = dir + "/openssl.log";
  const std::string ext = dir + "/san.ext";
  {
    std::ofstream out(ext);
    out << "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4,IP:127.0.0.5,"
           "IP:127.0.0.6,IP:127.0.0.7,IP:127.0.0.8,IP:127.0.0.9\n";
    if (!out) return Status::IOError("write " + ext);
  }
  // P-256 keys: made in milliseconds.
  KVFS_RETURN_IF_ERROR(
      RunTool({openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", dir + "/ca.key", "-out", dir + "/ca.pem", "-days", "2", "-subj",
               "/CN=kvfs test CA"},
              log));
  for (const char* who : {"server", "client"}) {
    const std::string base = dir + "/" + who;
    KVFS_RETURN_IF_ERROR(
        RunTool({openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", base + ".key", "-out", base + ".csr", "-subj",
                 // No CommonName in the client's: with auth on, etcd refuses
                 // a gateway request whose client certificate has one.
                 std::string(who) == "client" ? "/O=kvfs test client" : "/CN=kvfs test server"},
                log));
    KVFS_RETURN_IF_ERROR(RunTool(
        {openssl, "x509", "-req", "-in", base + ".csr", "-CA", dir + "/ca.pem", "-CAkey",
         dir + "/ca.key", "-CAcreateserial", "-out", base + ".pem", "-days", "2", "-extfile", ext},
        log));
  }
  return Status::OK();
}

std::string EtcdBinary() {
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe)
  std::stringstream dirs(path != nullptr ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/etcd";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  if (::access("/usr/bin/etcd", X_OK) == 0) return "/usr/bin/etcd";
  return "";
}

EtcdCluster::~EtcdCluster() { Stop(); }

Status EtcdCluster::Start(const EtcdClusterOptions& options) {
  options_ = options;
  if (EtcdBinary().empty()) return Status::NotFound("no etcd binary on PATH");
  const char* base = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe)
  std::string tmpl =
      std::string(base != nullptr && *base != 0 ? base : "/tmp") + "/kvfs-etcd-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "mkdtemp " + tmpl);
  dir_ = tmpl;
  token_ = "kvfs-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(Clock::now().time_since_epoch().count());
  tls_dir_.clear();
  if (options.tls) {
    tls_dir_ = dir_ + "/tls";
    KVFS_RETURN_IF_ERROR(MakeTestCertificates(tls_dir_));
  }
  members_.clear();
  initial_cluster_.clear();
  for (int i = 0; i < options.members; ++i) {
    Member m;
    m.name = "m" + std::to_string(i);
    m.data_dir = dir_ + "/" + m.name + ".etcd";
    m.log = dir_ + "/" + m.name + ".log";
    const std::string host = MemberHost(i);
    KVFS_ASSIGN_OR_RETURN(std::vector<int> ports, FreePorts(host, 2));
    m.client_url =
        std::string(options.tls ? "https://" : "http://") + host + ":" + std::to_string(ports[0]);
    m.peer_url = "http://" + host + ":" + std::to_string(ports[1]);
    initial_cluster_ += (i == 0 ? "" : ",") + m.name + "=" + m.peer_url;
    members_.push_back(std::move(m));
  }
  for (int i = 0; i < size(); ++i) KVFS_RETURN_IF_ERROR(Spawn(i, /*existing=*/false));
  const auto deadline = Clock::now() + options.start_deadline;
  for (int i = 0; i < size(); ++i) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    KVFS_RETURN_IF_ERROR(WaitHealthy(i, std::max(left, std::chrono::milliseconds(1))));
  }
  return Status::OK();
}

Status EtcdCluster::Spawn(int i, bool existing) {
  Member& m = members_[i];
  std::vector<std::string> args = {
      EtcdBinary(),
      "--name=" + m.name,
      "--data-dir=" + m.data_dir,
      "--listen-client-urls=" + m.client_url,
      "--advertise-client-urls=" + m.client_url,
      "--listen-peer-urls=" + m.peer_url,
      "--initial-advertise-peer-urls=" + m.peer_url,
      "--initial-cluster=" + initial_cluster_,
      "--initial-cluster-token=" + token_,
      std::string("--initial-cluster-state=") + (existing ? "existing" : "new"),
      // Fast elections: a killed leader is replaced in about a second.
      "--heartbeat-interval=50",
      "--election-timeout=500",
      // A kvfs batch is one txn: the default 128 operations is too few for big batches.
      "--max-txn-ops=10000",
      "--logger=zap",
      "--log-outputs=stderr",
      "--log-level=warn",
  };
  if (!tls_dir_.empty()) {
    args.push_back("--cert-file=" + tls_dir_ + "/server.pem");
    args.push_back("--key-file=" + tls_dir_ + "/server.key");
    args.push_back("--trusted-ca-file=" + tls_dir_ + "/ca.pem");
    args.push_back("--client-cert-auth");
  }
  for (const std::string& f : options_.flags) args.push_back(f);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log = ::open(m.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log < 0) return Status::FromErrno(errno, "open " + m.log);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log);
    return Status::FromErrno(errno, "fork");
  }
  if (pid == 0) {
    // The member dies with the test process, whatever becomes of it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    ::dup2(log, 1);
    ::dup2(log, 2);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    // Nothing else of the test's: a file it holds open in a mount would keep the mount busy
    // for as long as the member lives.
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log);
  m.pid = pid;
  return Status::OK();
}

Status EtcdCluster::WaitHealthy(int i, std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  Status last;
  while (true) {
    if (members_[i].pid > 0) {
      int status = 0;
      if (::waitpid(members_[i].pid, &status, WNOHANG) == members_[i].pid) {
        members_[i].pid = -1;
        return Status::IOError("etcd member " + members_[i].name + " exited; its log:\n" +
                               LogTail(i));
      }
    }
    auto body =
        Get(members_[i].client_url + "/health", std::chrono::milliseconds(1000), nullptr, tls_dir_);
    if (body.ok() && body->find("\"health\":\"true\"") != std::string::npos) return Status::OK();
    last = body.ok() ? Status::IOError("unhealthy: " + *body) : body.status();
    if (Clock::now() >= until) break;
    // Polling the member's API, not waiting on time: the pause only spaces the polls.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::IOError("etcd member " + members_[i].name + " not healthy within " +
                         std::to_string(deadline.count()) + " ms (" + last.message() +
                         "); its log:\n" + LogTail(i));
}

void EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  int status = 0;
  ::waitpid(m.pid, &status, 0);
  m.pid = -1;
}

void EtcdCluster::Pause(int i) {
  if (members_[i].pid > 0) ::kill(members_[i].pid, SIGSTOP);
}

void EtcdCluster::Cont(int i) {
  if (members_[i].pid > 0) ::kill(members_[i].pid, SIGCONT);
}

Status EtcdCluster::Restart(int i, bool wait) {
  Kill(i);
  KVFS_RETURN_IF_ERROR(Spawn(i, /*existing=*/true));
  if (!wait) return Status::OK();
  return WaitHealthy(i);
}

void EtcdCluster::Stop() {
  for (int i = 0; i < size(); ++i) Kill(i);
  members_.clear();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

Status EtcdCluster::EnableAuth(const std::string& user, const std::string& password,
                               const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) return Status::InvalidArgument("EnableAuth: a prefix with an end");
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  using Json = nlohmann::json;
  const std::pair<const char*, Json> steps[] = {
      {"/v3/auth/user/add", {{"name", "root"}, {"password", "root-pw"}}},
      {"/v3/auth/role/add", {{"name", "root"}}},
      {"/v3/auth/user/grant", {{"user", "root"}, {"role", "root"}}},
      {"/v3/auth/user/add", {{"name", user}, {"password", password}}},
      {"/v3/auth/role/add", {{"name", user}}},
      {"/v3/auth/role/grant",
       {{"name", user},
        {"perm",
         {{"permType", "READWRITE"},
          {"key", absl::Base64Escape(prefix)},
          {"range_end", absl::Base64Escape(end)}}}}},
      {"/v3/auth/user/grant", {{"user", user}, {"role", user}}},
      {"/v3/auth/enable", Json::object()},
  };
  for (const auto& [path, body] : steps) {
    auto answer = Get(members_[0].client_url + path, std::chrono::milliseconds(10000),
                      body.dump().c_str(), tls_dir_);
    if (!answer.ok()) return answer.status().WithContext(std::string("EnableAuth ") + path);
  }
  return Status::OK();
}

Result<int> EtcdCluster::Leader() const {
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) continue;
    auto body = Get(members_[i].client_url + "/v3/maintenance/status",
                    std::chrono::milliseconds(5000), "{}", tls_dir_);
    if (!body.ok()) continue;
    const nlohmann::json j = nlohmann::json::parse(*body, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("leader") && j.contains("header") &&
        j["header"].value("member_id", nlohmann::json()) == j["leader"]) {
      return i;
    }
  }
  return Status::IOError("no running member leads the cluster");
}

std::string EtcdCluster::endpoints() const {
  std::string out;
  for (const Member& m : members_) out += (out.empty() ? "" : ",") + m.client_url;
  return out;
}

std::string EtcdCluster::LogTail(int i) const {
  std::ifstream in(members_[i].log);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  std::string out;
  for (size_t k = lines.size() > 20 ? lines.size() - 20 : 0; k < lines.size(); ++k) {
    out += lines[k] + "\n";
  }
  return out;
}

}  // namespace kvfs::test

// The HTTPS client against a real cpp-httplib TLS server on 127.0.0.1.
#include "idlegrid/shared/http_client.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <catch2/catch.hpp>
#include <httplib.h>

#include "idlegrid/shared/crypto.h"
#include "test_util.h"

namespace idlegrid {
namespace {

using testing::TempDir;

std::string Payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131) ^ (i >> 8));
  return s;
}

// A TLS server with a fresh self-signed certificate and the routes the tests use.
class TestServer {
 public:
  TestServer() {
    cert_ = dir_ / "server.crt";
    key_ = dir_ / "server.key";
    REQUIRE(GenerateSelfSignedCert(cert_, key_, {"127.0.0.1", "localhost"}).ok());
    fingerprint_ = CertificateFingerprint(testing::Slurp(cert_)).value();
    server_ = std::make_unique<httplib::SSLServer>(cert_.c_str(), key_.c_str());
    REQUIRE(server_->is_valid());
    Routes();
    port_ = server_->bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    for (int i = 0; i < 500 && !server_->is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(server_->is_running());
  }
  ~TestServer() {
    server_->stop();
    thread_.join();
  }

  HttpClientOptions Options() const {
    HttpClientOptions o;
    o.base_url = "https://127.0.0.1:" + std::to_string(port_);
    o.pinned_cert_sha256 = fingerprint_;
    o.initial_backoff_ms = 10;
    o.max_backoff_ms = 50;
    o.timeout_ms = 10000;
    return o;
  }
  std::unique_ptr<HttpClient> Client(HttpClientOptions o) const {
    return HttpClient::Create(std::move(o)).value();
  }

  const std::string blob = Payload(300000);
  std::atomic<int> flaky_failures{2};
  std::atomic<int> flaky_calls{0};
  std::atomic<bool> drop_next{true};
  std::mutex mu;
  std::vector<std::string> ranges;  // Range headers seen on /blob and /drop
  std::string uploaded_sha;
  std::string last_auth;
  std::string cert_, key_, fingerprint_;
  TempDir dir_;

 private:
  void Routes() {
    server_->Get("/hello", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("hi", "text/plain");
    });
    server_->Get("/flaky", [this](const httplib::Request&, httplib::Response& res) {
      ++flaky_calls;
      if (flaky_failures.fetch_sub(1) > 0) {
        res.status = 503;
        res.set_content(R"({"error":"busy"})", "application/json");
        return;
      }
      res.set_content("recovered", "text/plain");
    });
    server_->Post("/flaky", [this](const httplib::Request&, httplib::Response& res) {
      ++flaky_calls;
      res.status = 503;
      res.set_content(R"({"error":"busy"})", "application/json");
    });
    server_->Get("/slow", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      res.set_content("late", "text/plain");
    });
    server_->Get("/moved", [](const httplib::Request&, httplib::Response& res) {
      res.set_redirect("/hello");
    });
    server_->Get("/missing", [](const httplib::Request&, httplib::Response& res) {
      res.status = 404;
      res.set_content(R"({"error":"no such job: j-9"})", "application/json");
    });
    server_->Get("/auth", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu);
      last_auth = req.get_header_value("Authorization");
      res.set_content("ok", "text/plain");
    });
    server_->Get("/blob", [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ranges.push_back(req.get_header_value("Range"));
      }
      res.set_content(blob, "application/octet-stream");  // httplib serves Range requests
    });
    // Sends half of the blob, then drops the connection (once).
    server_->Get("/drop", [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ranges.push_back(req.get_header_value("Range"));
      }
      bool drop = drop_next.exchange(false);
      res.set_content_provider(
          blob.size(), "application/octet-stream",
          [this, drop](size_t offset, size_t length, httplib::DataSink& sink) {
            if (drop && offset >= blob.size() / 2) return false;  // abort mid-body
            size_t n = std::min<size_t>(length, 16384);
            sink.write(blob.data() + offset, n);
            return true;
          });
    });
    // The blob in quarters, 400 ms apart: a transfer that outlasts a short request timeout.
    server_->Get("/slowblob", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content_provider(blob.size(), "application/octet-stream",
                               [this](size_t offset, size_t, httplib::DataSink& sink) {
                                 std::this_thread::sleep_for(std::chrono::milliseconds(400));
                                 sink.write(blob.data() + offset, std::min(blob.size() - offset, blob.size() / 4 + 1));
                                 return true;
                               });
    });
    server_->Put("/upload", [this](const httplib::Request&, httplib::Response& res,
                                   const httplib::ContentReader& reader) {
      Sha256 h;
      reader([&](const char* data, size_t n) {
        h.Update(data, n);
        return true;
      });
      std::lock_guard<std::mutex> lock(mu);
      uploaded_sha = h.HexDigest();
      res.set_content(uploaded_sha, "text/plain");
    });
  }

  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_CASE("https with a pinned certificate", "[http]") {
  TestServer server;
  auto client = server.Client(server.Options());
  StatusOr<HttpResponse> r = client->Get("/hello");
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(r->body == "hi");
  CHECK(r->headers["content-type"] == "text/plain");

  // Colon-separated upper-case fingerprints (as openssl prints them) work too.
  HttpClientOptions colon = server.Options();
  std::string fp = server.fingerprint_, pretty;
  for (size_t i = 0; i < fp.size(); i += 2) {
    pretty += (i ? ":" : "") + std::string(1, static_cast<char>(std::toupper(fp[i]))) +
              static_cast<char>(std::toupper(fp[i + 1]));
  }
  colon.pinned_cert_sha256 = pretty;
  CHECK(server.Client(colon)->Get("/hello").ok());
}

TEST_CASE("a certificate that does not match the pin is refused without retries", "[http]") {
  TestServer server;
  HttpClientOptions o = server.Options();
  o.pinned_cert_sha256 = Sha256Hex("some other certificate");
  auto client = server.Client(o);
  StatusOr<HttpResponse> r = client->Get("/hello");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kPermissionDenied);
  CHECK(r.status().message().find("does not match the pinned fingerprint") != std::string::npos);
  CHECK(client->requests_sent() == 1);
  HttpClientOptions bad_pin;
  bad_pin.base_url = "https://x";
  bad_pin.pinned_cert_sha256 = "abc";
  CHECK_FALSE(HttpClient::Create(bad_pin).ok());
}

TEST_CASE("trust through a CA file, and no trust without one", "[http]") {
  TestServer server;
  HttpClientOptions o = server.Options();
  o.pinned_cert_sha256.clear();
  o.ca_file = server.cert_;  // the self-signed certificate is its own CA
  CHECK(server.Client(o)->Get("/hello").ok());

  TempDir other;
  REQUIRE(GenerateSelfSignedCert(other / "c.pem", other / "k.pem", {"127.0.0.1"}).ok());
  o.ca_file = other / "c.pem";
  StatusOr<HttpResponse> wrong_ca = server.Client(o)->Get("/hello");
  CHECK(wrong_ca.status().code() == StatusCode::kPermissionDenied);

  o.ca_file.clear();  // system CAs do not know our certificate
  o.max_attempts = 1;
  CHECK(server.Client(o)->Get("/hello").status().code() == StatusCode::kPermissionDenied);
  o.ca_file = other / "absent.pem";
  CHECK(HttpClient::Create(o).status().code() == StatusCode::kNotFound);
}

TEST_CASE("transient failures are retried with backoff", "[http]") {
  TestServer server;
  auto client = server.Client(server.Options());  // 4 attempts
  StatusOr<HttpResponse> r = client->Get("/flaky");
  REQUIRE(r.ok());
  CHECK(r->body == "recovered");
  CHECK(server.flaky_calls == 3);
  CHECK(client->requests_sent() == 3);

  server.flaky_failures = 10;
  HttpClientOptions few = server.Options();
  few.max_attempts = 2;
  StatusOr<HttpResponse> gave_up = server.Client(few)->Get("/flaky");
  CHECK(gave_up.status().code() == StatusCode::kUnavailable);
  CHECK(gave_up.status().message().find("HTTP 503: busy") != std::string::npos);
}

TEST_CASE("a POST that reached the server is not repeated", "[http]") {
  TestServer server;
  auto client = server.Client(server.Options());
  StatusOr<HttpResponse> r = client->PostJson("/flaky", "{}");
  CHECK(r.status().code() == StatusCode::kUnavailable);
  CHECK(server.flaky_calls == 1);
  server.flaky_calls = 0;
  CHECK_FALSE(client->PostJson("/flaky", "{}", /*idempotent=*/true).ok());
  CHECK(server.flaky_calls == 4);
}

TEST_CASE("timeouts and refused connections are clear errors", "[http]") {
  TestServer server;
  HttpClientOptions o = server.Options();
  o.timeout_ms = 300;
  o.max_attempts = 1;
  StatusOr<HttpResponse> slow = server.Client(o)->Get("/slow");
  CHECK(slow.status().code() == StatusCode::kDeadlineExceeded);

  HttpClientOptions closed = server.Options();
  closed.base_url = "https://127.0.0.1:1";  // nothing listens on port 1
  closed.max_attempts = 3;
  auto client = server.Client(closed);
  StatusOr<HttpResponse> refused = client->Get("/hello");
  CHECK(refused.status().code() == StatusCode::kUnavailable);
  CHECK(client->requests_sent() == 3);
}

TEST_CASE("HTTP errors carry the server's message", "[http]") {
  TestServer server;
  StatusOr<HttpResponse> r = server.Client(server.Options())->Get("/missing");
  CHECK(r.status().code() == StatusCode::kNotFound);
  CHECK(r.status().message().find("HTTP 404: no such job: j-9") != std::string::npos);
}

TEST_CASE("redirects are errors, not empty successes", "[http]") {
  TestServer server;
  TempDir dir;
  auto client = server.Client(server.Options());
  StatusOr<HttpResponse> r = client->Get("/moved");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("HTTP 302") != std::string::npos);
  CHECK_FALSE(client->Download("/moved", dir / "x").ok());
  CHECK_FALSE(std::filesystem::exists(dir / "x"));
}

TEST_CASE("plain http is refused whenever there is something to protect", "[http]") {
  HttpClientOptions o;
  o.base_url = "http://127.0.0.1:1";
  CHECK(HttpClient::Create(o).ok());  // loopback tests only
  o.bearer_token = "secret";
  CHECK(HttpClient::Create(o).status().code() == StatusCode::kInvalidArgument);
  o.bearer_token.clear();
  o.pinned_cert_sha256 = std::string(64, 'a');
  CHECK(HttpClient::Create(o).status().code() == StatusCode::kInvalidArgument);
  o.base_url = "ftp://x";
  o.pinned_cert_sha256.clear();
  CHECK_FALSE(HttpClient::Create(o).ok());
}

TEST_CASE("bearer tokens are sent", "[http]") {
  TestServer server;
  HttpClientOptions o = server.Options();
  o.bearer_token = "tok123";
  REQUIRE(server.Client(o)->Get("/auth").ok());
  CHECK(server.last_auth == "Bearer tok123");
}

TEST_CASE("oversize in-memory responses are refused", "[http]") {
  TestServer server;
  HttpClientOptions o = server.Options();
  o.max_response_bytes = 1000;
  CHECK(server.Client(o)->Get("/blob").status().code() == StatusCode::kResourceExhausted);
}

TEST_CASE("downloads resume from a partial file with a Range request", "[http]") {
  TestServer server;
  TempDir dir;
  std::string dest = dir / "blob.bin";
  testing::Spit(dest + ".part", server.blob.substr(0, 100000));
  auto client = server.Client(server.Options());
  REQUIRE(client->Download("/blob", dest, Sha256Hex(server.blob),
                           static_cast<int64_t>(server.blob.size()))
              .ok());
  CHECK(testing::Slurp(dest) == server.blob);
  CHECK_FALSE(std::filesystem::exists(dest + ".part"));
  REQUIRE(server.ranges.size() == 1);
  CHECK(server.ranges[0] == "bytes=100000-");
}

TEST_CASE("a download cut off mid-way resumes on retry", "[http]") {
  TestServer server;
  TempDir dir;
  std::string dest = dir / "blob.bin";
  auto client = server.Client(server.Options());
  REQUIRE(client->Download("/drop", dest, Sha256Hex(server.blob)).ok());
  CHECK(testing::Slurp(dest) == server.blob);
  REQUIRE(server.ranges.size() == 2);
  CHECK(server.ranges[0].empty());
  CHECK(server.ranges[1].rfind("bytes=", 0) == 0);
  CHECK(server.ranges[1] != "bytes=0-");
}

TEST_CASE("a download with the wrong hash or size is discarded", "[http]") {
  TestServer server;
  TempDir dir;
  std::string dest = dir / "blob.bin";
  auto client = server.Client(server.Options());
  Status bad_hash = client->Download("/blob", dest, Sha256Hex("not it"));
  CHECK(bad_hash.code() == StatusCode::kDataLoss);
  CHECK_FALSE(std::filesystem::exists(dest));
  CHECK_FALSE(std::filesystem::exists(dest + ".part"));
  Status bad_size = client->Download("/blob", dest, "", 5);
  CHECK(bad_size.code() == StatusCode::kDataLoss);
  CHECK_FALSE(std::filesystem::exists(dest));
}

TEST_CASE("uploads stream a file from disk", "[http]") {
  TestServer server;
  TempDir dir;
  std::string data = Payload(3 << 20);
  testing::Spit(dir / "up.bin", data);
  auto client = server.Client(server.Options());
  StatusOr<HttpResponse> r = client->Upload("PUT", "/upload", dir / "up.bin");
  REQUIRE(r.ok());
  CHECK(r->body == Sha256Hex(data));
  CHECK(client->Upload("PUT", "/upload", dir / "absent").status().code() ==
        StatusCode::kIoError);
  CHECK(client->Upload("PATCH", "/upload", dir / "up.bin").status().code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE("file transfers report progress and last as long as they need", "[http]") {
  TestServer server;
  TempDir dir;
  HttpClientOptions o = server.Options();
  o.timeout_ms = 800;  // a request must answer within this; a transfer only keep moving
  o.max_attempts = 1;
  std::vector<std::pair<int64_t, int64_t>> seen;
  o.on_progress = [&](int64_t done, int64_t total) { seen.emplace_back(done, total); };
  auto client = server.Client(o);
  CHECK(client->Get("/slow").status().code() == StatusCode::kDeadlineExceeded);  // 1.5 s: timed out
  REQUIRE(client->Download("/slowblob", dir / "blob.bin", Sha256Hex(server.blob)).ok());  // 1.6 s
  CHECK(testing::Slurp(dir / "blob.bin") == server.blob);
  REQUIRE_FALSE(seen.empty());
  CHECK(seen.back() == std::make_pair(static_cast<int64_t>(server.blob.size()), static_cast<int64_t>(server.blob.size())));
  seen.clear();
  const std::string data = Payload(3 << 20);
  testing::Spit(dir / "up.bin", data);
  REQUIRE(client->Upload("PUT", "/upload", dir / "up.bin").ok());
  REQUIRE_FALSE(seen.empty());
  CHECK(seen.back().second == static_cast<int64_t>(data.size()));
  CHECK(seen.back().first == static_cast<int64_t>(data.size()));
}

TEST_CASE("cancellation stops waiting between retries", "[http]") {
  TestServer server;
  server.flaky_failures = 1000;
  std::atomic<bool> cancel{false};
  HttpClientOptions o = server.Options();
  o.max_attempts = 1000;
  o.initial_backoff_ms = 200;
  o.max_backoff_ms = 200;
  o.cancel = &cancel;
  auto client = server.Client(o);
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel = true;
  });
  StatusOr<HttpResponse> r = client->Get("/flaky");
  canceller.join();
  CHECK(r.status().code() == StatusCode::kCancelled);
  CHECK(client->requests_sent() < 10);
}

}  // namespace
}  // namespace idlegrid

#include "idlegrid/shared/http_client.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "idlegrid/shared/crypto.h"
#include "idlegrid/shared/files.h"
#include "idlegrid/shared/json.h"
#include "idlegrid/shared/log.h"

namespace idlegrid {
namespace {

std::once_flag g_curl_init;

// What the TLS verify callback compares against, and what it saw.
struct PinState {
  std::string pinned;  // lowercase hex
  std::string seen;
};

int PinIndex() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Accepts the chain only if the leaf certificate's SHA-256 is the pinned one. Chain and
// name checks do not matter then: the node trusts exactly this certificate.
int VerifyPinned(int /*preverify_ok*/, X509_STORE_CTX* store) {
  if (X509_STORE_CTX_get_error_depth(store) > 0) return 1;
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* pin = static_cast<PinState*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), PinIndex()));
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (pin == nullptr || cert == nullptr || X509_digest(cert, EVP_sha256(), md, &len) != 1) {
    return 0;
  }
  pin->seen = HexEncode(std::string_view(reinterpret_cast<char*>(md), len));
  if (!ConstantTimeEquals(pin->seen, pin->pinned)) return 0;
  X509_STORE_CTX_set_error(store, X509_V_OK);
  return 1;
}

CURLcode SslCtxCallback(CURL*, void* ssl_ctx, void* user) {
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  SSL_CTX_set_ex_data(ctx, PinIndex(), user);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, VerifyPinned);
  return CURLE_OK;
}

std::string ErrorFromBody(const std::string& body) {
  StatusOr<Json> j = ParseJson(body, JsonLimits{64 * 1024, 8});
  if (j.ok() && j->is_object() && j->contains("error") && (*j)["error"].is_string()) {
    return (*j)["error"].get<std::string>();
  }
  std::string text = body.substr(0, 200);
  for (char& c : text) {
    if (!std::isprint(static_cast<unsigned char>(c))) c = ' ';
  }
  return text;
}

bool IsTransient(const Status& st) {
  return st.code() == StatusCode::kUnavailable || st.code() == StatusCode::kDeadlineExceeded;
}

}  // namespace

StatusCode StatusCodeForHttp(long s) {
  switch (s) {
    case 400: return StatusCode::kInvalidArgument;
    case 401: return StatusCode::kUnauthenticated;
    case 403: return StatusCode::kPermissionDenied;
    case 404: return StatusCode::kNotFound;
    case 409: return StatusCode::kFailedPrecondition;
    case 410: return StatusCode::kNotFound;
    case 412: return StatusCode::kFailedPrecondition;
    case 413: return StatusCode::kResourceExhausted;
    case 416: return StatusCode::kOutOfRange;
    case 422: return StatusCode::kInvalidArgument;
    case 429: return StatusCode::kUnavailable;
    case 500: return StatusCode::kUnavailable;
    case 501: return StatusCode::kUnimplemented;
    case 502: case 503: case 504: return StatusCode::kUnavailable;
    default: return s >= 500 ? StatusCode::kUnavailable : StatusCode::kInvalidArgument;
  }
}

// One request: what to send and where the body goes.
struct HttpClient::Call {
  std::string method;
  std::string path;
  std::string body;           // in-memory request body
  std::string content_type;
  std::string upload_file;    // or the body is streamed from this file
  std::string sink_file;      // download: body goes here (appending from resume_from)
  uint64_t resume_from = 0;

  // Filled by Perform.
  const HttpClientOptions* options = nullptr;
  bool maybe_sent = false;    // false only when no connection was made
  std::string retry_after;    // Retry-After header of the last response
  PinState pin;
  FILE* sink = nullptr;
  FILE* source = nullptr;
  HttpResponse response;
  CURL* curl = nullptr;
  uint64_t max_body = 0;
  bool body_too_large = false;
  std::string sink_error;
};

HttpClient::HttpClient(HttpClientOptions options) : options_(std::move(options)) {}

HttpClient::~HttpClient() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

StatusOr<std::unique_ptr<HttpClient>> HttpClient::Create(HttpClientOptions options) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  // Plain http:// only for loopback tests without secrets: a pin or a token over
  // cleartext would be silently meaningless.
  const bool https = options.base_url.rfind("https://", 0) == 0;
  const bool http = options.base_url.rfind("http://", 0) == 0;
  if (!https && !(http && options.pinned_cert_sha256.empty() && options.ca_file.empty() &&
                  options.bearer_token.empty())) {
    return InvalidArgumentError("server URL must start with https:// (got \"" +
                                options.base_url + "\")");
  }
  while (!options.base_url.empty() && options.base_url.back() == '/') options.base_url.pop_back();
  if (!options.pinned_cert_sha256.empty()) {
    IDLEGRID_ASSIGN_OR_RETURN(options.pinned_cert_sha256,
                              NormalizeFingerprint(options.pinned_cert_sha256));
  }
  if (!options.ca_file.empty() && ::access(options.ca_file.c_str(), R_OK) != 0) {
    return NotFoundError("CA file not readable: " + options.ca_file);
  }
  if (options.max_attempts < 1) options.max_attempts = 1;
  std::unique_ptr<HttpClient> client(new HttpClient(std::move(options)));
  client->curl_ = curl_easy_init();
  if (client->curl_ == nullptr) return InternalError("curl_easy_init failed");
  return client;
}

static size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* call = static_cast<HttpClient::Call*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    call->response.headers.clear();  // a new response (after 100-continue or a redirect)
  } else {
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      size_t start = line.find_first_not_of(' ', colon + 1);
      size_t end = line.find_last_not_of("\r\n");
      call->response.headers[name] =
          start == std::string::npos || end < start ? "" : line.substr(start, end - start + 1);
    }
  }
  return size * n;
}

static size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* call = static_cast<HttpClient::Call*>(user);
  size_t bytes = size * n;
  long status = 0;
  curl_easy_getinfo(call->curl, CURLINFO_RESPONSE_CODE, &status);
  if (call->sink != nullptr && (status == 200 || status == 206)) {
    if (status == 200 && call->resume_from > 0) {
      // The server ignored our Range header: start the file again.
      if (std::fflush(call->sink) != 0 || ::ftruncate(fileno(call->sink), 0) != 0 ||
          std::fseek(call->sink, 0, SEEK_SET) != 0) {
        call->sink_error = "cannot truncate " + call->sink_file;
        return 0;
      }
      call->resume_from = 0;
    }
    if (std::fwrite(data, 1, bytes, call->sink) != bytes) {
      call->sink_error = "cannot write " + call->sink_file;
      return 0;
    }
    return bytes;
  }
  if (call->response.body.size() + bytes > call->max_body) {
    call->body_too_large = true;
    return 0;
  }
  call->response.body.append(data, bytes);
  return bytes;
}

static size_t OnRead(char* buffer, size_t size, size_t n, void* user) {
  auto* call = static_cast<HttpClient::Call*>(user);
  size_t got = std::fread(buffer, 1, size * n, call->source);
  if (got == 0 && std::ferror(call->source)) return CURL_READFUNC_ABORT;
  return got;
}

static int OnProgress(void* user, curl_off_t dl_total, curl_off_t dl_now, curl_off_t ul_total, curl_off_t ul_now) {
  auto* call = static_cast<HttpClient::Call*>(user);
  const HttpClientOptions& o = *call->options;
  if (o.on_progress && (!call->upload_file.empty() || !call->sink_file.empty())) {
    const bool up = !call->upload_file.empty();
    const int64_t base = up ? 0 : static_cast<int64_t>(call->resume_from);
    o.on_progress(base + static_cast<int64_t>(up ? ul_now : dl_now), base + static_cast<int64_t>(up ? ul_total : dl_total));
  }
  return o.cancel != nullptr && o.cancel->load() ? 1 : 0;
}

StatusOr<HttpResponse> HttpClient::Perform(Call& call) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);  // keeps the connection cache
  call.curl = curl;
  call.response = HttpResponse();
  call.max_body = options_.max_response_bytes;
  call.body_too_large = false;
  call.sink_error.clear();
  call.pin.pinned = options_.pinned_cert_sha256;
  call.pin.seen.clear();
  std::string url = options_.base_url + call.path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
  // A file transfer takes as long as its size needs: the stall limit below ends a dead one.
  const bool transfer = !call.upload_file.empty() || !call.sink_file.empty();
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, transfer ? 0L : static_cast<long>(options_.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.low_speed_time_s));
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &call);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &call);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
  call.options = &options_;
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &call);
  if (!options_.pinned_cert_sha256.empty()) {
    // Our callback does the verification; curl's own chain and name checks would reject a
    // self-signed certificate that we pin on purpose.
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &call.pin);
    if (curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, SslCtxCallback) != CURLE_OK) {
      return UnimplementedError("this libcurl cannot pin certificates (needs OpenSSL)");
    }
  } else {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  }

  struct curl_slist* headers = nullptr;
  std::string auth = "Authorization: Bearer " + options_.bearer_token;
  if (!options_.bearer_token.empty()) headers = curl_slist_append(headers, auth.c_str());
  std::string ctype = "Content-Type: " + call.content_type;
  if (!call.content_type.empty()) headers = curl_slist_append(headers, ctype.c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  std::string range;
  if (!call.sink_file.empty() && call.resume_from > 0) {
    range = std::to_string(call.resume_from) + "-";
    curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
  }

  if (!call.upload_file.empty()) {
    call.source = std::fopen(call.upload_file.c_str(), "rb");
    if (call.source == nullptr) {
      curl_slist_free_all(headers);
      return ErrnoError("cannot open " + call.upload_file, errno);
    }
    StatusOr<uint64_t> size = FileSize(call.upload_file);
    curl_off_t length = size.ok() ? static_cast<curl_off_t>(*size) : -1;
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &call);
    if (call.method == "PUT") {
      curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, length);
    } else {
      curl_easy_setopt(curl, CURLOPT_POST, 1L);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, length);
    }
  } else if (call.method == "POST" || call.method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, call.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
  }
  if (call.method != "GET" && call.method != "POST") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  requests_sent_.fetch_add(1);
  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (call.source != nullptr) {
    std::fclose(call.source);
    call.source = nullptr;
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  call.response.status = status;
  auto it = call.response.headers.find("retry-after");
  call.retry_after = it == call.response.headers.end() ? "" : it->second;
  call.maybe_sent = !(rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                      rc == CURLE_COULDNT_RESOLVE_PROXY);

  const std::string what = call.method + " " + url;
  if (rc != CURLE_OK) {
    std::string detail = curl_easy_strerror(rc);
    if (!call.pin.pinned.empty() && !call.pin.seen.empty() && call.pin.seen != call.pin.pinned) {
      return PermissionDeniedError(what + ": server certificate " + call.pin.seen +
                                   " does not match the pinned fingerprint " + call.pin.pinned);
    }
    switch (rc) {
      case CURLE_ABORTED_BY_CALLBACK:
        return CancelledError(what + ": cancelled");
      case CURLE_OPERATION_TIMEDOUT:
        return DeadlineExceededError(what + ": " + detail);
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
        return PermissionDeniedError(what + ": TLS certificate not trusted: " + detail);
      case CURLE_WRITE_ERROR:
        if (call.body_too_large) {
          return ResourceExhaustedError(what + ": response larger than " +
                                        std::to_string(call.max_body) + " bytes");
        }
        return IoError(what + ": " + (call.sink_error.empty() ? detail : call.sink_error));
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return InvalidArgumentError(what + ": " + detail);
      default:
        return UnavailableError(what + ": " + detail);
    }
  }
  if (status < 200 || status > 299) {  // redirects are not followed: an error too
    return Status(StatusCodeForHttp(status),
                  what + ": HTTP " + std::to_string(status) + ": " + ErrorFromBody(call.response.body));
  }
  return call.response;
}

bool HttpClient::SleepBackoff(int attempt) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  int64_t base = options_.initial_backoff_ms;
  for (int i = 1; i < attempt && base < options_.max_backoff_ms; ++i) base *= 2;
  base = std::min(base, options_.max_backoff_ms);
  // Jitter (50-100%) so that many nodes retrying after an outage do not arrive together.
  int64_t ms = base / 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(base / 2 + 1));
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    if (options_.cancel != nullptr && options_.cancel->load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(ms, 20)));
  }
  return true;
}

StatusOr<HttpResponse> HttpClient::PerformWithRetries(Call& call, bool retry_after_send) {
  Status last;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    if (!call.sink_file.empty() && call.sink != nullptr) {
      std::fflush(call.sink);
      StatusOr<uint64_t> have = FileSize(call.sink_file);
      call.resume_from = have.ok() ? *have : 0;
    }
    StatusOr<HttpResponse> r = Perform(call);
    if (r.ok()) return r;
    last = r.status();
    bool retry = IsTransient(last) && (retry_after_send || !call.maybe_sent);
    if (!retry || attempt == options_.max_attempts) break;
    IDLEGRID_LOG(kInfo) << last.message() << "; retrying (" << attempt << "/"
                        << options_.max_attempts - 1 << ")";
    if (!SleepBackoff(attempt)) return CancelledError(last.message() + "; cancelled");
  }
  return last;
}

StatusOr<HttpResponse> HttpClient::Get(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  Call call;
  call.method = "GET";
  call.path = path;
  return PerformWithRetries(call, /*retry_after_send=*/true);
}

StatusOr<HttpResponse> HttpClient::Delete(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  Call call;
  call.method = "DELETE";
  call.path = path;
  return PerformWithRetries(call, /*retry_after_send=*/true);
}

StatusOr<HttpResponse> HttpClient::PostJson(const std::string& path, const std::string& json,
                                            bool idempotent) {
  std::lock_guard<std::mutex> lock(mu_);
  Call call;
  call.method = "POST";
  call.path = path;
  call.body = json;
  call.content_type = "application/json";
  return PerformWithRetries(call, idempotent);
}

StatusOr<HttpResponse> HttpClient::Upload(const std::string& method, const std::string& path,
                                          const std::string& file,
                                          const std::string& content_type) {
  if (method != "PUT" && method != "POST") {
    return InvalidArgumentError("upload method must be PUT or POST");
  }
  std::lock_guard<std::mutex> lock(mu_);
  Call call;
  call.method = method;
  call.path = path;
  call.upload_file = file;
  call.content_type = content_type;
  return PerformWithRetries(call, /*retry_after_send=*/method == "PUT");
}

Status HttpClient::Download(const std::string& path, const std::string& dest,
                            const std::string& expected_sha256, int64_t expected_size) {
  std::lock_guard<std::mutex> lock(mu_);
  Call call;
  call.method = "GET";
  call.path = path;
  call.sink_file = dest + ".part";
  call.sink = std::fopen(call.sink_file.c_str(), "ab");
  if (call.sink == nullptr) return ErrnoError("cannot open " + call.sink_file, errno);
  StatusOr<HttpResponse> r = PerformWithRetries(call, /*retry_after_send=*/true);
  bool closed_ok = std::fclose(call.sink) == 0;
  call.sink = nullptr;
  if (!r.ok()) {
    // 416: the partial file already has every byte (or more); verify it below.
    if (r.status().code() != StatusCode::kOutOfRange) return r.status();
  }
  if (!closed_ok) return IoError("cannot write " + call.sink_file);
  IDLEGRID_ASSIGN_OR_RETURN(uint64_t size, FileSize(call.sink_file));
  if (expected_size >= 0 && size != static_cast<uint64_t>(expected_size)) {
    ::unlink(call.sink_file.c_str());
    return DataLossError("download of " + path + " has " + std::to_string(size) +
                         " bytes, expected " + std::to_string(expected_size));
  }
  if (!expected_sha256.empty()) {
    IDLEGRID_ASSIGN_OR_RETURN(std::string sha, Sha256File(call.sink_file));
    if (sha != expected_sha256) {
      ::unlink(call.sink_file.c_str());
      return DataLossError("download of " + path + " has SHA-256 " + sha + ", expected " +
                           expected_sha256);
    }
  }
  if (!r.ok() && expected_size < 0 && expected_sha256.empty()) return r.status();
  if (::rename(call.sink_file.c_str(), dest.c_str()) != 0) {
    return ErrnoError("cannot move download to " + dest, errno);
  }
  return Status::Ok();
}

}  // namespace idlegrid

#include "idlegrid/client/idle.h"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>

namespace idlegrid::client {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

// The XScreenSaver extension through dlopen: the few symbols we need, by their C types.
class X11Idle : public IdleSource {
 public:
  ~X11Idle() override {
    if (display_ != nullptr && close_display_ != nullptr) close_display_(display_);
    if (info_ != nullptr && free_ != nullptr) free_(info_);
    if (xss_ != nullptr) dlclose(xss_);
    if (x11_ != nullptr) dlclose(x11_);
  }
  bool Init() {
    if (std::getenv("DISPLAY") == nullptr) return false;
    x11_ = dlopen("libX11.so.6", RTLD_NOW | RTLD_LOCAL);
    xss_ = dlopen("libXss.so.1", RTLD_NOW | RTLD_LOCAL);
    if (x11_ == nullptr || xss_ == nullptr) return false;
    auto open_display = reinterpret_cast<void* (*)(const char*)>(dlsym(x11_, "XOpenDisplay"));
    close_display_ = reinterpret_cast<int (*)(void*)>(dlsym(x11_, "XCloseDisplay"));
    auto default_root = reinterpret_cast<unsigned long (*)(void*)>(dlsym(x11_, "XDefaultRootWindow"));
    free_ = reinterpret_cast<int (*)(void*)>(dlsym(x11_, "XFree"));
    auto query_ext = reinterpret_cast<int (*)(void*, int*, int*)>(dlsym(xss_, "XScreenSaverQueryExtension"));
    auto alloc = reinterpret_cast<void* (*)()>(dlsym(xss_, "XScreenSaverAllocInfo"));
    query_ = reinterpret_cast<int (*)(void*, unsigned long, void*)>(dlsym(xss_, "XScreenSaverQueryInfo"));
    if (!open_display || !close_display_ || !default_root || !free_ || !query_ext || !alloc || !query_) return false;
    display_ = open_display(nullptr);
    if (display_ == nullptr) return false;
    int ev = 0, err = 0;
    if (!query_ext(display_, &ev, &err)) return false;
    root_ = default_root(display_);
    info_ = alloc();
    return info_ != nullptr;
  }
  std::optional<int64_t> IdleMs() override {
    if (!query_(display_, root_, info_)) return std::nullopt;
    // XScreenSaverInfo: Window window; int state; int kind; unsigned long til_or_since;
    //                   unsigned long idle; unsigned long eventMask;
    struct Info {
      unsigned long window;
      int state, kind;
      unsigned long til_or_since, idle, event_mask;
    };
    return static_cast<int64_t>(static_cast<Info*>(info_)->idle);
  }
  std::string name() const override { return "x11"; }

 private:
  void* x11_ = nullptr;
  void* xss_ = nullptr;
  void* display_ = nullptr;
  void* info_ = nullptr;
  unsigned long root_ = 0;
  int (*close_display_)(void*) = nullptr;
  int (*free_)(void*) = nullptr;
  int (*query_)(void*, unsigned long, void*) = nullptr;
};

class InputIdle : public IdleSource {
 public:
  explicit InputIdle(std::string dir) : dir_(std::move(dir)) {}
  std::optional<int64_t> IdleMs() override {
    DIR* d = opendir(dir_.c_str());
    if (d == nullptr) return std::nullopt;
    int64_t newest = -1;
    for (dirent* e = readdir(d); e != nullptr; e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      struct stat st;
      if (stat((dir_ + "/" + e->d_name).c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
      const int64_t a = st.st_atim.tv_sec * 1000 + st.st_atim.tv_nsec / 1000000;
      const int64_t m = st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
      newest = std::max<int64_t>({newest, a, m});
    }
    closedir(d);
    if (newest < 0) return std::nullopt;
    return std::max<int64_t>(0, NowMs() - newest);
  }
  std::string name() const override { return "input:" + dir_; }

 private:
  std::string dir_;
};

class FileIdle : public IdleSource {
 public:
  explicit FileIdle(std::string path) : path_(std::move(path)) {}
  std::optional<int64_t> IdleMs() override {
    std::ifstream in(path_);
    std::string word;
    if (!(in >> word)) return std::nullopt;
    if (word == "active") return 0;
    if (word == "idle") return int64_t{1} << 40;
    char* end = nullptr;
    const long long v = std::strtoll(word.c_str(), &end, 10);
    if (end == word.c_str() || *end != '\0' || v < 0) return std::nullopt;
    return v;
  }
  std::string name() const override { return "file:" + path_; }

 private:
  std::string path_;
};

}  // namespace

std::unique_ptr<IdleSource> MakeX11IdleSource() {
  auto x = std::make_unique<X11Idle>();
  if (!x->Init()) return nullptr;
  return x;
}

std::unique_ptr<IdleSource> MakeInputIdleSource(const std::string& dir) {
  auto s = std::make_unique<InputIdle>(dir);
  if (!s->IdleMs()) return nullptr;
  return s;
}

std::unique_ptr<IdleSource> MakeFileIdleSource(const std::string& path) {
  return std::make_unique<FileIdle>(path);
}

std::unique_ptr<IdleSource> MakeDefaultIdleSource() {
  if (auto x = MakeX11IdleSource()) return x;
  return MakeInputIdleSource();
}

}  // namespace idlegrid::client

// Helpers shared by the tests: temporary directories and small file utilities.
#ifndef IDLEGRID_TESTS_TEST_UTIL_H_
#define IDLEGRID_TESTS_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace idlegrid::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "idlegrid-test-XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) std::abort();
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// `s` without trailing newlines and spaces (a command's one-line answer).
inline std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// Runs a shell command and returns its standard output (empty on failure to start).
inline std::string RunCommand(const std::string& cmd, int* exit_code = nullptr) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (exit_code != nullptr) *exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

// Reads a 24-bit BMP (what wx writes): width, height and RGB rows top-down.
struct Bmp {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};
inline Bmp ReadBmp(const std::string& path) {
  const std::string b = Slurp(path);
  Bmp out;
  if (b.size() < 54 || b[0] != 'B' || b[1] != 'M') return out;
  auto u32 = [&](size_t o) { return static_cast<uint32_t>(static_cast<uint8_t>(b[o]) | static_cast<uint8_t>(b[o + 1]) << 8 |
                                                          static_cast<uint8_t>(b[o + 2]) << 16 | static_cast<uint8_t>(b[o + 3]) << 24); };
  const uint32_t offset = u32(10);
  const int w = static_cast<int>(u32(18)), h = static_cast<int>(u32(22));
  const int bpp = static_cast<uint8_t>(b[28]) | static_cast<uint8_t>(b[29]) << 8;
  if (bpp != 24 || w <= 0 || h <= 0) return out;
  const size_t row = (static_cast<size_t>(w) * 3 + 3) / 4 * 4;
  if (b.size() < offset + row * static_cast<size_t>(h)) return out;
  out.width = w;
  out.height = h;
  out.rgb.resize(static_cast<size_t>(w * h * 3));
  for (int y = 0; y < h; ++y) {
    const char* src = b.data() + offset + row * static_cast<size_t>(h - 1 - y);  // bottom-up
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < 3; ++k) out.rgb[static_cast<size_t>((y * w + x) * 3 + k)] = static_cast<uint8_t>(src[x * 3 + 2 - k]);
    }
  }
  return out;
}

}  // namespace idlegrid::testing

#endif  // IDLEGRID_TESTS_TEST_UTIL_H_

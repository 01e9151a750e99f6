// How long the user of this machine has been idle: the port layer behind the node's "run only
// when idle" policy. Implementations:
//   X11        the XScreenSaver extension (libX11/libXss loaded at run time, so the daemon
//              needs no X libraries on HPC nodes)
//   input      newest access/modification time of /dev/input/* (consoles, Wayland without
//              X11, machines where the X server cannot be reached)
//   file       a file holding "active" or "idle" or a number of idle milliseconds; for
//              integrations (and the tests) that know better
#ifndef IDLEGRID_CLIENT_IDLE_H_
#define IDLEGRID_CLIENT_IDLE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace idlegrid::client {

class IdleSource {
 public:
  virtual ~IdleSource() = default;
  // Milliseconds since the last user input, or nullopt when it cannot tell.
  virtual std::optional<int64_t> IdleMs() = 0;
  virtual std::string name() const = 0;
};

// nullptr when there is no display or no XScreenSaver extension.
std::unique_ptr<IdleSource> MakeX11IdleSource();
// nullptr when /dev/input has nothing readable.
std::unique_ptr<IdleSource> MakeInputIdleSource(const std::string& dir = "/dev/input");
std::unique_ptr<IdleSource> MakeFileIdleSource(const std::string& path);
// X11 if it works, else /dev/input, else nullptr.
std::unique_ptr<IdleSource> MakeDefaultIdleSource();

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_IDLE_H_

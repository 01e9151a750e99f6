// Fuzz target: the model configuration a worker reads from a unit (config.model). Beyond
// "no crash": whatever parses is valid and round-trips through JSON unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "idlegrid/models/config_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  idlegrid::StatusOr<idlegrid::Json> j =
      idlegrid::ParseJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!j.ok()) return 0;
  idlegrid::StatusOr<idlegrid::models::ModelConfig> c = idlegrid::models::ConfigFromJson(*j);
  if (!c.ok()) return 0;
  if (!c->Validate().ok()) std::abort();
  idlegrid::Json again = idlegrid::models::ConfigToJson(*c);
  idlegrid::StatusOr<idlegrid::models::ModelConfig> c2 = idlegrid::models::ConfigFromJson(again);
  if (!c2.ok() || idlegrid::models::ConfigToJson(*c2) != again) std::abort();
  return 0;
}

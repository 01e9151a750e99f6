// ModelConfig as JSON: what units and model packages carry. Parsing is strict (unknown,
// missing or out-of-range fields are INVALID_ARGUMENT naming the field) and then
// ModelConfig::Validate() runs.
#ifndef IDLEGRID_MODELS_CONFIG_JSON_H_
#define IDLEGRID_MODELS_CONFIG_JSON_H_

#include <vector>

#include "idlegrid/models/model_config.h"
#include "idlegrid/models/trainer.h"
#include "idlegrid/shared/json.h"

namespace idlegrid::models {

Json ConfigToJson(const ModelConfig& config);
StatusOr<ModelConfig> ConfigFromJson(const Json& j, const std::string& where = "model");

// The metric history as stored in checkpoints, packages and the worker's metrics.json.
Json HistoryToJson(const std::vector<EpochMetrics>& history);
// Throws Json::exception on malformed input (checkpoint readers catch it).
std::vector<EpochMetrics> HistoryFromJson(const Json& j);

}  // namespace idlegrid::models

#endif  // IDLEGRID_MODELS_CONFIG_JSON_H_

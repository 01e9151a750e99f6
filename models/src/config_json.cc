#include "idlegrid/models/config_json.h"

namespace idlegrid::models {

Json ConfigToJson(const ModelConfig& c) {
  return Json{{"name", c.name},
              {"task", c.task == Task::kDenoise ? "denoise" : "segment"},
              {"architecture", c.architecture},
              {"in_channels", c.in_channels},
              {"num_classes", c.num_classes},
              {"base_filters", c.base_filters},
              {"depth", c.depth},
              {"context_slices", c.context_slices},
              {"norm_layer", c.norm_layer},
              {"norm", {{"clip_low", c.norm.clip_low}, {"clip_high", c.norm.clip_high},
                        {"mean", c.norm.mean}, {"std", c.norm.std}}},
              {"patch", {c.patch_z, c.patch_y, c.patch_x}},
              {"batch_size", c.batch_size},
              {"learning_rate", c.learning_rate},
              {"weight_decay", c.weight_decay},
              {"epochs", c.epochs},
              {"steps_per_epoch", c.steps_per_epoch},
              {"class_weights", c.class_weights},
              {"augment", c.augment},
              {"dice_weight", c.dice_weight},
              {"n2n_gamma", c.n2n_gamma},
              {"validation_fraction", c.validation_fraction},
              {"refit_fraction", c.refit_fraction},
              {"class_names", c.class_names}};
}

StatusOr<ModelConfig> ConfigFromJson(const Json& j, const std::string& where) {
  JsonReader r(j, where);
  ModelConfig c;
  c.name = r.String("name", 64, /*allow_empty=*/true);
  c.task = r.Enum("task", {"segment", "denoise"}) == "denoise" ? Task::kDenoise : Task::kSegment;
  c.architecture = r.String("architecture", 32);
  c.in_channels = r.Int("in_channels", 1, 16);
  c.num_classes = r.Int("num_classes", 0, 255);
  c.base_filters = r.Int("base_filters", 1, 1024);
  c.depth = r.Int("depth", 0, 16);
  c.context_slices = r.Int("context_slices", 0, 64);
  c.norm_layer = r.Enum("norm_layer", {"batch", "none"});
  {
    const Json& n = r.Object("norm");
    IDLEGRID_RETURN_IF_ERROR(r.status());
    JsonReader nr(n, r.Path("norm"));
    c.norm.clip_low = nr.Number("clip_low", -1e30, 1e30);
    c.norm.clip_high = nr.Number("clip_high", -1e30, 1e30);
    c.norm.mean = nr.Number("mean", -1e30, 1e30);
    c.norm.std = nr.Number("std", 0, 1e30);
    IDLEGRID_RETURN_IF_ERROR(nr.Finish());
  }
  const Json& patch = r.Array("patch", 3);
  if (r.status().ok() && (patch.size() != 3 || !patch[0].is_number_integer() ||
                          !patch[1].is_number_integer() || !patch[2].is_number_integer())) {
    r.Fail("patch", "must be [z, y, x] integers");
  } else if (r.status().ok()) {
    c.patch_z = patch[0].get<int64_t>();
    c.patch_y = patch[1].get<int64_t>();
    c.patch_x = patch[2].get<int64_t>();
  }
  c.batch_size = r.Int("batch_size", 1, 1024);
  c.learning_rate = r.Number("learning_rate", 0, 1);
  c.weight_decay = r.Number("weight_decay", 0, 1);
  c.epochs = r.Int("epochs", 1, 1000000);
  c.steps_per_epoch = r.Int("steps_per_epoch", 1, 1000000);
  for (const Json& w : r.Array("class_weights", 255)) {
    if (!w.is_number()) {
      r.Fail("class_weights", "must be numbers");
      break;
    }
    c.class_weights.push_back(w.get<double>());
  }
  if (j.is_object() && j.contains("augment") && j["augment"].is_boolean()) {
    c.augment = r.Bool("augment") ? "full" : "none";  // configurations from before the levels
  } else {
    c.augment = r.Enum("augment", {"none", "flips", "rot90", "full"});
  }
  c.dice_weight = r.Has("dice_weight") ? r.Number("dice_weight", 0, 100) : 1.0;
  c.n2n_gamma = r.Has("n2n_gamma") ? r.Number("n2n_gamma", 0, 100) : 2.0;  // older: 2
  c.validation_fraction = r.Number("validation_fraction", 0, 1);
  c.refit_fraction = r.Has("refit_fraction") ? r.Number("refit_fraction", 0, 1) : 0.0;  // older: none
  for (const Json& n : r.Array("class_names", 255)) {
    if (!n.is_string() || n.get_ref<const std::string&>().size() > 64) {
      r.Fail("class_names", "must be strings of at most 64 bytes");
      break;
    }
    c.class_names.push_back(n.get<std::string>());
  }
  IDLEGRID_RETURN_IF_ERROR(r.Finish());
  IDLEGRID_RETURN_IF_ERROR(c.Validate());
  return c;
}

Json HistoryToJson(const std::vector<EpochMetrics>& history) {
  Json out = Json::array();
  for (const EpochMetrics& m : history) {
    out.push_back({{"epoch", m.epoch}, {"train_loss", m.train_loss}, {"dice", m.dice},
                   {"iou", m.iou}, {"mean_dice", m.mean_dice}});
  }
  return out;
}

std::vector<EpochMetrics> HistoryFromJson(const Json& j) {
  std::vector<EpochMetrics> out;
  for (const Json& e : j) {
    EpochMetrics m;
    m.epoch = e.at("epoch").get<int64_t>();
    m.train_loss = e.at("train_loss").get<double>();
    m.dice = e.at("dice").get<std::vector<double>>();
    m.iou = e.at("iou").get<std::vector<double>>();
    m.mean_dice = e.at("mean_dice").get<double>();
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace idlegrid::models

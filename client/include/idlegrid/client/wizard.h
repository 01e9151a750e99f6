// The annotation wizard's flow without a display: open a volume, paint, train candidates on a
// grid (a lab server, or "this computer only": a private LocalGrid), compare their
// predictions on a slice, choose one, correct, retrain from it, apply it to the whole volume,
// export; denoise. The wx pages and the scripted driver (`idlegrid-wizard --script`) are thin
// layers over this class. Every step autosaves the session (session.h).
#ifndef IDLEGRID_CLIENT_WIZARD_H_
#define IDLEGRID_CLIENT_WIZARD_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "idlegrid/client/annotation.h"
#include "idlegrid/client/local_grid.h"
#include "idlegrid/client/session.h"
#include "idlegrid/client/slice_view.h"
#include "idlegrid/models/strategy.h"
#include "idlegrid/shared/api_client.h"

namespace idlegrid::client {

struct WizardOptions {
  std::string session_dir;           // where session.json and labels.tif live
  bool local_grid = true;            // "this computer only"
  std::string bin;                   // folder of idlegrid-node/-worker (local grid)
  int64_t local_nodes = 1, local_threads = 1;
  std::string server, fingerprint, token;  // a lab grid
  // Caps each candidate's (and the denoiser's) training steps (tests, quick looks); 0: the
  // strategy's budget.
  int64_t max_steps_per_candidate = 0;
  // What is being uploaded or downloaded ("the volume", "the labels", ...), bytes done and
  // in all; called on the thread that transfers (not the GUI's), at most a few times a second.
  std::function<void(const std::string& what, int64_t done, int64_t total)> on_transfer;
};

struct Candidate {
  std::string chain, name, architecture;
  double score = -1;      // validation mean Dice on held-out strokes
  double agreement = -1;  // after the round's review: share of reviewed voxels agreeing with the ensemble
  std::string why;        // why it ranks where it does (after the review)
  BlobRef model;
};

// Where to correct after a round: the review stage of a candidates or retrain job scored a
// sample of slices (models/review.h). Plain value.
struct RoundReview {
  std::string job_id;
  std::vector<int64_t> where;                 // reviewed slices, most uncertain first
  std::map<int64_t, double> uncertainty;      // reviewed slice -> mean uncertainty, 0..1
  std::map<std::string, double> agreement;    // chain -> share of voxels agreeing with the ensemble
  std::string map_path;                       // uint8 per voxel, one slice per reviewed slice, in Z order
  // Reads summary["review"] of a job's status; INVALID_ARGUMENT naming the field when malformed.
  static StatusOr<RoundReview> FromJson(const Json& review, const std::string& job_id);
  // The map of reviewed slice z (1 x Y x X), NOT_FOUND for a slice that was not reviewed.
  StatusOr<Volume> MapOf(int64_t z) const;
  // The most uncertain reviewed slice after `z` in the order of `where` (the first one
  // when z was not reviewed); -1 when nothing was.
  int64_t Next(int64_t z) const;
};

using ProgressFn = std::function<void(const Json& job_status)>;

class Wizard {
 public:
  static StatusOr<std::unique_ptr<Wizard>> Create(WizardOptions options);
  ~Wizard();

  // A new session on a volume (TIFF stack or single image, or an HDF5 dataset
  // "file.h5:/path", converted to a TIFF stack in session_dir first, a range of slices at a
  // time); or the saved one in session_dir. Reads the header only: slices are read as they
  // are shown (stack()).
  Status Open(const std::string& image_path);
  // The slow part of Open, for a task thread: an HDF5 dataset becomes a TIFF stack beside the
  // session (StagedPath()), reporting its slices as they are written and stopping with
  // CANCELLED on the cancel flag; the session open now is untouched until Open(StagedPath())
  // takes the stack as its image. Any other path comes back as it is. Thread-safe.
  StatusOr<std::string> Stage(const std::string& spec, const std::function<void(int64_t done, int64_t total)>& progress = {});
  std::string StagedPath() const { return o_.session_dir + "/image.tif.staged"; }
  Status Reopen();
  // Autosave: the session, and the labels when they changed since the last save. Thread-safe.
  Status Save();

  bool is_open() const { return annotation_ != nullptr; }
  Annotation& annotation() { return *annotation_; }
  LazyStack& stack() { return *stack_; }
  Session& session() { return session_; }
  ApiClient& grid() { return *api_; }
  const WizardOptions& options() const { return o_; }

  // Submits the candidates (planned with no parameters from the image and labels so far).
  // `denoise_first`: one job denoises the image, then trains them on the denoised volume;
  // every later job of the session (compare, retrain, apply) reads that volume (ModelInput).
  StatusOr<std::string> TrainCandidates(bool denoise_first = false);
  // The image's noise relative to its intensity range (models::DataFingerprint::NoiseLevel),
  // from a few slices; models::SuggestDenoiseFirst says when denoising first is worth it.
  StatusOr<double> NoiseLevel();
  // What the session's models read: the image, or the denoised volume of the latest
  // candidates job that denoised first.
  StatusOr<BlobRef> ModelInput();
  // When set, waits (Wait, Predict, Retrain) end with CANCELLED once *cancel is true: a
  // window closing does not wait for a job to finish (the grid keeps the job).
  void set_cancel(const std::atomic<bool>* cancel) { cancel_ = cancel; }
  // Waits for a job (bounded), calling `progress` with each new status.
  StatusOr<Json> Wait(const std::string& job_id, int64_t timeout_s, const ProgressFn& progress = {});
  // The last candidates job's models, best first.
  StatusOr<std::vector<Candidate>> Candidates();
  // The latest finished round's review (the candidates or the last retrain), its map fetched
  // once into the session folder. NOT_FOUND when no finished job of the session has one.
  StatusOr<RoundReview> LatestReview();
  // A model's labels for slices [z_begin, z_end) (an inference job on that part only).
  StatusOr<Volume> Predict(const BlobRef& model, int64_t z_begin, int64_t z_end, int64_t timeout_s = 3600);
  // The same for several models at once (their jobs run side by side on the grid).
  StatusOr<std::vector<Volume>> PredictAll(const std::vector<BlobRef>& models, int64_t z_begin, int64_t z_end,
                                           int64_t timeout_s = 3600);
  Status Choose(const Candidate& c);
  // The chosen model's blob: among the outputs of this session's jobs.
  StatusOr<BlobRef> ChosenModel();
  // Fine-tunes the chosen model with the labels as they are now; it becomes the chosen one.
  // = SubmitRetrain, Wait, AdoptModel (the wx wizard follows the job between them).
  StatusOr<std::string> Retrain(int64_t timeout_s = 3600, const ProgressFn& progress = {});
  StatusOr<std::string> SubmitRetrain();
  // The model a finished train job made becomes the chosen one.
  Status AdoptModel(const std::string& job_id);
  // Segments the whole volume with the chosen model; returns the job id.
  StatusOr<std::string> Apply();
  // Writes the applied labels and the chosen model package (either path empty: not that one).
  // Labels: a TIFF stack Fiji reads (a hyperstack for a series), or an HDF5 dataset
  // ("file.h5:/path"; "file.h5" alone: dataset /labels).
  Status Export(const std::string& apply_job, const std::string& labels_path, const std::string& model_pt);
  // Self-supervised denoising of the whole volume (no labels); returns the job id.
  StatusOr<std::string> Denoise();

 private:
  Wizard() = default;
  StatusOr<BlobRef> UploadLabels();
  Status EnsureImageUploaded();
  StatusOr<std::string> SubmitInfer(const BlobRef& model, const std::string& name, const Json& config);
  void Track(const std::string& job_id, const std::string& purpose);
  // The planning fingerprint of the volume (and labels), for this machine's threads.
  StatusOr<models::DataFingerprint> Fingerprint(const Volume* labels);
  // --max-steps: a plan cut to a few steps (tests, quick looks).
  void CapForQuickLook(models::ModelConfig& c) const;

  WizardOptions o_;
  std::unique_ptr<LocalGrid> local_;
  std::unique_ptr<ApiClient> remote_;
  ApiClient* api_ = nullptr;
  Session session_;
  std::unique_ptr<Annotation> annotation_;
  std::unique_ptr<LazyStack> stack_;
  std::mutex save_mu_;
  uint64_t saved_revision_ = ~uint64_t{0};
  BlobRef image_blob_;
  const std::atomic<bool>* cancel_ = nullptr;
  std::mutex transfer_mu_;
  std::string transfer_what_;  // what on_transfer reports as moving
  std::chrono::steady_clock::time_point last_progress_;
  // Uploads `path` as `what` (reported through on_transfer).
  StatusOr<BlobRef> Upload(const std::string& path, const std::string& what);
  void Progress(int64_t done, int64_t total);
};

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_WIZARD_H_

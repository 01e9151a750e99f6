// Writing 8-bit RGB PNG images (previews of slices for the demo, nodes and the wizard).
#ifndef IDLEGRID_SHARED_PNG_H_
#define IDLEGRID_SHARED_PNG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "idlegrid/shared/status.h"
#include "idlegrid/shared/volume.h"

namespace idlegrid {

// `rgb` holds width * height * 3 bytes, row by row. Written atomically.
Status WritePngRgb(const std::string& path, int64_t width, int64_t height, const std::vector<uint8_t>& rgb);

// One slice of a single-channel volume as gray RGB, scaled so that the 0.5th..99.5th
// percentiles span 0..255.
std::vector<uint8_t> GraySlice(const Volume& volume, int64_t z);

// Colours for label values 1..: distinct, readable over gray (0 stays transparent).
void OverlayLabels(const Volume& labels, int64_t z, double alpha, std::vector<uint8_t>* rgb);

}  // namespace idlegrid

#endif  // IDLEGRID_SHARED_PNG_H_

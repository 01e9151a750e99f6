# Finds third-party packages (Debian 12 names in scripts/packages.txt) and wraps those
# without CMake config files in imported targets. Third-party include dirs are SYSTEM so
# our warning flags do not apply to them.

find_package(Threads REQUIRED)

# LibTorch: models/ needs it in every build that has models/.
if(IDLEGRID_MODELS OR IDLEGRID_MODELS_ONLY)
find_package(Torch REQUIRED)
# TorchConfig puts its flags in TORCH_CXX_FLAGS; the imported target already carries them.
if(NOT TARGET idlegrid_torch)
  add_library(idlegrid_torch INTERFACE)
  target_link_libraries(idlegrid_torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(idlegrid_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
endif()
endif()

if(IDLEGRID_MODELS_ONLY)
  # A GPU machine may have nothing but a (CUDA) LibTorch. models/ also needs nlohmann-json,
  # which is header-only (its include folder can be copied over and named with
  # -Dnlohmann_json_DIR or CMAKE_PREFIX_PATH); idlegrid-worker is built when libtiff is there.
  find_package(nlohmann_json 3.9 REQUIRED)
  find_package(TIFF QUIET)
  return()
endif()

find_package(nlohmann_json 3.9 REQUIRED)
find_package(TIFF REQUIRED)
find_package(ZLIB REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(CURL REQUIRED)
find_package(SQLite3 REQUIRED)
# HDF5 volumes (ilastik, h5py, beamlines): the C library and its high-level file images.
find_package(HDF5 REQUIRED COMPONENTS C HL)
find_package(CLI11 QUIET CONFIG)
if(NOT TARGET CLI11::CLI11)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 SYSTEM INTERFACE ${CLI11_INCLUDE_DIR})
endif()

# Debian's cpp-httplib is a compiled library; its users must compile with exactly the
# defines it was built with (they change class layouts), so take them from pkg-config.
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

# BOINC ships only libraries and headers (no CMake or pkg-config files).
find_path(BOINC_INCLUDE_DIR boinc_api.h PATH_SUFFIXES boinc)
find_library(BOINC_API_LIBRARY boinc_api)
find_library(BOINC_LIBRARY boinc)
if(BOINC_INCLUDE_DIR AND BOINC_API_LIBRARY AND BOINC_LIBRARY)
  add_library(idlegrid_boinc INTERFACE)
  target_include_directories(idlegrid_boinc SYSTEM INTERFACE ${BOINC_INCLUDE_DIR})
  target_link_libraries(idlegrid_boinc INTERFACE ${BOINC_API_LIBRARY} ${BOINC_LIBRARY})
endif()

if(IDLEGRID_GUI)
  find_package(wxWidgets 3.2 REQUIRED COMPONENTS core base)
  add_library(idlegrid_wx INTERFACE)
  target_include_directories(idlegrid_wx SYSTEM INTERFACE ${wxWidgets_INCLUDE_DIRS})
  target_compile_definitions(idlegrid_wx INTERFACE ${wxWidgets_DEFINITIONS})
  target_compile_options(idlegrid_wx INTERFACE ${wxWidgets_CXX_FLAGS})
  target_link_libraries(idlegrid_wx INTERFACE ${wxWidgets_LIBRARIES})
endif()

if(IDLEGRID_TESTS)
  find_package(Catch2 2.13 REQUIRED)
  include(Catch)
endif()

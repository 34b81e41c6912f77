#!/usr/bin/env bash
# Generate the ROS 2 `composition_interfaces` service package (what launch_ros imports) from its
# upstream .srv files, for running launch files through the vendored `launch` / `launch_ros`
# sources of ../shared/vendor (see its README). No package registry ships composition_interfaces.
#
# Usage: tools/build_composition_interfaces.sh VENV_DIR PREFIX [SRC_DIR]
#
#   VENV_DIR  a venv set up by `make venv` (ROS 2 Kilted wheels + the rosidl/ament_cmake build
#             wheels that tools/build_tf2_msgs.sh installs)
#   PREFIX    install prefix; may be VENV_DIR itself. Outside the venv, a process that imports the
#             package needs PREFIX/lib on LD_LIBRARY_PATH and PREFIX/lib/pythonX.Y/site-packages on
#             PYTHONPATH (test/launch_fixture.py does it).
#   SRC_DIR   the upstream package folder (default: ../shared/vendor/ros2_rcl_interfaces/
#             composition_interfaces next to the repository)
#
# Idempotent: exits 0 at once when PREFIX already holds the generated Python package.
set -euo pipefail

log() { printf '[build_composition_interfaces] %s\n' "$*" >&2; }
die() { printf '[build_composition_interfaces] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 VENV_DIR PREFIX [SRC_DIR]"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
[[ -d "$1" ]] || die "venv directory '$1' does not exist"
VENV="$(cd "$1" && pwd -P)"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "$PY not found or not executable: '$VENV' is not a Python venv"
mkdir -p "$2"
PREFIX="$(cd "$2" && pwd -P)"
SRC="${3:-$REPO/../shared/vendor/ros2_rcl_interfaces/composition_interfaces}"
[[ -f "$SRC/package.xml" && -d "$SRC/srv" ]] \
  || die "'$SRC' is not the composition_interfaces source folder (package.xml + srv/ expected)"
SRC="$(cd "$SRC" && pwd -P)"

vpy() { env -u AMENT_PREFIX_PATH -u COLCON_PREFIX_PATH -u PYTHONPATH "$PY" "$@"; }
PYVER="$(vpy -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
SITE="$PREFIX/lib/python$PYVER/site-packages"
if [[ -f "$SITE/composition_interfaces/srv/__init__.py" ]]; then
  log "composition_interfaces already generated in $PREFIX: nothing to do"
  exit 0
fi

for dep in rosidl_default_generators ament_cmake rcl_interfaces; do
  [[ -d "$VENV/share/$dep/cmake" ]] \
    || die "$dep (cmake) is not installed in $VENV: run tools/build_tf2_msgs.sh $VENV first (make venv does)"
done
command -v cmake >/dev/null 2>&1 || die "cmake not found; install cmake >= 3.20"
if command -v ninja >/dev/null 2>&1; then GENERATOR=Ninja
elif command -v make >/dev/null 2>&1; then GENERATOR="Unix Makefiles"
else die "neither ninja nor make found"
fi

T0=$SECONDS
BLD="$(mktemp -d "${TMPDIR:-/tmp}/build_composition_interfaces.XXXXXX")"
BUILD_LOG="$BLD/build.log"
OK=0
cleanup() { if ((OK)); then rm -rf "$BLD"; else log "kept build dir for inspection: $BLD"; fi; }
trap cleanup EXIT
run_logged() {
  if ! "$@" >>"$BUILD_LOG" 2>&1; then
    tail -n 40 "$BUILD_LOG" >&2
    die "command failed: $* (full log: $BUILD_LOG)"
  fi
}
# Only this venv's packages: the generators find the type supports through the ament index.
unset COLCON_PREFIX_PATH CMAKE_PREFIX_PATH PYTHONPATH || true
export AMENT_PREFIX_PATH="$VENV"
log "generating composition_interfaces from $SRC into $PREFIX (log: $BUILD_LOG)"
run_logged cmake -S "$SRC" -B "$BLD/build" -G "$GENERATOR" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DBUILD_TESTING=OFF
run_logged cmake --build "$BLD/build" --parallel "$(nproc 2>/dev/null || echo 2)"
run_logged cmake --install "$BLD/build"

[[ -f "$SITE/composition_interfaces/srv/__init__.py" ]] \
  || die "no $SITE/composition_interfaces after install (unexpected install layout)"
env LD_LIBRARY_PATH="$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONPATH="$SITE" \
  "$PY" -c 'from composition_interfaces.srv import LoadNode; LoadNode.Request()' \
  || die "composition_interfaces was installed into $PREFIX but does not import"
OK=1
log "OK: composition_interfaces in $PREFIX ($((SECONDS - T0)) s)"

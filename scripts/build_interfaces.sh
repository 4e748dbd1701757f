#!/usr/bin/env bash
# Build the interface packages in interfaces/ (standard ament_cmake + rosidl packages) with the
# venv's ament_cmake and rosidl wheels, and install them into the venv's prefix beside the ROS
# wheels: Python modules in site-packages, lib*.so in <venv>/lib (which the wheels' start-up hook
# puts on LD_LIBRARY_PATH of every venv python), share/ and the ament index in <venv>/share.
# Incremental: the build tree stays in <venv>/build-interfaces, so a rerun only rebuilds what
# changed. scripts/setup.sh runs it. Usage: scripts/build_interfaces.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${1:-.venv}" && pwd)
PY="$VENV/bin/python"
BUILD="$VENV/build-interfaces"
PKGS="tf2_msgs odd_one_out_msgs"  # dependency order (neither needs the other today)
mkdir -p "$BUILD"
LOG="$BUILD/build.log"
: > "$LOG"
fail() {
  tail -n 40 "$LOG" >&2
  echo "build_interfaces: $1 (full log: $LOG)" >&2
  exit 1
}
for tool in cmake g++ make; do
  command -v "$tool" >/dev/null || { echo "build_interfaces: $tool not found (apt-get install cmake g++ make)" >&2; exit 1; }
done
# The wheels' exported CMake targets name their build machine's Python include dirs: point them here.
"$PY" scripts/fix_wheel_cmake.py "$VENV" >> "$LOG" 2>&1 || fail "could not fix the ROS wheels' CMake exports"
# Only this venv's packages: a sourced ROS installation must not mix into the build.
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
for pkg in $PKGS; do
  echo "== $pkg" >> "$LOG"
  cmake -S "interfaces/$pkg" -B "$BUILD/$pkg" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >> "$LOG" 2>&1 || fail "cmake could not configure $pkg"
  cmake --build "$BUILD/$pkg" -j "$(nproc)" >> "$LOG" 2>&1 || fail "building $pkg failed"
  cmake --install "$BUILD/$pkg" >> "$LOG" 2>&1 || fail "installing $pkg failed"
done
"$PY" -c "from odd_one_out_msgs.msg import Verdict, ObjectVerdict; from tf2_msgs.msg import TFMessage" 2>> "$LOG" ||
  fail "the built messages do not import"

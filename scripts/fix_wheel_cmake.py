"""Point the ROS wheels' CMake exports at this Python's headers (run with the venv's python).

The PyPI ROS 2 wheels were built in a manylinux container, and their exported
`<pkg>__rosidl_generator_py` targets name that machine's include directories
(/opt/python/cp311-cp311/include/python3.11 and its NumPy's include), which do not exist here.
CMake refuses to generate a build that links such a target, so building an interface package
against the wheels fails. This rewrites those paths in <prefix>/share/*/cmake/*.cmake to the
running interpreter's include directory and NumPy's. Idempotent: a file is only rewritten when
it still names a build-machine path. Prints how many files it changed."""
from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

# /opt/python/cp311-cp311/include/python3.11, .../lib/python3.11/site-packages/numpy/_core/include
BUILD_PY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+t?/include/python3\.\d+t?")
BUILD_NP_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+t?/lib/python3\.\d+t?/site-packages/numpy/(?:_core/|core/)?include")


def main(prefix: str) -> int:
    py_include = sysconfig.get_paths()["include"]
    if not (Path(py_include) / "Python.h").is_file():
        print(f"fix_wheel_cmake: no Python.h in {py_include} (install the Python development headers, "
              "e.g. apt-get install python3.11-dev)", file=sys.stderr)
        return 1
    np_include = numpy.get_include()
    changed = 0
    for f in sorted(Path(prefix, "share").glob("*/cmake/*.cmake")):
        text = f.read_text()
        if "/opt/python/" not in text:
            continue
        new = BUILD_NP_INCLUDE.sub(np_include, text)
        new = BUILD_PY_INCLUDE.sub(py_include, new)
        if new != text:
            f.write_text(new)
            changed += 1
    print(changed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))

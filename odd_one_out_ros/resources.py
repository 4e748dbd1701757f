"""Where the package's files are: shipped assets, and the ROS share directory (launch/, calibration/).

Works from a source checkout, a pip (editable) install and a colcon install. No ROS import
beyond ament_index_python, which is optional.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = "odd_one_out_ros"
ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE_SCENE = ASSETS / "toysad8k_sample"  # real ToysAD-8K scene (MIT, see its LICENSE-source)
DEFAULT_CHECKPOINT = ASSETS / "checkpoints" / "cpu_default.pt"  # the shipped trained model (cpu config)


def share_dir() -> Path:
    """The package's share directory (holds package.xml, launch/, calibration/)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    source_root = Path(__file__).resolve().parent.parent  # a source checkout
    if (source_root / "package.xml").is_file():
        return source_root
    raise FileNotFoundError(f"cannot find the share directory of {PACKAGE}: not in the ament index "
                            "(is AMENT_PREFIX_PATH set?) and not a source checkout")

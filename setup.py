"""ament_python package: `colcon build` in a ROS 2 workspace, or `pip install -e .` in a venv."""
from glob import glob

from setuptools import find_packages, setup

package_name = "odd_one_out_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*"]),
    package_data={package_name: ["assets/**/*"]},
    include_package_data=False,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", sorted(glob("launch/*"))),
        ("share/" + package_name + "/calibration", sorted(glob("calibration/*"))),
        ("share/" + package_name + "/config", sorted(glob("config/*"))),
        ("share/" + package_name + "/rviz", sorted(glob("rviz/*"))),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="odd_one_out_ros developers",
    maintainer_email="odd-one-out@example.invalid",
    description="Multi-view 3D anomaly detection by comparing objects with their neighbours (ROS 2)",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "odd-one-out = odd_one_out_ros.cli:main",
            "camera_info_publisher = odd_one_out_ros.ros.camera_info_publisher:main",
            "scene_player = odd_one_out_ros.ros.scene_player:main",
            "detector = odd_one_out_ros.ros.detector:main",
            "sim_rig = odd_one_out_ros.ros.sim_rig:main",
        ],
    },
)

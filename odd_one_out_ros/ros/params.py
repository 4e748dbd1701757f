"""Node parameters as frozen dataclasses: each field is one ROS parameter (read-only unless `dynamic`), its
default, description, range and choices written once (`ros_param`); `declare_params(node, Params)` declares them all
on a node, checks the choices and returns the filled dataclass. Every node of the package reads its parameters this way.

Ranges and types are enforced by rclpy at declaration (a value outside raises ParameterException: exit 2 with one
line, node_main.run_node); choices are checked when the values are read (`read_params`, a ValueError naming the
parameter). A lifecycle node declares in __init__ (read=False) and reads on configure.
"""
from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..inspection.poses import POSE_SOURCES

__all__ = ["ros_param", "declare_params", "read_params", "param_descriptor", "keep_parameter", "DetectorParams",
           "QOS_CHOICES", "MODES", "TRIGGERS"]

MODES = ("rig", "moving")
TRIGGERS = ("continuous", "service")
QOS_CHOICES = ("reliable", "sensor_data", "system_default")


@dataclass(frozen=True)
class _Meta:
    description: str
    lo: float | int | None = None
    hi: float | int | None = None
    choices: tuple = ()
    ros_type: Parameter.Type | None = None  # for parameters without a default (unset = None)
    dynamic: bool = False  # settable while the node runs (the node applies it: e.g. DetectorNode._apply)


def ros_param(default: Any, description: str, lo=None, hi=None, choices: tuple = (),
              ros_type: Parameter.Type | None = None, dynamic: bool = False):
    """A dataclass field that is a ROS parameter, read-only unless dynamic. Integer ranges when lo and hi are ints,
    float otherwise.
    List parameters take a tuple default (frozen dataclass); an unset array parameter: default None + ros_type."""
    if choices and default not in choices:
        raise ValueError(f"default {default!r} is not one of its choices {choices}")
    return field(default=default, metadata={"ros": _Meta(description, lo, hi, tuple(choices), ros_type, dynamic)})


def param_descriptor(text: str, lo=None, hi=None, choices: tuple = (), dynamic: bool = False) -> ParameterDescriptor:
    """A parameter's descriptor: its description (saying when it is read-only), allowed choices, and integer or
    float range."""
    d = ParameterDescriptor(description=text if dynamic else f"{text} (read-only: set it at start-up)",
                            read_only=not dynamic)
    if choices:
        d.additional_constraints = "one of: " + ", ".join(choices)
    if isinstance(lo, int) and isinstance(hi, int):
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    elif lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi))]
    return d


def declare_params(node: Node, cls: type, defaults: dict[str, Any] | None = None, read: bool = True):
    """Declare every field of the dataclass `cls` as a parameter of `node`; returns cls(**values) (`read_params`),
    or None with read=False (a lifecycle node reads them on configure).

    defaults: run-time defaults for some fields (e.g. a path built from the node's name). rclpy raises
    ParameterException for a value outside its range or of the wrong type."""
    for f in fields(cls):
        meta: _Meta = f.metadata["ros"]
        default = (defaults or {}).get(f.name, f.default if f.default is not MISSING else None)
        if default is None:
            initial = meta.ros_type
        else:
            initial = list(default) if isinstance(default, tuple) else default
        node.declare_parameter(f.name, initial, param_descriptor(meta.description, meta.lo, meta.hi, meta.choices,
                                                                 meta.dynamic))
    return read_params(node, cls) if read else None


def read_params(node: Node, cls: type):
    """The declared values of the fields of `cls` as cls(**values). Raises ValueError naming the parameter when a
    value is not one of its choices."""
    values = {}
    for f in fields(cls):
        meta: _Meta = f.metadata["ros"]
        value = node.get_parameter_or(f.name).value  # None for an unset parameter without a default
        if meta.choices and value not in meta.choices:
            raise ValueError(f"parameter {f.name} must be one of {', '.join(meta.choices)}; got {value!r}")
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def keep_parameter(node: Node, name: str, why: str) -> None:
    """Refuse run-time changes of a parameter the node did not declare read-only (e.g. rclpy's use_sim_time), as
    rclpy refuses the read-only ones: `ros2 param set` gets successful=false with the reason."""
    start = node.get_parameter(name).value

    def check(params):
        for prm in params:
            if prm.name == name and prm.value != start:
                return SetParametersResult(successful=False, reason=f"{name} cannot change while {node.get_name()} "
                                           f"runs ({why}); restart it with -p {name}:=...")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)


def default_audit_log(node_name: str) -> str:
    """$ROS_HOME/odd_one_out_ros/audit/<namespace>/<name>.jsonl: detectors with different names or namespaces
    get their own logs (a log has one writer: a second detector on the same file is refused at start)."""
    home = Path(os.environ.get("ROS_HOME", "~/.ros"))
    return str(home / "odd_one_out_ros" / "audit" / f"{node_name.strip('/')}.jsonl")


@dataclass(frozen=True)
class DetectorParams:
    """The detector's parameters (docs/ros.md lists them with the topics). Times in seconds, angles in degrees."""

    autostart: bool = ros_param(True, "configure and activate at start-up; false: stay unconfigured until the "
                                      "lifecycle transitions are requested (launch/detect.launch.py, ros2 lifecycle)")
    checkpoint: str = ros_param("", "model checkpoint (.pt); empty = the shipped "
                                    "odd_one_out_ros/assets/checkpoints/cpu_default.pt")
    device: str = ros_param("cpu", "torch device: cpu, cuda or cuda:N")
    anomaly_threshold: float = ros_param(-1.0, "score above which an object is anomalous; -1 = the checkpoint's "
                                               "own threshold; settable while running (ros2 param set), from the "
                                               "next inspection on (odd-one-out tune-threshold)", -1.0, 1.0,
                                         dynamic=True)
    cameras: tuple | None = ros_param(None, "camera names; topics are <camera_prefix>/<name>/{image_raw,camera_info,"
                                            "pose}; unset with pose_source static = every camera of the rig file",
                                      ros_type=Parameter.Type.STRING_ARRAY)
    camera_prefix: str = ros_param("cameras", "topic prefix of the cameras")
    image_qos: str = ros_param("reliable", "QoS preset of the image, camera_info and pose subscriptions (each "
                                           "policy can be overridden: qos_overrides.<topic>.subscription.*)",
                               choices=QOS_CHOICES)
    pose_source: str = ros_param("static", "where camera poses come from", choices=POSE_SOURCES)
    rig_file: str = ros_param("", "rig extrinsics YAML for pose_source static; empty = the package's "
                                  "calibration/rig.yaml")
    board_file: str = ros_param("", "AprilTag board YAML for pose_source apriltag; empty = "
                                    "calibration/tray_board_12tags.yaml")
    rig_check: bool = ros_param(True, "static: check each camera's rig-file pose against the AprilTag board "
                                      "(board_file) where its tags are in view, once per rig_check_period; a "
                                      "camera off by more than rig_tolerance_* (moved, or cables swapped) gives "
                                      "no view, named, until a check finds it right")
    rig_check_period: float = ros_param(5.0, "rig_check: seconds between two checks of one camera, run in the "
                                             "background after its first view (0 = every view, before it is used)",
                                        0.0, 3600.0)
    rig_tolerance_m: float = ros_param(0.02, "rig_check: largest camera-centre offset (m)", 0.0001, 1.0)
    rig_tolerance_deg: float = ros_param(2.0, "rig_check: largest rotation offset (degrees)", 0.01, 180.0)
    max_reprojection_error_px: float = ros_param(2.0, "apriltag: views whose board pose has a larger RMS "
                                                      "reprojection error are dropped", 0.01, 50.0)
    min_tags: int = ros_param(2, "apriltag: board tags needed for a pose", 1, 1000)
    mode: str = ros_param("rig", "rig: one synchronised image per camera; moving: views collected over time",
                          choices=MODES)
    sync_slop: float = ros_param(0.05, "seconds between the stamps of one rig set, and between an image and its "
                                       "pose message", 0.0, 10.0)
    min_views: int = ros_param(2, "rig: inspect a set when at least this many of its cameras give a usable view "
                                  "(the others are named in the report)", 1, 1000)
    set_timeout: float = ros_param(0.5, "rig: seconds a set waits for a late camera before it is inspected "
                                        "without it", 0.01, 60.0)
    camera_timeout: float = ros_param(3.0, "a camera with no frame passing the arrival checks for this long (or "
                                           "whose latest view failed) is out: rig sets stop waiting for it, "
                                           "diagnostics WARN (ERROR below min_views)", 0.1, 3600.0)
    max_clock_skew: float = ros_param(10.0, "frames stamped further than this from the node's clock are dropped "
                                            "and reported (clock_skew); 0 = no check", 0.0, 1e9)
    views_required: int = ros_param(5, "moving: views per inspection", 1, 1000)
    min_view_angle_deg: float = ros_param(20.0, "moving: least angle between any two views, seen from the world "
                                                "origin", 0.0, 180.0)
    max_view_age: float = ros_param(30.0, "moving: views stamped longer ago than this (node clock) are discarded",
                                    0.01, 86400.0)
    trigger: str = ros_param("continuous", "continuous: inspect every complete set; service: only on a call of "
                                           "~/inspect", choices=TRIGGERS)
    inspect_timeout: float = ros_param(60.0, "seconds a call of ~/inspect waits for its result", 0.1, 3600.0)
    min_objects: int = ros_param(3, "fewer objects than this on the tray: the verdict is cannot_compare (never a "
                                    "pass): an odd one out needs neighbours to be compared with; 0 = no check",
                                 0, 1000)
    max_waiting_calls: int = ros_param(8, "~/inspect calls that may wait at once (all answered by the next "
                                          "inspection); more are refused at once with the reason", 1, 64)
    frame_id: str = ros_param("world", "world (board) frame of poses and results")
    target_frame: str = ros_param("", "the frame ~/verdict, ~/anomalies and ~/detections_3d are given in (e.g. the "
                                      "arm's base), by the latest frame_id -> target_frame transform on /tf or "
                                      "/tf_static; none yet: the verdict is cannot_inspect; empty = frame_id")
    queue_size: int = ros_param(1, "complete view sets waiting for the model; when full the oldest is dropped",
                                1, 100)
    audit_log: str = ros_param("", "JSONL file every inspection is appended to (fsynced); empty = no audit log; "
                                   "one detector per file; default $ROS_HOME/odd_one_out_ros/audit/<node>.jsonl")
    record_views_dir: str = ros_param("", "folder for one mcap view bag per inspection (odd-one-out replay); "
                                          "empty = off")
    overlay_max_views: int = ros_param(6, "views drawn in ~/overlay (0 = no overlay)", 0, 100)
    diagnostics_period: float = ros_param(1.0, "seconds between /diagnostics messages", 0.05, 3600.0)
    error_log_period: float = ros_param(30.0, "a camera's repeated error (same kind and message) is logged again at "
                                              "most this often, with the count since its last line", 0.1, 1e6)

"""The interface packages in interfaces/ (odd_one_out_msgs, and tf2_msgs/TFMessage, which no registry here ships),
as `make setup` builds them into the venv and as colcon builds them in a ROS 2 workspace: their fields and constants,
a Verdict and a TFMessage from another process received over DDS (loopback, own ROS_DOMAIN_ID), and the type hash
that makes our tf2_msgs/TFMessage interoperate with upstream's.

Run as a script (`python tests/test_interfaces.py publish SPEC`), this file is that other process."""
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# tf2_msgs/msg/TFMessage's type hash in ROS 2 (`ros2 topic info -v /tf`): the same definition gives the same hash
UPSTREAM_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"

VERDICT_FIELDS = {
    "header": "std_msgs/Header", "inspection_id": "uint64", "status": "uint8", "reason": "string",
    "anomaly_detected": "boolean", "threshold": "float", "cameras_used": "sequence<string>",
    "cameras_rejected": "sequence<string>", "objects": "sequence<odd_one_out_msgs/ObjectVerdict>",
}
OBJECT_FIELDS = {
    "id": "string", "index": "uint32", "pose": "geometry_msgs/Pose", "size": "geometry_msgs/Vector3",
    "anomaly_score": "float", "box_score": "float", "anomalous": "boolean", "label": "string",
}

# What the publisher process sends (float32 fields hold values that float32 represents exactly, so == holds)
SPEC = {
    "verdict": {"frame": "board", "stamp": [1765000000, 250000000], "inspection_id": 12, "threshold": 0.5,
                "cameras_used": ["cam_left", "cam_right"], "cameras_rejected": ["cam_top: too dark"],
                "objects": [{"index": 3, "xyz": [0.1, -0.05, 0.02], "yaw": 0.7, "size": [0.04, 0.03, 0.02],
                             "anomaly_score": 0.875, "box_score": 0.96875},
                            {"index": 0, "xyz": [-0.08, 0.04, 0.015], "yaw": -1.2, "size": [0.05, 0.05, 0.03],
                             "anomaly_score": 0.125, "box_score": 0.75}]},
    "tf": [["world", "board", [0.3, 0.0, 0.01]], ["board", "cam_left", [0.0, -0.2, 0.4]]],
}


def build_messages(spec: dict):
    """(Verdict, TFMessage) from SPEC, the same in the publisher process and in the test."""
    import math

    from geometry_msgs.msg import TransformStamped
    from odd_one_out_msgs.msg import ObjectVerdict, Verdict
    from tf2_msgs.msg import TFMessage

    s = spec["verdict"]
    v = Verdict(inspection_id=s["inspection_id"], status=Verdict.STATUS_OK, threshold=s["threshold"],
                cameras_used=s["cameras_used"], cameras_rejected=s["cameras_rejected"])
    v.header.frame_id = s["frame"]
    v.header.stamp.sec, v.header.stamp.nanosec = s["stamp"]
    for o in s["objects"]:
        ov = ObjectVerdict(id=f"{s['inspection_id']}/{o['index']}", index=o["index"], anomaly_score=o["anomaly_score"],
                           box_score=o["box_score"], anomalous=o["anomaly_score"] >= s["threshold"])
        ov.label = "anomalous" if ov.anomalous else "normal"
        ov.pose.position.x, ov.pose.position.y, ov.pose.position.z = o["xyz"]
        ov.pose.orientation.z, ov.pose.orientation.w = math.sin(o["yaw"] / 2), math.cos(o["yaw"] / 2)
        ov.size.x, ov.size.y, ov.size.z = o["size"]
        v.objects.append(ov)
    v.anomaly_detected = any(o.anomalous for o in v.objects)
    tf = TFMessage()
    for parent, child, xyz in spec["tf"]:
        t = TransformStamped(child_frame_id=child)
        t.header.frame_id = parent
        t.header.stamp = v.header.stamp
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = xyz
        tf.transforms.append(t)
    return v, tf


def publish(spec: dict) -> None:
    """The publisher process: the verdict once (latched), the transforms every 0.1 s, until stdin closes."""
    import rclpy
    from odd_one_out_msgs.msg import Verdict
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    node = rclpy.create_node("interfaces_publisher")
    verdict_pub = node.create_publisher(Verdict, "/odd_one_out/verdict",
                                        QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    tf_pub = node.create_publisher(TFMessage, "/tf", 10)
    verdict, tf = build_messages(spec)
    verdict_pub.publish(verdict)
    print("published", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not select.select([sys.stdin], [], [], 0.1)[0]:
        tf_pub.publish(tf)
    node.destroy_node()
    rclpy.shutdown()


def test_messages_have_the_fields_constants_and_types():
    from odd_one_out_msgs.msg import ObjectVerdict, Verdict
    from tf2_msgs.msg import TFMessage

    assert Verdict.get_fields_and_field_types() == VERDICT_FIELDS
    assert ObjectVerdict.get_fields_and_field_types() == OBJECT_FIELDS
    assert TFMessage.get_fields_and_field_types() == {"transforms": "sequence<geometry_msgs/TransformStamped>"}
    assert (Verdict.STATUS_OK, Verdict.STATUS_CANNOT_INSPECT, Verdict.STATUS_CANNOT_COMPARE) == (0, 1, 2)
    v = Verdict()
    assert (v.status, v.reason, v.anomaly_detected, list(v.objects), list(v.cameras_used)) == (0, "", False, [], [])
    o = ObjectVerdict()
    assert (o.pose.orientation.w, o.size.x, o.anomaly_score, o.label) == (1.0, 0.0, 0.0, "")
    # the generated setters check types and ranges (when asked to: check_fields or ROS_PYTHON_CHECK_FIELDS=1)
    v, o = Verdict(check_fields=True), ObjectVerdict(check_fields=True)
    for msg, field, bad in ((v, "status", 256), (v, "inspection_id", -1), (v, "threshold", "0.5"),
                            (v, "cameras_used", "cam"), (v, "objects", [o.pose]), (o, "index", 2 ** 32),
                            (o, "anomalous", 1), (o, "pose", o.size),
                            (TFMessage(check_fields=True), "transforms", [o.pose])):
        with pytest.raises(AssertionError):
            setattr(msg, field, bad)
    v.status = Verdict.STATUS_CANNOT_COMPARE
    v.inspection_id = 2 ** 64 - 1
    assert (v.status, v.inspection_id) == (2, 2 ** 64 - 1)


def test_serialized_round_trip_and_the_upstream_tf_type_hash():
    from odd_one_out_msgs.msg import Verdict
    from rclpy.serialization import deserialize_message, serialize_message
    from tf2_msgs.msg import TFMessage

    verdict, tf = build_messages(SPEC)
    assert deserialize_message(serialize_message(verdict), Verdict) == verdict
    assert deserialize_message(serialize_message(tf), TFMessage) == tf
    share = Path(sys.prefix) / "share"
    desc = json.loads((share / "tf2_msgs" / "msg" / "TFMessage.json").read_text())
    assert desc["type_hashes"][0] == {"type_name": "tf2_msgs/msg/TFMessage", "hash_string": UPSTREAM_TFMESSAGE_HASH}
    for pkg in ("odd_one_out_msgs", "tf2_msgs"):  # the ament index knows them as interface packages
        assert (share / "ament_index" / "resource_index" / "rosidl_interfaces" / pkg).is_file()


@pytest.mark.timeout(120)
def test_verdict_and_tf_from_another_process_arrive(ros_domain):
    import rclpy
    from odd_one_out_msgs.msg import Verdict
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from tf2_msgs.msg import TFMessage

    ctx = Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    node = rclpy.create_node("interfaces_probe", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    got = {"verdict": [], "tf": []}
    node.create_subscription(Verdict, "/odd_one_out/verdict", got["verdict"].append,
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node.create_subscription(TFMessage, "/tf", got["tf"].append, 10)
    pub = subprocess.Popen([sys.executable, __file__, "publish", json.dumps(SPEC)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (got["verdict"] and got["tf"]) and time.monotonic() < deadline and pub.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        hashes = {str(i.topic_type_hash) for i in node.get_publishers_info_by_topic("/tf")}
    finally:
        out = pub.communicate(input="stop\n", timeout=30)[0]
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert pub.returncode == 0, out
    assert got["verdict"] and got["tf"], f"received {({k: len(v) for k, v in got.items()})}; publisher: {out}"
    verdict, tf = build_messages(SPEC)
    assert got["verdict"][0] == verdict and got["tf"][0] == tf
    assert [o.id for o in got["verdict"][0].objects] == ["12/3", "12/0"]
    assert [o.label for o in got["verdict"][0].objects] == ["anomalous", "normal"]
    assert hashes == {UPSTREAM_TFMESSAGE_HASH}


def _colcon_has(verb: str) -> bool:
    return shutil.which("colcon", path="/usr/bin:/bin") is not None and subprocess.run(
        ["colcon", verb, "--help"], env={"PATH": "/usr/bin:/bin"}, capture_output=True).returncode == 0


@pytest.mark.skipif(not (_colcon_has("list") and shutil.which("cmake")),
                    reason="needs Debian's colcon with `colcon list` and cmake (make setup installs them)")
@pytest.mark.timeout(600)
def test_colcon_builds_the_interface_packages_in_a_workspace(tmp_path):
    """The repo cloned into a workspace's src/: colcon does not look below a package (the repo root is one), so the
    interface packages are found with --base-paths; built by Debian's colcon against the venv's ROS wheels (the
    underlay), their install trees are complete and the venv's rclpy uses them."""
    ws = tmp_path / "ws"
    shutil.copytree(ROOT, ws / "src" / "odd_one_out_ros",
                    ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "runs", "data",
                                                  "__pycache__", "*.egg-info", ".ruff_cache"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update(PATH="/usr/bin:/bin", AMENT_PREFIX_PATH=sys.prefix, CMAKE_PREFIX_PATH=sys.prefix)
    base_paths = ["--base-paths", "src", "src/odd_one_out_ros/interfaces"]

    def colcon(*args, timeout=60):
        r = subprocess.run(["colcon", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout

    assert colcon("list", "--names-only").split() == ["odd_one_out_ros"]  # the default search stops at the root
    assert sorted(colcon("list", "--names-only", *base_paths).split()) == [
        "odd_one_out_msgs", "odd_one_out_ros", "tf2_msgs"]
    # with the vision_msgs fixture (tests/fixtures): the detector's ~/detections_3d is tested against it below
    colcon("build", *base_paths, "src/odd_one_out_ros/tests/fixtures", "--packages-skip", "odd_one_out_ros",
           "--event-handlers", "console_direct-",
           "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF", timeout=540)

    inst = ws / "install"
    site = {pkg: next((inst / pkg).glob("lib/python3*/site-packages")) for pkg in ("odd_one_out_msgs", "tf2_msgs")}
    for pkg, msgs in (("odd_one_out_msgs", ("Verdict", "ObjectVerdict")), ("tf2_msgs", ("TFMessage",))):
        share = inst / pkg / "share"
        for m in msgs:
            assert (share / pkg / "msg" / f"{m}.msg").is_file() and (share / pkg / "msg" / f"{m}.idl").is_file()
        assert (share / pkg / "cmake" / f"{pkg}Config.cmake").is_file()  # find_package() works for C++ users
        for index in ("packages", "rosidl_interfaces"):
            assert (share / "ament_index" / "resource_index" / index / pkg).is_file()
        for ts in ("c", "cpp", "fastrtps_c", "fastrtps_cpp", "introspection_c", "introspection_cpp"):
            assert (inst / pkg / "lib" / f"lib{pkg}__rosidl_typesupport_{ts}.so").is_file()
    tf_desc = json.loads((inst / "tf2_msgs" / "share" / "tf2_msgs" / "msg" / "TFMessage.json").read_text())
    assert tf_desc["type_hashes"][0]["hash_string"] == UPSTREAM_TFMESSAGE_HASH

    # the venv's python with the install trees first (as `source install/setup.bash` would put them)
    prefixes = [str(inst / pkg) for pkg in site]
    run_env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in site.values()),
                   LD_LIBRARY_PATH=os.pathsep.join([p + "/lib" for p in prefixes] + [os.environ["LD_LIBRARY_PATH"]]),
                   AMENT_PREFIX_PATH=os.pathsep.join(prefixes + [sys.prefix]))
    code = """
import json, odd_one_out_msgs, tf2_msgs, rclpy
from odd_one_out_msgs.msg import Verdict
from tf2_msgs.msg import TFMessage
from rclpy.serialization import deserialize_message, serialize_message
v = Verdict(inspection_id=7, status=Verdict.STATUS_CANNOT_INSPECT, reason="no views")
assert deserialize_message(serialize_message(v), Verdict) == v
rclpy.init(domain_id=%d)
node = rclpy.create_node("colcon_built")
node.create_publisher(Verdict, "verdict", 1), node.create_publisher(TFMessage, "tf", 1)
libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "_msgs__rosidl_typesupport_fastrtps_c" in line})
print(json.dumps({"modules": [odd_one_out_msgs.__file__, tf2_msgs.__file__], "libs": libs}))
""" % (20 + os.getpid() % 80)
    r = subprocess.run([sys.executable, "-c", code], env=run_env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert all(str(inst) in m for m in loaded["modules"]), loaded
    ours = [lib for lib in loaded["libs"] if "/libodd_one_out_msgs__" in lib or "/libtf2_msgs__" in lib]
    assert len(ours) == 2 and all(lib.startswith(str(inst)) for lib in ours), loaded

    # a workspace that has vision_msgs: the detector publishes ~/detections_3d (the test is skipped without it)
    vision = inst / "vision_msgs"
    env3d = dict(run_env, PYTHONPATH=os.pathsep.join([run_env["PYTHONPATH"],
                                                      str(next(vision.glob("lib/python3*/site-packages")))]),
                 LD_LIBRARY_PATH=f"{vision}/lib{os.pathsep}{run_env['LD_LIBRARY_PATH']}",
                 AMENT_PREFIX_PATH=f"{vision}{os.pathsep}{run_env['AMENT_PREFIX_PATH']}")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        "tests/test_reject_contract.py", "-k", "detections_3d"], env=env3d, cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


if __name__ == "__main__" and sys.argv[1:2] == ["publish"]:
    publish(json.loads(sys.argv[2]))

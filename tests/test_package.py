"""The package as users get it: colcon build in a ROS 2 workspace, launch wiring, CLI, purity."""
import ast
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import odd_one_out_ros
from odd_one_out_ros.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def console_scripts() -> dict[str, str]:
    """name -> module of setup.py's console_scripts."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    entries = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and re.match(r"^[\w-]+ = [\w.]+:\w+$", n.value)]
    return {e.split(" = ")[0]: e.split(" = ")[1].split(":")[0] for e in entries}


@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon not installed (make setup installs it)")
def test_colcon_build_installs_executables_launch_and_calibration(tmp_path):
    src = tmp_path / "ws" / "src" / "odd_one_out_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "runs",
                                                              "data", "__pycache__", "*.egg-info"))
    ws = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = "/usr/bin:/bin"  # Debian's colcon with Debian's python, as in a ROS workspace
    r = subprocess.run(["colcon", "build", "--event-handlers", "console_direct-"], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    inst = ws / "install" / "odd_one_out_ros"
    for exe in console_scripts():
        path = inst / "lib" / "odd_one_out_ros" / exe
        assert path.is_file() and os.access(path, os.X_OK), f"{exe} not installed where `ros2 run` looks"
    share = inst / "share" / "odd_one_out_ros"
    assert (inst / "share" / "ament_index" / "resource_index" / "packages" / "odd_one_out_ros").is_file()
    assert (share / "package.xml").is_file()
    for d in ("launch", "calibration", "config", "rviz"):
        shipped = sorted(p.name for p in (ROOT / d).iterdir() if p.is_file())
        assert shipped and sorted(p.name for p in (share / d).iterdir()) == shipped
    site = next(inst.glob("lib/python3*/site-packages"))
    assert (site / "odd_one_out_ros" / "assets" / "toysad8k_sample" / "scene3d.metadata.json").is_file()
    # the installed copy runs (with the venv's libraries) and finds its share dir through the ament index
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(inst))
    r = subprocess.run([sys.executable, str(inst / "lib" / "odd_one_out_ros" / "odd-one-out"), "info", "--json"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f'"share_dir": "{share}"' in r.stdout
    where = subprocess.run([sys.executable, "-c", "import odd_one_out_ros; print(odd_one_out_ros.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True).stdout
    assert str(site) in where


# executables of other packages that launch files may start (not checked beyond their name)
EXTERNAL_EXECUTABLES = {("rviz2", "rviz2")}


def launch_nodes(path: Path):
    """(package, executable, node name or None, parameter names) of every Node(...) or LifecycleNode(...) in a
    launch file."""
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("Node", "LifecycleNode"):
            kw = {k.arg: k.value for k in call.keywords}
            params = set()
            for d in ast.walk(kw.get("parameters", ast.List(elts=[]))):
                if isinstance(d, ast.Dict):
                    params |= {k.value for k in d.keys if isinstance(k, ast.Constant)}
            name = kw["name"].value if isinstance(kw.get("name"), ast.Constant) else None
            yield kw["package"].value, kw["executable"].value, name, params


def declared_parameters(module: str) -> set[str]:
    """Parameters a node declares: the fields of the dataclass it passes to declare_params (ros/params.py)."""
    src = (ROOT / (module.replace(".", "/") + ".py")).read_text()
    names = set(re.findall(r'declare_parameter\(\s*"(\w+)"', src))
    for cls in re.findall(r"declare_params\(self, (\w+)", src):
        for f in (ROOT / "odd_one_out_ros" / "ros").glob("*.py"):
            m = re.search(rf"\nclass {cls}\b.*?(?=\n(?:class |def |@)|\Z)", f.read_text(), re.S)
            if m:
                names |= set(re.findall(r"^    (\w+): [^=\n]+= ros_param\(", m.group(0), re.M))
    return names


def test_launch_files_name_real_executables_files_and_parameters():
    import yaml

    scripts = console_scripts()
    launch_files = sorted((ROOT / "launch").glob("*.launch.py"))
    assert launch_files
    for lf in launch_files:
        compile(lf.read_text(), str(lf), "exec")
        nodes = list(launch_nodes(lf))
        assert nodes, f"{lf.name} starts no node"
        ours = {}
        for package, exe, name, params in nodes:
            if (package, exe) in EXTERNAL_EXECUTABLES:
                continue
            assert package == "odd_one_out_ros" and exe in scripts, (lf.name, exe)
            declared = declared_parameters(scripts[exe])
            assert params <= declared, f"{lf.name}: {exe} does not declare {params - declared}"
            ours[name or exe] = declared
        for name in re.findall(r'"([\w.-]+\.(?:yaml|rviz))"', lf.read_text()):
            found = list(ROOT.glob(f"*/{name}"))
            assert found, f"{lf.name} names missing file {name}"
            doc = yaml.safe_load(found[0].read_text()) if name.endswith(".yaml") else None
            # a ROS 2 params file: every node section names a node of this launch file, every key is declared
            for node, section in (doc.items() if isinstance(doc, dict) else ()):
                if isinstance(section, dict) and "ros__parameters" in section:
                    assert node in ours, f"{name}: section {node!r} is no node of {lf.name} ({sorted(ours)})"
                    keys = set(section["ros__parameters"])
                    assert keys <= ours[node], f"{name}: {node} does not declare {keys - ours[node]}"


def test_launch_file_drives_the_detector_lifecycle():
    """detect.launch.py starts the detector as a LifecycleNode with autostart false, requests configure, and
    activate on the transition configuring -> inactive (launch_ros events; `launch` is not obtainable here)."""
    tree = ast.parse((ROOT / "launch" / "detect.launch.py").read_text())
    calls = [c for c in ast.walk(tree) if isinstance(c, ast.Call)]

    def name(c):
        return getattr(c.func, "id", None) or getattr(c.func, "attr", None)

    def kwargs(c):
        return {k.arg: k.value for k in c.keywords}

    det = [c for c in calls if name(c) == "LifecycleNode"]
    assert len(det) == 1 and ast.literal_eval(kwargs(det[0])["executable"]) == "detector"
    assert "namespace" in kwargs(det[0])  # required by older launch_ros (Humble)
    params = kwargs(det[0])["parameters"]
    assert any(isinstance(d, ast.Dict) and {ast.literal_eval(k): ast.literal_eval(v) for k, v in
                                            zip(d.keys, d.values)}.get("autostart") is False for d in params.elts)
    var = next(t.id for a in ast.walk(tree) if isinstance(a, ast.Assign) and a.value is det[0] for t in a.targets)
    transitions = []
    for c in calls:
        if name(c) == "ChangeState":
            kw = kwargs(c)
            matcher = kw["lifecycle_node_matcher"]
            assert name(matcher) == "matches_action" and matcher.args[0].id == var
            transitions.append(kw["transition_id"].attr)
    assert sorted(transitions) == ["TRANSITION_ACTIVATE", "TRANSITION_CONFIGURE"]
    handler = next(c for c in calls if name(c) == "OnStateTransition")
    kw = kwargs(handler)
    assert kw["target_lifecycle_node"].id == var
    assert (ast.literal_eval(kw["start_state"]), ast.literal_eval(kw["goal_state"])) == ("configuring", "inactive")
    assert "TRANSITION_ACTIVATE" in ast.dump(kw["entities"])


def test_every_subcommand_has_help():
    for name in SUBCOMMANDS:
        r = subprocess.run([str(BIN / "odd-one-out"), name, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage: odd-one-out " + name in r.stdout, r.stderr


def test_camera_info_command(tmp_path):
    r = subprocess.run([str(BIN / "odd-one-out"), "camera-info", str(ROOT / "calibration" / "toysad_camera.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "hfov_deg" in r.stdout and "61.9" in r.stdout  # 2 atan(128 / 213.33)
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: 1\n")
    r = subprocess.run([str(BIN / "odd-one-out"), "camera-info", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_pure_modules_never_import_rclpy():
    pure = [m.name for m in pkgutil.walk_packages(odd_one_out_ros.__path__, "odd_one_out_ros.")
            if not m.name.startswith(("odd_one_out_ros.ros", "odd_one_out_ros.commands"))]
    assert "odd_one_out_ros.geometry.camera" in pure
    code = f"import importlib, sys\nfor m in {pure!r}: importlib.import_module(m)\n" \
           "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'rcl_interfaces')]\n" \
           "assert not bad, bad"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _module_imports() -> dict[str, set[str]]:
    """The package's modules -> the package modules each imports (at module level or inside functions)."""
    root = ROOT / "odd_one_out_ros"
    files = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
             for f in root.rglob("*.py")}
    graph = {}
    for name, f in files.items():
        pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found |= {target} | {f"{target}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_module_imports_point_down_and_have_no_cycle():
    """Nothing in model/ imports training/; no two modules import each other, directly or through others; the
    detector node's file stays ROS wiring (issue 23: <= 300 lines)."""
    graph = _module_imports()
    assert "odd_one_out_ros.inspection.pipeline" in graph["odd_one_out_ros.ros.detector"]
    up = [(a, b) for a, deps in graph.items() for b in deps
          if a.startswith("odd_one_out_ros.model") and b.startswith("odd_one_out_ros.training")]
    assert not up, up

    def reaches(start, goal, seen):
        return any(d == goal or (d not in seen and not seen.add(d) and reaches(d, goal, seen)) for d in graph[start])

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, cycles
    assert len((ROOT / "odd_one_out_ros" / "ros" / "detector.py").read_text().splitlines()) <= 300


def test_no_private_name_is_imported_from_another_module():
    """A name with a leading underscore stays in its module (issue 35: the box head's private training loop was
    imported by the comparator's training); helpers two modules share are public, in one place."""
    private = []
    for f in (ROOT / "odd_one_out_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("odd_one_out_ros")):
                private += [f"{f.relative_to(ROOT)}: {a.name}" for a in node.names
                            if a.name.startswith("_") and a.name != "__version__"]
    assert not private, private


def test_environment_reaches_every_venv_process():
    """setup writes a .pth so that ROS's environment is there without the user setting it."""
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "AMENT_PREFIX_PATH")}
    r = subprocess.run([sys.executable, "-c", "import os; print(os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']);"
                        "from ament_index_python.packages import get_package_share_directory as g;"
                        "print(g('odd_one_out_ros'))"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "LOCALHOST"


def test_lint():
    """ruff (pyflakes, pycodestyle, import order; ruff.toml) over the package, tests and launch files."""
    r = subprocess.run([str(BIN / "ruff"), "check", "odd_one_out_ros", "tests", "benchmarks", "launch"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

"""A folder of example meshes to try `generate --shapes` and scripts/finetune_shapes.sh with:
python scripts/example_meshes.py DIR  ->  DIR/{hex_nut,pipe_tee,knob,angle_bracket,spool}.stl

Five simple parts built from trimesh primitives (metres; the generator rescales them), none of them one of the
generator's own part or toy shapes, so that a fine-tune on them measures what a user's new part gains.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh
from trimesh.creation import annulus, box, capsule, cylinder


def _moved(mesh: trimesh.Trimesh, xyz=(0, 0, 0), axis=None) -> trimesh.Trimesh:
    m = mesh.copy()
    if axis == "x":
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    elif axis == "y":
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    m.apply_translation(xyz)
    return m


def example_meshes() -> dict[str, trimesh.Trimesh]:
    nut = annulus(r_min=0.02, r_max=0.045, height=0.03, sections=6)  # a hexagonal prism with a bore
    tee = trimesh.util.concatenate([_moved(annulus(0.015, 0.022, 0.14, sections=24), axis="x"),
                                    _moved(annulus(0.015, 0.022, 0.07, sections=24), (0, 0.035, 0), axis="y")])
    knob = trimesh.util.concatenate([cylinder(0.04, 0.02, sections=32), _moved(capsule(0.05, 0.012), (0, 0, 0.035))])
    bracket = trimesh.util.concatenate([box([0.12, 0.05, 0.01]), _moved(box([0.01, 0.05, 0.08]), (0.055, 0, 0.045))])
    spool = trimesh.util.concatenate([cylinder(0.045, 0.01, sections=32), _moved(cylinder(0.02, 0.06), (0, 0, 0.035)),
                                      _moved(cylinder(0.045, 0.01, sections=32), (0, 0, 0.07))])
    return {"hex_nut": nut, "pipe_tee": tee, "knob": knob, "angle_bracket": bracket, "spool": spool}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.splitlines()[1], file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, mesh in example_meshes().items():
        mesh.export(out / f"{name}.stl")
    print(f"{len(example_meshes())} meshes in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

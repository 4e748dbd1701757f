"""Render a scene exported by odd_one_out_ros.synth.photoreal.export_for_cycles with Blender's Cycles path tracer.

    BPY_PYTHON benchmarks/cycles_render.py SCENE.npz OUT_DIR [--samples 64] [--views 0,1,2]

Runs under a Python that has the `bpy` wheel (4.2: `python3.11 -m venv bpyvenv && bpyvenv/bin/pip install
"bpy==4.2.*"`; it brings its own numpy, so keep it out of the project's venv) and needs nothing of this project.
Writes OUT_DIR/NNNN.png (8-bit sRGB, the exported cameras' size) per view. Cycles on the CPU, OpenImageDenoise when
the wheel has it, the "Standard" view transform (colours as given, no filmic curve). Frames: the exported T_cw map
world points into the OpenCV camera frame (x right, y down, z forward); Blender's camera looks along its -z with y
up, hence the flip below.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np


def linear(c):
    """The generator's colours are as displayed (sRGB-like); Cycles works in linear light."""
    return np.asarray(c, np.float32) ** 2.2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene")
    ap.add_argument("out")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--views", default="", help="comma-separated view indices (default: all)")
    args = ap.parse_args()
    import bpy
    from mathutils import Matrix

    d = np.load(args.scene)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = args.samples
    sc.cycles.use_denoising = True
    try:
        sc.cycles.denoiser = "OPENIMAGEDENOISE"
    except TypeError:  # a build without OIDN
        sc.cycles.use_denoising = False
    sc.view_settings.view_transform = "Standard"
    W, H = (int(x) for x in d["size"])
    sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = W, H, 100
    sc.render.image_settings.file_format = "PNG"

    def material(name, spec, shininess, image=None):
        mat = bpy.data.materials.new(name)
        mat.use_nodes = True
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Roughness"].default_value = float(np.clip(np.sqrt(2.0 / (shininess + 2.0)) * 1.6, 0.05, 1.0))
        bsdf.inputs["Specular IOR Level"].default_value = float(np.clip(spec * 1.5, 0.0, 1.0))
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        if image is None:
            attr = nodes.new("ShaderNodeVertexColor")
            attr.layer_name = "albedo"
            links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
        else:
            tex = nodes.new("ShaderNodeTexImage")
            tex.image = image
            links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        return mat

    for k in range(int(d["n_meshes"])):
        v, f, n, c = (d[f"mesh{k}_{x}"] for x in ("vertices", "faces", "normals", "colors"))
        c = linear(c)
        spec, shin = (float(x) for x in d[f"mesh{k}_material"])
        me = bpy.data.meshes.new(f"m{k}")
        me.from_pydata(v.tolist(), [], f.tolist())
        me.update()
        attr = me.color_attributes.new("albedo", "FLOAT_COLOR", "POINT")
        attr.data.foreach_set("color", np.concatenate([c, np.ones((len(c), 1), np.float32)], 1).ravel())
        me.shade_smooth()
        me.normals_split_custom_set_from_vertices(n.tolist())
        me.materials.append(material(f"mat{k}", spec, shin))
        bpy.context.collection.objects.link(bpy.data.objects.new(f"o{k}", me))

    # the floor: the baked texture on +-half, its mean colour beyond
    half = float(d["floor_half"]) if "floor_texture" in d else 1.0
    if "floor_texture" in d:
        tex = linear(d["floor_texture"])  # (n, n, 3): row = y, col = x, from -half
        img = bpy.data.images.new("floor", tex.shape[1], tex.shape[0], float_buffer=True)
        img.colorspace_settings.name = "Linear Rec.709"
        img.pixels.foreach_set(np.concatenate([tex, np.ones(tex.shape[:2] + (1,), np.float32)], 2).ravel())
        me = bpy.data.meshes.new("floor")
        me.from_pydata([(-half, -half, 0), (half, -half, 0), (half, half, 0), (-half, half, 0)], [], [(0, 1, 2, 3)])
        uv = me.uv_layers.new(name="uv")
        for loop, (u, w) in zip(uv.data, ((0, 0), (1, 0), (1, 1), (0, 1))):
            loop.uv = (u, w)
        me.materials.append(material("floor", 0.1, 10.0, img))
        bpy.context.collection.objects.link(bpy.data.objects.new("floor", me))
    far = bpy.data.meshes.new("far_floor")  # the rest of the floor, a ring around the textured square
    s = 6.0
    far.from_pydata([(-s, -s, -1e-4), (s, -s, -1e-4), (s, s, -1e-4), (-s, s, -1e-4)], [], [(0, 1, 2, 3)])
    mat = bpy.data.materials.new("far")
    mat.use_nodes = True
    far_colour = (*linear(d["floor_color"]).tolist(), 1.0)
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = far_colour
    far.materials.append(mat)
    bpy.context.collection.objects.link(bpy.data.objects.new("far_floor", far))

    # light: the sun (its direction and strength) and the sky (the background gradient's mean, as ambient)
    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy = float(d["sun"]) * 3.5
    sun.angle = np.radians(1.0)
    sun_obj = bpy.data.objects.new("sun", sun)
    L = d["sun_dir"].astype(np.float64)
    z = L / np.linalg.norm(L)  # a sun light shines along its -z: its +z points at the sun
    x = np.cross([0.0, 0.0, 1.0], z) if abs(z[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    sun_obj.matrix_world = Matrix(M.tolist())  # (a Matrix: a nested list would be read column by column)
    bpy.context.collection.objects.link(sun_obj)
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    sky = linear(d["background"].mean(0))
    bg.inputs["Color"].default_value = (*sky.tolist(), 1.0)
    bg.inputs["Strength"].default_value = float(d["ambient"])
    sc.world = world

    cam_data = bpy.data.cameras.new("cam")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam = bpy.data.objects.new("cam", cam_data)
    bpy.context.collection.objects.link(cam)
    sc.camera = cam
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera axes -> Blender's
    views = [int(v) for v in args.views.split(",")] if args.views else range(len(d["K"]))
    for i in views:
        K, T_cw = d["K"][i], d["T_cw"][i]
        cam_data.lens = K[0, 0] * 36.0 / W
        # K's integer pixel coordinates are pixel centres (docs/frames.md); Blender's image plane runs from the
        # corner, its pixel centres at +0.5: without the half pixel the render sat 0.45 px up and left of the
        # generator's view (phase correlation, every quadrant of 16 views)
        cam_data.shift_x = (W / 2 - (K[0, 2] + 0.5)) / W
        cam_data.shift_y = ((K[1, 2] + 0.5) - H / 2) / W
        cam.matrix_world = Matrix((np.linalg.inv(T_cw) @ flip).tolist())
        sc.render.filepath = str(out / f"{i:04d}.png")
        t = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        print(f"view {i}: {time.perf_counter() - t:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

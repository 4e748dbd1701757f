"""Reference implementations the tests compare the fast code with (kept out of the package: nothing else runs them)."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from odd_one_out_ros.model import fastconv
from odd_one_out_ros.model.matcher import SparseVoxelAttention


@contextlib.contextmanager
def reference_path():
    """Within this context the original modules run (NCHW, batch norms unfolded), not model/fastconv.py's copies."""
    before = fastconv.FUSED["on"]
    fastconv.FUSED["on"] = False
    try:
        yield
    finally:
        fastconv.FUSED["on"] = before


def sparse_attention_reference(attn: SparseVoxelAttention, x: torch.Tensor, partners: torch.Tensor,
                               idx: torch.Tensor) -> torch.Tensor:
    """Eq. 6-7 as written: keys and values of every correspondence gathered, then attention. x (N, P, D), partners
    (N, M), idx (N, P, M, k) -> (N, P, D), what SparseVoxelAttention.forward computes."""
    N, P, D = x.shape
    M, k = partners.shape[1], idx.shape[-1]
    if M == 0:
        return torch.zeros_like(x)
    q = attn.q(x).view(N, P, attn.h, attn.dh)
    kk = attn.k(x).reshape(N * P, D)
    vv = attn.v(x).reshape(N * P, D)
    rows = (partners[:, None, :, None] * P + idx).reshape(-1)
    keys = kk.index_select(0, rows).view(N * P, M * k, attn.h, attn.dh).transpose(1, 2)  # (NP, h, Mk, dh)
    vals = vv.index_select(0, rows).view(N * P, M * k, attn.h, attn.dh).transpose(1, 2)
    query = q.reshape(N * P, attn.h, 1, attn.dh)
    return attn.out(F.scaled_dot_product_attention(query, keys, vals).reshape(N, P, D))

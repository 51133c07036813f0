"""Fused TopK SAE kernels (installed as ``genesae_fast.kernels``), one module per op.

* :mod:`.reference` - the definition of every op in plain dense torch (no Triton).
* :mod:`.topk_encode` - fused encoder (affine + top-k + relu): split-latent Triton kernel
  and the merge of the splits.
* :mod:`.sparse_decode` - sparse decoder over the row kernels.
* :mod:`.sparse_rows` - the gather/scatter kernels both ops' passes are made of.
* :mod:`.sparse_backward` - both ops' backward formulas over those row primitives.
* :mod:`.launch` - block sizes, warps, stages and grids of every kernel (no Triton).
* :mod:`.torch_path` - the same ops from stock torch operators (CPU, or no Triton), and
  the chunked GEMM + top-k the Triton path uses for large k.

Each module's docstring states the forward and backward math. Importing this package
imports nothing: the Triton modules import ``triton`` and are loaded only by the Triton
path (``genesae_fast.ops`` picks a path per call). This package never imports
``genesae_fast``, so it can be vendored on its own.
"""

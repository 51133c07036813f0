"""Fused TopK SAE kernels (installed as ``genesae_fast.kernels``), one module per op.

* :mod:`.topk_encode` - fused encoder (affine + top-k + relu), Triton, with its reference.
* :mod:`.sparse_decode` - sparse decoder, Triton, with its reference.
* :mod:`.sparse_rows` - the gather/scatter kernels both ops' passes are made of.
* :mod:`.torch_path` - the same ops from stock torch operators (CPU, or no Triton).

Each module's docstring states the forward and backward math. Importing this package
imports nothing: the Triton modules import ``triton`` and are loaded only by the Triton
path (``genesae_fast.ops`` picks a path per call). This package never imports
``genesae_fast``, so it can be vendored on its own.
"""

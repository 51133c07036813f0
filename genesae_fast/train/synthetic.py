"""Synthetic activations with a planted sparse dictionary, to check that training recovers it.

Each row is ``offset + sum_{i in S} c_i * atom_i + noise`` with ``|S| = active`` atoms drawn
uniformly, ``c_i ~ U(0.5, 1.5)``, unit-norm random atoms and a fixed random offset (so the
centring matters). A trained SAE recovers the dictionary when most atoms have a decoder
row with cosine similarity above 0.9 (:func:`match_atoms`).

``python -m genesae_fast.train.synthetic X.npy [--rows N --d D --atoms A --active S]`` writes
the array (and ``X.atoms.npy``) for ``genesae import X.npy --out S.zarr``.
"""
from __future__ import annotations

import argparse

import numpy as np


def planted_dictionary(n_rows: int, d: int, n_atoms: int, active: int, seed: int = 0, noise: float = 0.01,
                       offset: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows made of a few atoms of a random dictionary.

    Returns
    -------
    X : float32 [n_rows, d]
    atoms : float32 [n_atoms, d], unit rows
    """
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((n_atoms, d))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    X = np.empty((n_rows, d))
    block = max(1, (1 << 22) // max(n_atoms, 1))
    for s in range(0, n_rows, block):
        m = min(block, n_rows - s)
        # `active` distinct atoms per row: the smallest of n_atoms uniform keys per row.
        which = np.argpartition(rng.random((m, n_atoms)), active - 1, axis=1)[:, :active]
        coef = rng.uniform(0.5, 1.5, size=(m, active))
        X[s:s + m] = np.einsum("ra,rad->rd", coef, atoms[which])
    X += offset * rng.standard_normal(d) / np.sqrt(d)
    X += noise * rng.standard_normal((n_rows, d)) / np.sqrt(d)
    return X.astype(np.float32), atoms.astype(np.float32)


def match_atoms(atoms, W_dec) -> np.ndarray:
    """For each true atom, the best cosine similarity with any decoder row.

    Parameters
    ----------
    atoms : [A, d]; W_dec : [n, d] (numpy or torch)

    Returns
    -------
    float64 [A]
    """
    a = np.asarray(atoms, dtype=np.float64)
    w = np.asarray(W_dec.detach().cpu() if hasattr(W_dec, "detach") else W_dec, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return (a @ w.T).max(axis=1)


def write_store(X: np.ndarray, path, chunk_rows: int, dtype: str = "float32"):
    """An activation store holding ``X`` (no coordinates), made with the store's writer."""
    from genesae_fast.store import StoreWriter

    w = StoreWriter.create(path, n_rows=X.shape[0], d=X.shape[1], dtype=dtype, config={"source": "synthetic"},
                           chunk_rows=chunk_rows, coordinates=False, overwrite=True)
    for c in range(w.n_chunks):
        a, b = w.chunk_bounds(c)
        w.write_chunk(c, X[a:b])
    w.finalize()
    return path


def main(argv=None) -> None:
    """Write a planted-dictionary array and its atoms as .npy files."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="output .npy (atoms go to OUT with .atoms.npy)")
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--atoms", type=int, default=512)
    p.add_argument("--active", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    X, atoms = planted_dictionary(args.rows, args.d, args.atoms, args.active, seed=args.seed)
    np.save(args.out, X)
    np.save(str(args.out).removesuffix(".npy") + ".atoms.npy", atoms)


if __name__ == "__main__":
    main()


__all__ = ["match_atoms", "planted_dictionary", "write_store"]

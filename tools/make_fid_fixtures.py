#!/usr/bin/python3
"""Reference fixtures for the Frechet distance and k-NN precision/recall, made with numpy and scipy (Debian python3-scipy).

Writes into tests/DiffusionSharp.Tests/fixtures/:
  fid_ref.safetensors -- F64 feature sets and their statistics: "<case>.a" [n, d], "<case>.b" [m, d],
                         "<case>.mu_a" [d], "<case>.sigma_a" [d, d] (np.cov(rowvar=False), i.e. ddof 1), same for b;
                         "pr.<case>.real" / ".fake" and the k-NN radii "pr.<case>.radii_real" / ".radii_fake"
  fid_ref.json        -- per case: scipy's FID (the pytorch-fid formula with scipy.linalg.sqrtm), an eigenvalue
                         cross-check, and precision/recall computed by brute force in numpy (float64)

FID = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b))  (Heusel et al. 2017), computed exactly as pytorch-fid does:
covmean = scipy.linalg.sqrtm(S_a @ S_b, disp=False); if it is not finite, add 1e-6 * I to both covariances;
drop a negligible imaginary part; FID = diff.diff + Tr(S_a) + Tr(S_b) - 2 Tr(covmean).
Precision/recall: Kynkaanniemi et al. 2019 with k = 3. A sample's radius is the distance to its k-th nearest
neighbour in its own set (itself excluded); precision = fraction of fake samples within the radius of some real sample,
recall = fraction of real samples within the radius of some fake sample (distance <= radius).

Usage: /usr/bin/python3 tools/make_fid_fixtures.py [output_dir]
The safetensors file is written with struct/json only (no safetensors package); the output is reproducible.
"""
import json
import os
import struct
import sys

import numpy as np
import scipy
import scipy.linalg

K = 3


def write_safetensors(path, tensors, metadata):
    """tensors: dict name -> float64 ndarray; all F64, so every tensor is 8-byte aligned."""
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def scipy_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The pytorch-fid calculate_frechet_distance steps, with scipy.linalg.sqrtm."""
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    offset_used = False
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        offset_used = True
    max_imag = 0.0
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    fid = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
    return float(fid), float(tr_covmean), offset_used, max_imag


def eig_trace_sqrt(sigma1, sigma2):
    """Cross-check: Tr sqrtm(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), eigenvalues clipped at 0."""
    w, v = scipy.linalg.eigh(sigma1)
    s1h = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = s1h @ sigma2 @ s1h
    lam = scipy.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(lam, 0, None))))


def correlated(rng, n, d, scale, shift, rank=None):
    """n samples of a Gaussian with a random mixing matrix (full rank unless rank is given)."""
    r = d if rank is None else rank
    mix = rng.standard_normal((r, d)) * scale / np.sqrt(r)
    return rng.standard_normal((n, r)) @ mix + shift


def frechet_cases(rng):
    cases = {}
    a = correlated(rng, 200, 16, 1.0, 0.0)
    cases["d16_n200_m150"] = (a, correlated(rng, 150, 16, 1.3, 0.2), "two correlated Gaussians, different covariance and mean")
    a = correlated(rng, 300, 64, 1.0, 0.5)
    cases["d64_n300_m240"] = (a, correlated(rng, 240, 64, 0.8, 0.3), "d = 64, n > d on both sides")
    # post-activation-like features: non-negative, heavy right tail (SiLU/ReLU outputs)
    a = np.maximum(correlated(rng, 300, 32, 2.0, 0.3), 0)
    cases["d32_relu_n300_m250"] = (a, np.maximum(correlated(rng, 250, 32, 2.2, 0.1), 0), "rectified features with many exact zeros")
    cases["d64_n40_m50_singular"] = (correlated(rng, 40, 64, 1.0, 0.0), correlated(rng, 50, 64, 1.0, 0.1),
                                     "n < d: both covariances singular (rank 39 and 49)")
    cases["d16_n10_m12_singular"] = (correlated(rng, 10, 16, 1.0, 0.0), correlated(rng, 12, 16, 1.5, 0.0),
                                     "n < d: rank 9 and 11 in 16 dimensions")
    a = correlated(rng, 300, 16, 1.0, 0.0)
    cases["d16_near_identical"] = (a, a + 1e-3 * rng.standard_normal(a.shape), "b = a + 1e-3 noise: FID near 0")
    a = correlated(rng, 120, 16, 1.0, 0.0, rank=6)
    cases["d16_low_rank_n120"] = (a, correlated(rng, 140, 16, 1.0, 0.2, rank=6),
                                  "n > d but both sets lie in (different) 6-dimensional subspaces")
    return cases


def sq_dists(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def knn_radii(x, k):
    d = sq_dists(x, x)
    np.fill_diagonal(d, np.inf)  # itself excluded
    return np.sqrt(np.sort(d, axis=1)[:, k - 1])


def precision_recall(real, fake, k):
    rr, rf = knn_radii(real, k), knn_radii(fake, k)
    d = np.sqrt(sq_dists(real, fake))  # [n_real, n_fake]
    precision = float(np.mean((d <= rr[:, None]).any(axis=0)))
    recall = float(np.mean((d <= rf[None, :]).any(axis=1)))
    return precision, recall, rr, rf


def pr_cases(rng):
    return {
        "d8_overlap": (rng.standard_normal((120, 8)), rng.standard_normal((100, 8)) * 1.2 + 0.6, "partly overlapping Gaussians"),
        "d32_narrow_fake": (rng.standard_normal((150, 32)), rng.standard_normal((130, 32)) * 0.5, "fake spread half as wide"),
        "d4_wide_fake": (rng.standard_normal((80, 4)), rng.standard_normal((90, 4)) * 2.0 + 0.3, "fake spread twice as wide"),
    }


def main(out_dir):
    rng = np.random.default_rng(20240917)
    tensors, doc_cases = {}, {}
    for name, (a, b, what) in frechet_cases(rng).items():
        mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
        s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        fid, tr_covmean, offset_used, max_imag = scipy_fid(mu_a, s_a, mu_b, s_b)
        tr_eig = eig_trace_sqrt(s_a, s_b)
        diff = mu_a - mu_b
        tensors.update({f"{name}.a": a, f"{name}.b": b, f"{name}.mu_a": mu_a, f"{name}.mu_b": mu_b,
                        f"{name}.sigma_a": s_a, f"{name}.sigma_b": s_b})
        doc_cases[name] = {
            "what": what, "n_a": a.shape[0], "n_b": b.shape[0], "dim": a.shape[1],
            "fid": fid, "trace_sqrtm": tr_covmean, "mean_term": float(diff.dot(diff)),
            "trace_a": float(np.trace(s_a)), "trace_b": float(np.trace(s_b)),
            "sqrtm_offset_used": offset_used, "sqrtm_max_imag": max_imag,
            "trace_sqrtm_eigh": tr_eig, "fid_eigh": float(diff.dot(diff) + np.trace(s_a) + np.trace(s_b) - 2 * tr_eig),
        }
    pr_doc = {}
    for name, (real, fake, what) in pr_cases(rng).items():
        p, r, rr, rf = precision_recall(real, fake, K)
        tensors.update({f"pr.{name}.real": real, f"pr.{name}.fake": fake, f"pr.{name}.radii_real": rr, f"pr.{name}.radii_fake": rf})
        pr_doc[name] = {"what": what, "n_real": real.shape[0], "n_fake": fake.shape[0], "dim": real.shape[1], "k": K,
                        "precision": p, "recall": r}
    meta = {"generator": "tools/make_fid_fixtures.py", "numpy": np.__version__, "scipy": scipy.__version__}
    write_safetensors(os.path.join(out_dir, "fid_ref.safetensors"), tensors, meta)
    doc = {
        "description": "Frechet distance (scipy.linalg.sqrtm, pytorch-fid steps) and k-NN precision/recall (numpy brute force) references.",
        "provenance": meta,
        "frechet_formula": "FID = |mu_a-mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr(sqrtm(S_a S_b)); S = np.cov(x, rowvar=False) (ddof 1); "
                           "covmean = scipy.linalg.sqrtm(S_a.dot(S_b), disp=False), 1e-6 I added to both if not finite, real part kept",
        "cross_check": "trace_sqrtm_eigh / fid_eigh: Tr sqrtm(S_a S_b) as sum sqrt(eigvalsh(sqrt(S_a) S_b sqrt(S_a))) with eigenvalues clipped at 0",
        "precision_recall": "Kynkaanniemi et al. 2019, k = 3, Euclidean distance, radius = k-th nearest neighbour in the own set excluding itself, "
                            "inside means distance <= radius",
        "frechet": doc_cases,
        "pr": pr_doc,
        "tensor_naming": {"<case>.a / .b": "feature sets [n, d]", "<case>.mu_a / .mu_b": "means", "<case>.sigma_a / .sigma_b": "covariances (ddof 1)",
                          "pr.<case>.real / .fake": "feature sets", "pr.<case>.radii_real / .radii_fake": "k-th nearest-neighbour distances"},
    }
    with open(os.path.join(out_dir, "fid_ref.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "DiffusionSharp.Tests", "fixtures")
    main(out)
    print("wrote fid_ref.* to", os.path.abspath(out))

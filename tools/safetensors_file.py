"""The one safetensors writer the fixture generators share: tensors sorted by name, F32 or F64, header padded to 8 bytes."""
import json, os, struct

import torch


def write(path, tensors, metadata):
    """Writes {name: tensor} to `path`; float64 tensors stay F64, every other tensor is stored as F32."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for key in sorted(tensors):
        t = tensors[key]
        dtype, np = ("F64", "<f8") if t.dtype == torch.float64 else ("F32", "<f4")
        data = t.numpy().astype(np).tobytes()
        header[key] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for d in blobs:
            f.write(d)
    print(f"wrote {len(tensors)} tensors ({offset} bytes of data) to {os.path.normpath(path)}")

#!/usr/bin/python3
"""Writes reference PNGs and their expected decoded samples into tests/DiffusionSharp.Tests/fixtures/png/.

Encoders: pypng (python3-png: every colour type / bit depth, palette + tRNS, Adam7), Pillow (python3-pil: adaptive
filters, APNG) and a small raw zlib writer here that forces each of the five filter types. Expected samples are
computed from the source arrays with the PNG spec's rules (low bit depths scaled to 8 bits, palettes expanded, tRNS
keys turned into alpha) and, where Pillow can read the file at full precision, cross-checked against Pillow's decode.

Output: manifest.json plus NAME.png and NAME.bin (expected samples: uint8, or little-endian uint16 for 16-bit),
interleaved HWC. APNG frames are NAME.fK.bin.  Run: /usr/bin/python3 tools/make_png_fixtures.py
"""
import io, json, os, struct, zlib
import numpy as np
import png
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'DiffusionSharp.Tests', 'fixtures', 'png')
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1234)
manifest = []


def pattern(h, w, c, maxv):
    """Gradient plus noise so rows differ and every filter has work to do."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * (k + 1) * 7 + y * (5 - k) * 3) for k in range(c)], -1)
    noise = rng.integers(0, maxv + 1, size=(h, w, c))
    arr = np.where(rng.random((h, w, c)) < 0.3, noise, base % (maxv + 1))
    return arr.astype(np.int64)


def save(name, data, expected, bitdepth_out, source, frames=None):
    with open(os.path.join(OUT, name + '.png'), 'wb') as f:
        f.write(data)
    h, w, c = expected.shape
    def dump(arr, fname):
        if bitdepth_out == 16:
            arr.astype('<u2').tofile(os.path.join(OUT, fname))
        else:
            arr.astype(np.uint8).tofile(os.path.join(OUT, fname))
    entry = dict(file=name + '.png', width=w, height=h, channels=c, bitDepth=bitdepth_out, source=source)
    if frames is None:
        dump(expected, name + '.bin')
        entry['expected'] = name + '.bin'
    else:
        entry['frames'] = []
        for k, (fr, delay_ms) in enumerate(frames):
            dump(fr, f'{name}.f{k}.bin')
            entry['frames'].append(dict(expected=f'{name}.f{k}.bin', delayMs=delay_ms))
    manifest.append(entry)


def pypng_bytes(rows, **kw):
    buf = io.BytesIO()
    rows = [[int(v) for v in r] for r in np.asarray(rows)]  # pypng mis-packs numpy int64 rows; give it plain ints
    png.Writer(**kw).write(buf, rows)
    return buf.getvalue()


def scale8(arr, depth):
    return arr * 255 // ((1 << depth) - 1) if depth < 8 else arr


def check_pil(data, expected, mode_conv=None):
    im = Image.open(io.BytesIO(data))
    if mode_conv:
        im = im.convert(mode_conv)
    got = np.asarray(im)
    if got.ndim == 2:
        got = got[:, :, None]
    assert got.shape == expected.shape and (got.astype(np.int64) == expected).all(), 'Pillow disagrees'


# ---- pypng: gray 1/2/4/8/16, gray+alpha, RGB, RGBA at 8/16, interlaced and not ----
for interlace in (False, True):
    sfx = '_i' if interlace else ''
    for depth in (1, 2, 4, 8, 16):
        w, h = (13, 11) if depth != 1 else (17, 9)
        a = pattern(h, w, 1, (1 << depth) - 1)
        data = pypng_bytes(a.reshape(h, w), width=w, height=h, greyscale=True, bitdepth=depth, interlace=interlace)
        exp = scale8(a, depth)
        save(f'gray{depth}{sfx}', data, exp, 16 if depth == 16 else 8, 'pypng')
        if depth == 8:
            check_pil(data, exp)
    for depth in (8, 16):
        for c, name, alpha in ((2, 'ga', True), (3, 'rgb', False), (4, 'rgba', True)):
            w, h = 11, 10
            a = pattern(h, w, c, (1 << depth) - 1)
            data = pypng_bytes(a.reshape(h, w * c), width=w, height=h, greyscale=(c < 3), alpha=alpha,
                               bitdepth=depth, interlace=interlace)
            save(f'{name}{depth}{sfx}', data, a, depth, 'pypng')
            if depth == 8:
                check_pil(data, a)

# ---- pypng: palette 1/2/4/8 bit, with and without tRNS ----
for interlace in (False, True):
    sfx = '_i' if interlace else ''
    for depth in (1, 2, 4, 8):
        n = min(1 << depth, 200)
        w, h = 12, 9
        pal_rgb = rng.integers(0, 256, size=(n, 3))
        idx = rng.integers(0, n, size=(h, w))
        for with_alpha in (False, True):
            if with_alpha:
                # tRNS shorter than the palette: entries past it are opaque
                k = max(1, n - 1)
                alphas = np.concatenate([rng.integers(0, 256, size=k), np.full(n - k, 255)])
                pal = [tuple(int(v) for v in pal_rgb[i]) + ((int(alphas[i]),) if i < k else ()) for i in range(n)]
                exp = np.concatenate([pal_rgb[idx], alphas[idx][:, :, None]], -1)
                nm = f'pal{depth}_trns{sfx}'
            else:
                pal = [tuple(int(v) for v in p) for p in pal_rgb]
                exp = pal_rgb[idx]
                nm = f'pal{depth}{sfx}'
            data = pypng_bytes(idx, width=w, height=h, palette=pal, bitdepth=depth, interlace=interlace)
            save(nm, data, exp, 8, 'pypng')
            check_pil(data, exp, 'RGBA' if with_alpha else 'RGB')

# ---- pypng: tRNS colour keys on gray and RGB ----
for depth in (4, 16):
    w, h = 10, 7
    a = pattern(h, w, 1, (1 << depth) - 1)
    key = int(a[2, 3, 0])
    data = pypng_bytes(a.reshape(h, w), width=w, height=h, greyscale=True, bitdepth=depth, transparent=key)
    full = (1 << 16) - 1 if depth == 16 else 255
    exp = np.concatenate([scale8(a, depth), np.where(a == key, 0, full)], -1)
    save(f'gray{depth}_trns', data, exp, 16 if depth == 16 else 8, 'pypng')
w, h = 9, 8
a = pattern(h, w, 3, 255)
a[::3, ::2] = (10, 20, 30)
data = pypng_bytes(a.reshape(h, w * 3), width=w, height=h, greyscale=False, bitdepth=8, transparent=(10, 20, 30))
exp = np.concatenate([a, np.where((a == (10, 20, 30)).all(-1, keepdims=True), 0, 255)], -1)
save('rgb8_trns', data, exp, 8, 'pypng')
check_pil(data, exp, 'RGBA')

# ---- Pillow: its adaptive-filter encoder ----
for mode, c in (('L', 1), ('LA', 2), ('RGB', 3), ('RGBA', 4)):
    w, h = 23, 17
    a = pattern(h, w, c, 255)
    im = Image.fromarray(a.astype(np.uint8).reshape(h, w) if c == 1 else a.astype(np.uint8), mode)
    buf = io.BytesIO()
    im.save(buf, 'PNG')
    save(f'pil_{mode.lower()}', buf.getvalue(), a, 8, 'Pillow')

# ---- raw zlib writer: row r uses filter r % 5, split over several IDAT chunks ----
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_row(ft, cur, prev, bpp):
    out = bytearray(len(cur))
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
        out[i] = (cur[i] - pred) & 0xff
    return bytes(out)


def pack_rows(a, depth):
    """Packs [h, w, c] samples into PNG scanline bytes."""
    h, w, c = a.shape
    rows = []
    for y in range(h):
        flat = a[y].reshape(-1)
        if depth == 16:
            rows.append(b''.join(struct.pack('>H', int(v)) for v in flat))
        elif depth == 8:
            rows.append(bytes(int(v) for v in flat))
        else:
            bits = ''.join(format(int(v), f'0{depth}b') for v in flat)
            bits += '0' * (-len(bits) % 8)
            rows.append(bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def raw_png(a, depth, color_type, interlace):
    h, w, c = a.shape
    bpp = max(1, c * depth // 8)
    passes = [a] if not interlace else [a[ys::dy, xs::dx] for xs, ys, dx, dy in ADAM7]
    stream = bytearray()
    r = 0
    for p in passes:
        if p.shape[0] == 0 or p.shape[1] == 0:
            continue
        rows = pack_rows(p, depth)
        prev = bytes(len(rows[0]))
        for row in rows:
            ft = r % 5
            stream += bytes([ft]) + filter_row(ft, row, prev, bpp)
            prev = row
            r += 1
    comp = zlib.compress(bytes(stream), 9)
    ihdr = struct.pack('>IIBBBBB', w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    parts = [comp[i:i + 50] for i in range(0, len(comp), 50)]
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'tEXt', b'Comment\x00filters 0-4') + \
        b''.join(chunk(b'IDAT', p) for p in parts) + chunk(b'IEND', b'')


for name, (w, h, c, depth, ct, interlace) in {
    'filt_gray2': (17, 9, 1, 2, 0, False),
    'filt_gray8': (15, 12, 1, 8, 0, False),
    'filt_rgb16': (11, 7, 3, 16, 2, False),
    'filt_rgba8': (13, 10, 4, 8, 6, False),
    'filt_ga8_i': (13, 11, 2, 8, 4, True),
    'filt_rgb8_i': (9, 14, 3, 8, 2, True),
    'filt_gray1_i': (19, 5, 1, 1, 0, True),
}.items():
    a = pattern(h, w, c, (1 << depth) - 1)
    data = raw_png(a, depth, ct, interlace)
    exp = scale8(a, depth) if depth < 8 else a
    if depth <= 8:
        try:
            check_pil(data, exp, 'L' if depth == 1 else None)
        except AssertionError:
            im = Image.open(io.BytesIO(data)); print(name, im.mode, np.asarray(im)[:2, :6], exp[:2, :6, 0]); raise
    save(name, data, exp, 16 if depth == 16 else 8, 'raw zlib writer in this script')

# ---- tiny edge sizes ----
for w, h in ((1, 1), (1, 9), (9, 1), (2, 3)):
    a = pattern(h, w, 3, 255)
    data = pypng_bytes(a.reshape(h, w * 3), width=w, height=h, greyscale=False, bitdepth=8, interlace=True)
    save(f'rgb8_i_{w}x{h}', data, a, 8, 'pypng')

# ---- Pillow APNG (frames are cropped to the changed region, which exercises compositing) ----
w, h = 16, 12
base = pattern(h, w, 4, 255).astype(np.uint8)
base[:, :, 3] = 255
frames = [base.copy()]
for k in range(1, 4):
    f = frames[-1].copy()
    f[2 + k:6 + k, 3 + 2 * k:8 + 2 * k, :3] = rng.integers(0, 256, size=(4, 5, 3))
    frames.append(f)
delays = [100, 200, 50, 300]
buf = io.BytesIO()
imgs = [Image.fromarray(f, 'RGBA') for f in frames]
imgs[0].save(buf, 'PNG', save_all=True, append_images=imgs[1:], duration=delays, loop=0)
save('pil_apng', buf.getvalue(), frames[0].astype(np.int64), 8, 'Pillow APNG',
     frames=[(f.astype(np.int64), d) for f, d in zip(frames, delays)])

with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=1)
total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
print(f'{len(manifest)} fixtures, {total} bytes in {OUT}')

"""A small PNG decoder (zlib and numpy only): Debian's python3-torch comes without Pillow, and a folder
of PNG files is the usual way to hand over a data set (`--data dir:PATH`, as backend/imgdata reads
it). It reads non-interlaced images of every colour type and bit depth (gray, RGB, palette, gray+alpha,
RGBA; 1–16 bits; tRNS alpha and colour keys) and returns RGBA uint8 [H, W, 4] (16-bit samples keep
their high byte, as Go's image/color conversions do). An interlaced file raises ValueError, and
data.py then tries Pillow when it is installed.
"""

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type → samples per pixel
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # PNG spec §11.2.2


def decode(data):
    """RGBA uint8 [H, W, 4] of the PNG file contents data."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    pos, ihdr, idat, plte, trns = 8, None, [], None, None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if len(body) != n:
            raise ValueError("truncated PNG chunk")
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            plte = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if ihdr is None or not idat:
        raise ValueError("PNG without IHDR or IDAT")
    w, h, depth, ctype, _, _, interlace = ihdr
    if ctype not in _CHANNELS or depth not in _DEPTHS[ctype] or interlace:
        raise ValueError(f"PNG of bit depth {depth}, colour type {ctype}, interlace {interlace}: this decoder "
                         "reads non-interlaced images only")
    ch = _CHANNELS[ctype]
    bits = ch * depth
    stride = (w * bits + 7) // 8
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size < h * (stride + 1):
        raise ValueError("PNG image data too short")
    raw = raw[:h * (stride + 1)].reshape(h, stride + 1)
    img = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for r in range(h):
        cur = _unfilter(raw[r, 0], raw[r, 1:].astype(np.int32), prev, max(1, bits // 8))
        img[r] = cur
        prev = cur.astype(np.int32)
    # Samples at their full depth, [h, w, ch].
    if depth == 8:
        smp = img[:, :w * ch].reshape(h, w, ch).astype(np.int32)
    elif depth == 16:
        b = img.reshape(h, w * ch, 2).astype(np.int32)
        smp = (b[..., 0] << 8 | b[..., 1]).reshape(h, w, ch)
    else:
        b = np.unpackbits(img, axis=1)[:, :w * depth].reshape(h, w, depth).astype(np.int32)
        smp = (b << np.arange(depth - 1, -1, -1)).sum(axis=2)[..., None]
    if ctype == 3:
        if plte is None:
            raise ValueError("palette PNG without PLTE")
        alpha = np.full(len(plte), 255, np.uint8)
        if trns is not None:
            alpha[:len(trns)] = np.frombuffer(trns[:len(plte)], np.uint8)
        idx = smp[..., 0]
        if idx.max(initial=0) >= len(plte):
            raise ValueError("palette index out of range")
        return np.concatenate([plte[idx], alpha[idx][..., None]], axis=-1)
    out = np.empty((h, w, 4), np.uint8)
    out[..., 3] = 255
    v = smp >> 8 if depth == 16 else smp * 255 // ((1 << depth) - 1)
    if ctype in (0, 4):
        out[..., :3] = v[..., :1]
    else:
        out[..., :3] = v[..., :3]
    if ctype in (4, 6):
        out[..., 3] = v[..., -1]
    elif trns is not None and len(trns) >= 2 * ch:
        # A colour key (tRNS of a gray or RGB image): pixels equal to it are transparent.
        key = np.frombuffer(trns[:2 * ch], ">u2").astype(np.int32)
        out[..., 3] = np.where((smp == key).all(axis=-1), 0, 255)
    return out


def _unfilter(f, line, prev, bpp):
    """One scanline's bytes after undoing filter type f (PNG spec §9.2), as uint8."""
    if f == 0:
        return line.astype(np.uint8)
    if f == 2:
        return ((line + prev) & 255).astype(np.uint8)
    if f == 1:
        # Sub: a running sum along the line, per byte of the pixel.
        n = len(line)
        pad = (-n) % bpp
        v = np.concatenate([line, np.zeros(pad, np.int32)]).reshape(-1, bpp)
        return (np.cumsum(v, axis=0) & 255).reshape(-1)[:n].astype(np.uint8)
    if f not in (3, 4):
        raise ValueError(f"PNG filter type {f} is not one of 0–4")
    out = np.zeros(len(line), np.int32)
    for i in range(0, len(line), bpp):
        x = line[i:i + bpp]
        b = prev[i:i + bpp]
        a = out[i - bpp:i] if i >= bpp else np.zeros_like(x)
        if f == 3:
            out[i:i + bpp] = (x + (a + b) // 2) & 255
        else:
            c = prev[i - bpp:i] if i >= bpp else np.zeros_like(x)
            p = a + b - c
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
            out[i:i + bpp] = (x + pred) & 255
    return out.astype(np.uint8)

"""The index kernels of :mod:`pysnn_ref.kernels.cuda`: im2col / col2im and max pooling
(reference module, sections 5-6), built per index type.

Only the kernels live here (:func:`index_kernels`); their host wrappers, the launch and the
choice of the index type are in :mod:`pysnn_ref.kernels.cuda` (sections 5-6 there).

One thread per OUTPUT element, so no two threads write the same address and nothing needs
atomics: im2col has a thread per entry of ``cols`` (consecutive threads write consecutive
columns p = oh*OW + ow: coalesced stores), col2im a thread per input pixel that GATHERS the
KH*KW column entries that came from it (the Caffe GPU col2im pattern), adding them in the
reference's (kh, kw) order -- so the float64 sums are bit-identical to the reference.
Pooling forward: one thread per output element scans its k x k window (strict ">": the
first maximum wins, as in the reference).  Backward: one thread per input pixel gathers
dout from the windows whose recorded maximum is that pixel, in the reference's (oh, ow)
order -- overlapping windows add up, no atomics.

Index arithmetic is UNSIGNED and, when every array of the launch has fewer than
``kernels.cuda.INDEX32_LIMIT`` (2^31) elements, 32-bit (issue 22): a GPU has no 64-bit integer
divider, so each 64-bit ``//`` or ``%`` is a ~70-instruction emulation, where a 32-bit one is a few
instructions.  Numba widens every integer operation to 64 bits, so each intermediate is
cast back with ``U(...)`` (LLVM then narrows the division of two zero-extended 32-bit
values to one 32-bit division), literals are written ``U(c)`` (a signed int64 literal
mixed with a uint64 would make a float64), the grid-stride loops are ``while`` loops (a
``range`` computes its trip count with a 64-bit division), and negative offsets are
avoided by comparing before subtracting (``ih = ihp - pad`` only when ``ihp >= pad``).
tests/test_cuda_ptx.py checks that the 32-bit kernels' PTX has no 64-bit div/rem.
Arrays from 2^31 elements on get the same kernels built with ``U = uint64``.
"""

from __future__ import annotations

from typing import Any

from numba import cuda

__all__ = ["im2col_kernel", "col2im_kernel", "maxpool2d_forward_kernel",
    "maxpool2d_backward_kernel", "index_kernels"]


def im2col_kernel(U: Any) -> Any:
    """The ``im2col`` kernel with index type ``U`` (np.uint32 or np.uint64)."""

    @cuda.jit
    def _im2col_kernel(x, C, H, W, KH, KW, stride, pad, OW, R, P, n_items, cols):
        """cols[n, (c*KH + kh)*KW + kw, oh*OW + ow] = xpad[n, c, oh*stride + kh, ow*stride + kw].

        x (N, C, H, W), cols (N, R = C*KH*KW, P = OH*OW); the sizes are passed in type U.
        Launch: launch_config(cols.size), one thread per entry of cols.
        """
        i = U(cuda.grid(1))
        step = U(cuda.gridsize(1))
        while i < n_items:  # grid-stride
            p = U(i % P)
            q = U(i // P)
            row = U(q % R)
            n = U(q // R)
            c = U(row // U(KH * KW))
            kh = U(U(row // KW) % KH)
            kw = U(row % KW)
            ihp = U(U(p // OW) * stride + kh)       # ih + pad
            iwp = U(U(p % OW) * stride + kw)
            if ihp >= pad and ihp < U(H + pad) and iwp >= pad and iwp < U(W + pad):
                cols[n, row, p] = x[n, c, U(ihp - pad), U(iwp - pad)]
            else:
                cols[n, row, p] = 0
            i = U(i + step)

    return _im2col_kernel


def col2im_kernel(U: Any) -> Any:
    """The ``col2im`` kernel with index type ``U`` (np.uint32 or np.uint64)."""

    @cuda.jit
    def _col2im_kernel(cols, C, H, W, KH, KW, stride, pad, OH, OW, n_items, zero, dx):
        """dx[n, c, ih, iw] = sum of the cols entries that im2col copied from (ih, iw).

        For each (kh, kw) at most one window position (oh, ow) covers the pixel:
        oh = (ih + pad - kh) / stride when that is a whole number in [0, OH), likewise ow.
        cols (N, C*KH*KW, OH*OW), dx (N, C, H, W); ``zero`` is 0 in dx's dtype (the
        accumulator's start, so float32 sums stay float32). Launch: launch_config(dx.size), one
        thread per pixel of dx.
        """
        i = U(cuda.grid(1))
        step = U(cuda.gridsize(1))
        while i < n_items:  # grid-stride
            iw = U(i % W)
            q = U(i // W)
            ih = U(q % H)
            q = U(q // H)
            c = U(q % C)
            n = U(q // C)
            ihp = U(ih + pad)
            iwp = U(iw + pad)
            acc = zero
            kh = U(0)
            while kh < KH:
                if ihp >= kh:
                    th = U(ihp - kh)
                    oh = U(th // stride)
                    if U(oh * stride) == th and oh < OH:
                        kw = U(0)
                        while kw < KW:
                            if iwp >= kw:
                                tw = U(iwp - kw)
                                ow = U(tw // stride)
                                if U(ow * stride) == tw and ow < OW:
                                    acc += cols[n, U(U(c * KH + kh) * KW + kw), U(oh * OW + ow)]
                            kw = U(kw + U(1))
                kh = U(kh + U(1))
            dx[n, c, ih, iw] = acc
            i = U(i + step)

    return _col2im_kernel


def maxpool2d_forward_kernel(U: Any) -> Any:
    """The ``maxpool2d_forward`` kernel with index type ``U`` (np.uint32 or np.uint64)."""

    @cuda.jit
    def _maxpool2d_forward_kernel(x, C, W, k, stride, OH, OW, n_items, out, idx):
        """out[n, c, oh, ow] = window max, idx[...] = its flat (ih*W + iw) index, int32.

        x (N, C, H, W), out and idx (N, C, OH, OW). Launch: launch_config(out.size), one thread
        per output element.
        """
        i = U(cuda.grid(1))
        step = U(cuda.gridsize(1))
        while i < n_items:  # grid-stride
            ow = U(i % OW)
            q = U(i // OW)
            oh = U(q % OH)
            q = U(q // OH)
            c = U(q % C)
            n = U(q // C)
            ih0 = U(oh * stride)
            iw0 = U(ow * stride)
            best = x[n, c, ih0, iw0]
            best_i = U(ih0 * W + iw0)
            kh = U(0)
            while kh < k:
                kw = U(0)
                while kw < k:
                    v = x[n, c, U(ih0 + kh), U(iw0 + kw)]
                    if v > best:
                        best = v
                        best_i = U(U(ih0 + kh) * W + U(iw0 + kw))
                    kw = U(kw + U(1))
                kh = U(kh + U(1))
            out[n, c, oh, ow] = best
            idx[n, c, oh, ow] = best_i
            i = U(i + step)

    return _maxpool2d_forward_kernel


def maxpool2d_backward_kernel(U: Any) -> Any:
    """The ``maxpool2d_backward`` kernel with index type ``U`` (np.uint32 or np.uint64)."""

    @cuda.jit
    def _maxpool2d_backward_kernel(dout, idx, C, H, W, k, stride, OH, OW, n_items, zero, dx):
        """dx[n, c, ih, iw] = sum of dout over the windows whose maximum is (ih, iw).

        The windows containing row ih are oh = ceil((ih - k + 1) / stride) .. floor(ih / stride),
        clipped to [0, OH); likewise for columns. dout, idx (N, C, OH, OW), dx (N, C, H, W);
        ``zero`` is 0 in dx's dtype. Launch: launch_config(dx.size), one thread per pixel of dx.
        """
        i = U(cuda.grid(1))
        step = U(cuda.gridsize(1))
        while i < n_items:  # grid-stride
            iw = U(i % W)
            q = U(i // W)
            ih = U(q % H)
            q = U(q // H)
            c = U(q % C)
            n = U(q // C)
            flat = U(ih * W + iw)
            oh = U(U(ih + stride - k) // stride) if U(ih + stride) >= k else U(0)
            oh_hi = min(U(OH - U(1)), U(ih // stride))
            ow_lo = U(U(iw + stride - k) // stride) if U(iw + stride) >= k else U(0)
            ow_hi = min(U(OW - U(1)), U(iw // stride))
            acc = zero
            while oh <= oh_hi:
                ow = ow_lo
                while ow <= ow_hi:
                    if U(idx[n, c, oh, ow]) == flat:
                        acc += dout[n, c, oh, ow]
                    ow = U(ow + U(1))
                oh = U(oh + U(1))
            dx[n, c, ih, iw] = acc
            i = U(i + step)

    return _maxpool2d_backward_kernel


def index_kernels(U: Any) -> dict[str, Any]:
    """The im2col / col2im / max-pool kernels with index type ``U`` (np.uint32 or np.uint64),
    by name."""
    return {"im2col_kernel": im2col_kernel(U), "col2im_kernel": col2im_kernel(U),
            "maxpool2d_forward_kernel": maxpool2d_forward_kernel(U),
            "maxpool2d_backward_kernel": maxpool2d_backward_kernel(U)}

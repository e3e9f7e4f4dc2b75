"""Tiled VAE decoding with GroupNorm statistics synchronized across tiles (method notes §7).

A frame too large for one decoder pass is cut into overlapping latent tiles. Decoding tiles
independently gives every tile its own GroupNorm statistics, which shows as colour and contrast
seams. Here every decoder GroupNorm (except the attention block's, kept per tile as in the official
patch) normalises with statistics pooled over all tiles of the same frame, per group, in fp32. With
``n_t`` the tile's element count in the group, ``N = sum_t n_t``, ``mu_t`` the tile mean and ``v_t``
its (biased) variance, the pool is the exact mean and variance of the tiles' elements taken together:

    mu      = sum_t (n_t / N) * mu_t
    sigma^2 = sum_t (n_t / N) * (v_t + (mu_t - mu)^2)       (within-tile + between-tile terms)

(overlaps are counted once per tile that holds them). Before 2026-12 the variance left out the
between-tile term, which biased it low; the exact pool halves the tiled-vs-untiled error on a
pointwise decoder.

**One decoder pass per tile (lockstep).** Every tile's decoder call runs on its own worker thread,
but only one runs at a time: the threads are used as coroutines. A tile runs until it reaches a
synchronized GroupNorm, hands its ``(n_t, mu_t, v_t)`` to the scheduler (the calling thread) and
waits; the next tile runs to the same GroupNorm; once every tile of the frame has arrived the
scheduler pools the statistics and resumes the tiles one after another with the pooled values, up
to the next GroupNorm, and so on. Each tile leaves the decoder with its output, which is blended
into the full-size canvas and dropped. Every decoder layer therefore runs exactly once per tile,
whatever the decoder's code looks like (diffusers' ``AutoencoderKL`` and
``AutoencoderKLTemporalDecoder``, the LDM autoencoder of :mod:`scalecrafter_video.models`): no block
is re-implemented here, and the GroupNorms are the only modules touched (an instance ``forward``,
removed on exit).

**Memory.** While a tile waits at a GroupNorm, the tensors its suspended decoder frames hold (the
GroupNorm input, the residual branch, the block input; found by walking the tile thread's Python
frames, never the model's parameters or buffers) can be *parked* in host memory and brought back when
the tile resumes (``park=True``; the default on accelerators). Accelerator memory then holds one
tile's activations at a time, as with an untiled decode of a tile, at the price of moving each tile's
live activations to the host and back at every GroupNorm. On the CPU parking is pointless and off.

Temporal decoders (:func:`synced_tiled_decode_temporal`, for diffusers'
``AutoencoderKLTemporalDecoder``, the Stable Video Diffusion VAE): tiles are spatial only and keep
the frame axis whole, so every tile holds all frames of its window and the decoder's temporal
layers (``TemporalResnetBlock``'s (3,1,1) convs, ``AlphaBlender`` mixing, ``time_conv_out``) see
every frame, as in the plain decode. The statistics are pooled with the grouping each GroupNorm
itself uses: the spatial ones (``ResnetBlock2D``, ``conv_norm_out``) see ``(b*f, c, h, w)`` and are
pooled per frame and group; the temporal ones (``TemporalResnetBlock.norm1/norm2``) see
``(b, c, f, h, w)``, so their groups span all frames of a video and are pooled per video and group.

On the CPU there is no other memory to park in: the lockstep decode then holds every tile's live
activations at each GroupNorm, about as much as the untiled decode (measured with
``scripts/bench_memory.py``, 512 px, quarter-width SD VAE, tiles of 16: 395 MiB tiled vs 343-371
MiB untiled). ``low_memory=True`` keeps the earlier decode for that case: one tile alive at a time
(62 MiB there), the pooled statistics found with one partial decoder pass per GroupNorm, about
``#GroupNorms / 2`` decoder passes per tile (13x the untiled time there, 15-25x elsewhere). Both
pool identically.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from typing import Callable

import torch
from torch import nn

from .ops import groupnorm_stats as gn

__all__ = ["synced_groupnorms", "synced_tiled_decode", "synced_tiled_decode_temporal", "tile_starts"]

OVERLAP = 0.25  # fraction of a tile shared with its neighbour (diffusers' tiling)


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` with ``stride`` covering ``[0, size)``; the last tile is
    the one that reaches the end (no tile lies wholly inside the overlap of the previous one)."""
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(starts[-1] + stride)
    return starts


def _in_attention(name: str) -> bool:
    """Whether the module at ``name`` belongs to an attention block (diffusers: ``...attentions.k...``
    or ``...group_norm``; LDM: ``mid.attn_1.norm``, ``up.k.attn.j.norm``)."""
    parts = name.split(".")
    return name.endswith("group_norm") or any(p in ("attentions", "attn") or p.startswith("attn_") for p in parts)


def synced_groupnorms(decoder: nn.Module, sync_attention: bool = False) -> list[nn.GroupNorm]:
    """The decoder's GroupNorms whose statistics are pooled across tiles (attention blocks' norms
    stay per tile unless ``sync_attention``), in module order."""
    return [m for name, m in decoder.named_modules()
            if isinstance(m, nn.GroupNorm) and (sync_attention or not _in_attention(name))]


# ----------------------------------------------------------------------------------------------
# Parking a suspended tile's activations in host memory


def _to_host(t: torch.Tensor) -> torch.Tensor:
    return t.to("cpu")


def _to_device(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``like`` is the parked tensor's original data (only its device and dtype are read)."""
    return t.to(device=like.device, dtype=like.dtype)


def _tensors_in(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, torch.Tensor)]
    return []


@contextlib.contextmanager
def _parked(device: torch.device, keep: set[int]):
    """Move the tensors held by the calling thread's frames that live on ``device`` to host memory
    (their ``.data``, so every reference sees the move) and bring them back on exit. Skipped: ids in
    ``keep`` (the model's parameters and buffers) and views (moving a view would split it from its
    base). Best effort: a view held by a frame keeps its base's device storage alive, and a parked
    base no longer shares storage with such a view (harmless without in-place writes, which the
    decoders here do not make between GroupNorms)."""
    found: dict[int, torch.Tensor] = {}
    frame = sys._getframe(2)  # the caller of the GroupNorm wrapper and up, to the thread's root
    while frame is not None:
        for value in frame.f_locals.values():
            for t in _tensors_in(value):
                if t.device == device and t._base is None and id(t) not in keep and not t.is_sparse:
                    found[id(t)] = t
        frame = frame.f_back
    del frame
    parked = []
    for t in found.values():
        original = t.data
        t.data = _to_host(original)
        parked.append((t, original.new_empty(0)))  # remembers device and dtype only
        del original
    try:
        yield len(parked)
    finally:
        for t, like in parked:
            t.data = _to_device(t.data, like)


# ----------------------------------------------------------------------------------------------
# Lockstep decoding


@contextlib.contextmanager
def _routed(norms: list[nn.GroupNorm], forward: Callable[[nn.GroupNorm, torch.Tensor], torch.Tensor]):
    """Route ``norms`` through ``forward(norm, x)`` (an instance attribute, removed on exit)."""
    try:
        for norm in norms:
            norm.forward = (lambda x, _n=norm: forward(_n, x))
        yield
    finally:
        for norm in norms:
            norm.__dict__.pop("forward", None)


class _Abort(BaseException):
    """Raised inside a suspended tile's decoder to unwind its thread when the decode is abandoned."""


_ABORT = object()
_current = threading.local()  # .tile: the _Tile whose decoder call runs on this thread


class _Tile:
    """One tile's decoder call on its own thread; it runs only while the scheduler waits for it."""

    def __init__(self, index: int, call: Callable[[], torch.Tensor], lockstep: "_Lockstep"):
        self.index, self.call, self.lockstep = index, call, lockstep
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._main, name=f"tiled-decode-{index}", daemon=True)

    def _main(self) -> None:
        _current.tile = self
        outbox = self.lockstep.outbox
        try:
            with self.lockstep.torch_state():
                out = self.call()
        except _Abort:
            return
        except BaseException as exc:  # handed to the scheduler, which re-raises it
            outbox.put((self, "error", exc))
            return
        outbox.put((self, "done", out))

    def suspend(self, norm: nn.GroupNorm, stats) -> tuple[torch.Tensor, torch.Tensor]:
        """On this tile's thread: report ``stats`` at ``norm``, wait for the pooled ``(mean, var)``."""
        self.lockstep.outbox.put((self, "norm", (norm, stats)))
        reply = self.inbox.get()
        if reply is _ABORT:
            raise _Abort
        return reply


class _Lockstep:
    """Runs tile decodes in lockstep, pooling the statistics at each of ``norms`` across the tiles.

    ``module``: the model whose parameters and buffers are never parked; ``shared``: other tensors
    all tiles read (the latents), never parked either; ``device``: where the tiles' activations live;
    ``park``: move a waiting tile's activations to host memory.
    """

    def __init__(self, norms: list[nn.GroupNorm], module: nn.Module, shared: list[torch.Tensor],
                 device: torch.device, park: bool):
        self.norms, self.device, self.park = norms, torch.device(device), park
        self.keep = {id(t) for t in (*module.parameters(), *module.buffers(), *shared)} if park else set()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        # Thread-local torch state of the caller, re-entered on each tile thread.
        self._grad = torch.is_grad_enabled()
        self._inference = torch.is_inference_mode_enabled()
        self._autocast = [(d, torch.get_autocast_dtype(d)) for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
        self._stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None

    @contextlib.contextmanager
    def torch_state(self):
        with contextlib.ExitStack() as stack:
            if self._inference:
                stack.enter_context(torch.inference_mode())
            stack.enter_context(torch.set_grad_enabled(self._grad))
            for device_type, dtype in self._autocast:
                stack.enter_context(torch.autocast(device_type, dtype=dtype))
            if self._stream is not None:
                torch.cuda.set_device(self.device)
                stack.enter_context(torch.cuda.stream(self._stream))
            yield

    def _forward(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        tile = getattr(_current, "tile", None)
        if tile is None or tile.lockstep is not self:  # called outside this decode: a plain GroupNorm
            return nn.GroupNorm.forward(norm, x)
        stats = gn.tile_statistics(norm, x)
        if not self.park:
            mean, var = tile.suspend(norm, stats)
        else:  # not the statistics: the scheduler pools them while this tile waits
            with _parked(self.device, self.keep | {id(t) for t in stats[1:]}):
                mean, var = tile.suspend(norm, stats)
        return gn.normalise(norm, x, mean, var)

    def run(self, calls: list[Callable[[], torch.Tensor]], on_done: Callable[[int, torch.Tensor], None]) -> None:
        """Run ``calls`` (one decoder call per tile) in lockstep; ``on_done(k, output)`` receives
        each tile's output as it finishes, in tile order. Re-raises the first tile's error."""
        tiles = [_Tile(k, call, self) for k, call in enumerate(calls)]
        started: list[_Tile] = []
        try:
            with _routed(self.norms, self._forward):
                waiting, reply = tiles, None  # tiles to (re)start this round, and what they get
                while waiting:
                    arrived = []  # (tile, norm, stats) of the tiles now waiting at a GroupNorm
                    for tile in waiting:
                        if tile in started:
                            tile.inbox.put(reply)
                        else:
                            started.append(tile)
                            tile.thread.start()
                        who, kind, payload = self.outbox.get()
                        if kind == "error":
                            raise payload
                        if kind == "done":
                            who.thread.join()
                            on_done(who.index, payload)
                        else:
                            arrived.append((who, *payload))
                        del payload
                    if arrived and len(arrived) != len(waiting):
                        raise RuntimeError("some tiles finished the decoder while others wait at a GroupNorm")
                    if len({id(norm) for _, norm, _ in arrived}) > 1:
                        raise RuntimeError("tiles reached different GroupNorms in lockstep")
                    if arrived:
                        reply = gn.pool_statistics(arrived[0][1], [stats for _, _, stats in arrived])
                    waiting = [tile for tile, _, _ in arrived]
        finally:
            for tile in started:
                if tile.thread.is_alive():
                    tile.inbox.put(_ABORT)
            for tile in started:
                tile.thread.join()


# ----------------------------------------------------------------------------------------------
# Low-memory decoding: one tile at a time, statistics found pass by pass


class _Stop(Exception):
    """Raised inside a tile's decoder once it reaches the GroupNorm being measured."""


def _multipass(norms: list[nn.GroupNorm], calls: list[Callable[[], torch.Tensor]],
               on_done: Callable[[int, torch.Tensor], None]) -> None:
    """Only one tile's activations alive at a time: pass k runs every tile up to the first GroupNorm
    whose pooled statistics are not known yet (earlier ones normalise with theirs), records the
    tile's statistics and stops; the pool is then fixed. The pass in which a tile gets through the
    decoder (all GroupNorms it reaches are known) is the final one. About ``#GroupNorms / 2``
    partial decoder passes per tile on top of the final one."""
    known: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    reached: list[nn.GroupNorm] = []
    stats: list = []

    def forward(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        pooled = known.get(id(norm))
        if pooled is not None:
            return gn.normalise(norm, x, *pooled)
        reached.append(norm)
        stats.append(gn.tile_statistics(norm, x))
        raise _Stop

    with _routed(norms, forward):
        while True:
            reached.clear(), stats.clear()
            for k, call in enumerate(calls):
                try:
                    out = call()
                except _Stop:
                    continue
                if k:
                    raise RuntimeError("tiles reached different GroupNorms in one measuring pass")
                on_done(0, out)  # every GroupNorm the decoder reaches is known: this is the final pass
                del out
                for k2 in range(1, len(calls)):
                    on_done(k2, calls[k2]())
                return
            if any(norm is not reached[0] for norm in reached):
                raise RuntimeError("tiles reached different GroupNorms in one measuring pass")
            known[id(reached[0])] = gn.pool_statistics(reached[0], list(stats))


# ----------------------------------------------------------------------------------------------
# Blending and the public functions


def _ramp(length: int, device) -> torch.Tensor:
    """Weights rising from (0, 1) over ``length`` samples: the incoming tile's share in an overlap."""
    return (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length


class _Canvas:
    """Accumulates decoded tiles with a linear cross-fade over each tile's overlap with the previous
    row / column (tiles arrive in row-major order); only the full-size output is kept."""

    def __init__(self, n: int, h: int, w: int, tile_size: int, rows: list[int], cols: list[int]):
        self.n, self.h, self.w, self.tile_size, self.rows, self.cols = n, h, w, tile_size, rows, cols
        self.scale = self.out = self.weight = None

    def add(self, i: int, j: int, tile: torch.Tensor) -> None:
        tile = tile.float()
        h, w, tile_size, rows, cols = self.h, self.w, self.tile_size, self.rows, self.cols
        if self.out is None:
            self.scale = tile.shape[-1] // (min(j + tile_size, w) - j)  # pixels per latent pixel
            scale = self.scale
            self.out = torch.zeros(self.n, tile.shape[1], h * scale, w * scale, dtype=torch.float32,
                                   device=tile.device)
            self.weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=tile.device)
        scale, out, weight = self.scale, self.out, self.weight
        th, tw = tile.shape[-2:]
        wy = torch.ones(th, device=tile.device)
        wx = torch.ones(tw, device=tile.device)
        # Linear cross-fade over the true overlap with the previous row / column.
        if i > 0:
            ov = (rows[rows.index(i) - 1] + tile_size - i) * scale
            wy[:ov] = _ramp(ov, tile.device)
        if j > 0:
            ov = (cols[cols.index(j) - 1] + tile_size - j) * scale
            wx[:ov] = _ramp(ov, tile.device)
        wt = (wy[:, None] * wx[None, :])[None, None]
        y0, x0 = i * scale, j * scale
        region = (slice(None), slice(None), slice(y0, y0 + th), slice(x0, x0 + tw))
        # out = out * (1 - wt) + tile * wt in the overlap, i.e. the previous tiles' blend fades out.
        out[region] = out[region] * (1 - wt) + tile * wt
        weight[region] = weight[region] * (1 - wt) + wt

    def result(self, dtype: torch.dtype) -> torch.Tensor:
        return (self.out / self.weight.clamp_min(1e-6)).to(dtype)


def _tiles(h: int, w: int, tile_size: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    stride = max(int(tile_size * (1 - OVERLAP)), 1)
    rows, cols = tile_starts(h, tile_size, stride), tile_starts(w, tile_size, stride)
    return rows, cols, [(i, j) for i in rows for j in cols]


def _plain(out) -> torch.Tensor:
    """``vae.decode``'s image: diffusers returns an output with ``.sample``, the LDM autoencoder a tensor."""
    return getattr(out, "sample", out)


def _decode_tiles(vae, z: torch.Tensor, tile_size: int, sync_attention: bool, sync: bool, park: bool | None,
                  low_memory: bool, decoder_kwargs: dict) -> torch.Tensor:
    """Shared body of the two public functions: ``z`` ``(n, c, h, w)`` -> ``(n, 3, H, W)``."""
    n, _, h, w = z.shape
    rows, cols, tiles = _tiles(h, w, tile_size)
    decoder = vae.decoder
    post_quant = getattr(vae, "post_quant_conv", None)  # none in diffusers' temporal VAE

    def call(i: int, j: int) -> Callable[[], torch.Tensor]:
        def decode() -> torch.Tensor:
            part = z[:, :, i : i + tile_size, j : j + tile_size]
            if post_quant is not None:
                part = post_quant(part)
            return decoder(part, **decoder_kwargs)
        return decode

    canvas = _Canvas(n, h, w, tile_size, rows, cols)
    if not sync:  # per-tile statistics: independent plain decodes
        for i, j in tiles:
            canvas.add(i, j, call(i, j)())
        return canvas.result(z.dtype)
    norms = synced_groupnorms(decoder, sync_attention)
    calls = [call(i, j) for i, j in tiles]
    on_done = lambda k, tile: canvas.add(*tiles[k], tile)  # noqa: E731
    if low_memory:
        _multipass(norms, calls, on_done)
        return canvas.result(z.dtype)
    if park is None:
        park = z.device.type != "cpu"
    shared = [z, *(v for v in decoder_kwargs.values() if isinstance(v, torch.Tensor))]
    _Lockstep(norms, vae, shared, z.device, park).run(calls, on_done)
    return canvas.result(z.dtype)


@torch.no_grad()
def synced_tiled_decode(
    vae, z: torch.Tensor, tile_size: int, sync_attention: bool = False, sync: bool = True,
    park: bool | None = None, low_memory: bool = False,
) -> torch.Tensor:
    """Decode scaled latents ``z`` ``(n, c, h, w)`` (already divided by the scaling factor) with
    latent tiles of ``tile_size``; returns ``(n, 3, H, W)`` like ``vae.decode(z).sample`` (diffusers'
    ``AutoencoderKL``) or ``vae.decode(z)`` (the LDM autoencoder), in ``z.dtype``.

    Tiles overlap by a quarter; the stride is ``int(tile_size * 0.75)``. A frame that fits in one
    tile is decoded in one plain pass. Every decoder layer runs once per tile (lockstep, see the
    module notes); ``park`` (default: on when ``z`` is not on the CPU) keeps waiting tiles'
    activations in host memory. ``low_memory=True`` holds one tile's activations at a time on any
    device, at about ``#GroupNorms / 2`` partial decoder passes per tile (module notes: for
    CPU-only machines). ``sync=False`` keeps per-tile statistics (the unsynchronized baseline, for
    comparisons). For the temporal (Stable Video Diffusion) VAE use
    :func:`synced_tiled_decode_temporal`.
    """
    if tile_size < 2:
        raise ValueError(f"tile_size must be at least 2 latent pixels, got {tile_size}")
    n, _, h, w = z.shape
    if h <= tile_size and w <= tile_size:
        return _plain(vae.decode(z))
    return _decode_tiles(vae, z, tile_size, sync_attention, sync, park, low_memory, {})


@torch.no_grad()
def synced_tiled_decode_temporal(
    vae, z: torch.Tensor, tile_size: int, num_frames: int, sync_attention: bool = False, sync: bool = True,
    park: bool | None = None, low_memory: bool = False,
) -> torch.Tensor:
    """Tiled decode for a temporal VAE (diffusers' ``AutoencoderKLTemporalDecoder``, Stable Video
    Diffusion); the counterpart of ``vae.decode(z, num_frames=num_frames).sample``.

    Shapes:
        ``z``: ``(b * num_frames, c, h, w)`` scaled latents (already divided by the scaling factor),
        video-major as the VAE expects: rows ``k * num_frames ... (k + 1) * num_frames - 1`` are the
        frames of video ``k``, in time order.
        Each tile: ``z[:, :, i:i + tile_size, j:j + tile_size]``, i.e. ``(b * num_frames, c, th, tw)``
        with ``th, tw <= tile_size``: every frame of every video at one spatial window, decoded with
        the same ``num_frames`` and an all-zero ``image_only_indicator`` ``(b, num_frames)`` as the
        plain decode, so the temporal layers mix the same frames as they would untiled.
        Returns ``(b * num_frames, 3, H, W)`` (``H = h * s``, ``W = w * s``, ``s`` the VAE's upscale
        factor), in ``z.dtype``.

    GroupNorm statistics are pooled over the tiles per the layer's own grouping: per frame and
    group for the spatial norms (input ``(b*f, c, h, w)``), per video and group, over all its
    frames, for the temporal norms (input ``(b, c, f, h, w)``). With the attention block's norm
    left per tile (``sync_attention=False``) as in the 2D path. Every decoder layer runs once per
    tile, in lockstep (module notes); norms the decoder never calls (such as the mid-block attention
    when ``layers_per_block=1``) cost nothing. Tiles overlap by a quarter and are blended linearly as
    in :func:`synced_tiled_decode`; a frame that fits in one tile is decoded in one plain pass. Each
    tile holds all ``b * num_frames`` frames of its window, so call it per video to bound memory
    further. ``park`` and ``low_memory`` as in :func:`synced_tiled_decode`; ``sync=False`` keeps
    per-tile statistics.
    """
    if tile_size < 2:
        raise ValueError(f"tile_size must be at least 2 latent pixels, got {tile_size}")
    if z.ndim != 4:
        raise ValueError(f"expected latents (batch * num_frames, c, h, w), got shape {tuple(z.shape)}")
    n, _, h, w = z.shape
    if num_frames < 1 or n % num_frames:
        raise ValueError(f"{n} latent frames are not a whole number of videos of {num_frames} frames")
    if h <= tile_size and w <= tile_size:
        return vae.decode(z, num_frames=num_frames).sample
    indicator = torch.zeros(n // num_frames, num_frames, dtype=z.dtype, device=z.device)
    return _decode_tiles(vae, z, tile_size, sync_attention, sync, park, low_memory,
                         {"image_only_indicator": indicator, "num_frames": num_frames})

"""The web app: :class:`Studio` (inputs checked, videos rendered and written; no Gradio) and
:func:`build_app` (the Gradio page around it; Gradio is imported there and nowhere else).

Every call into the library's generation code (model loading, schedules, rendering, the sidecar record) goes
through the adapter section right below, so that moving that code to another module means changing
this section only.
"""

from __future__ import annotations

import math
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ScaleCrafterError


# =========================================================================== adapter
# The only place that knows where the library's recipes and helpers live (recipes/, runtime.py,
# demo/, batch/); the rest of the app calls these.
def load_model(model=None, *, device: str = "auto", dtype: str = "auto", model_config=None, clip=None,
               motion_adapter=None):
    """``(pipe, name)``: the model at ``model``, or the embedded demo model when ``model`` is None."""
    if model is None:
        from ..demo.model import DEMO_MODEL_DIR
        from ..demo.showcase import load_demo_pipeline

        return load_demo_pipeline(), str(DEMO_MODEL_DIR)
    from ..pipelines import load_pipeline
    from ..runtime import resolve_device, resolve_dtype

    dev = resolve_device(device)
    pipe = load_pipeline(model, device=dev, dtype=resolve_dtype(dtype, dev), model_config=model_config,
                         clip_path=clip, motion_adapter=motion_adapter)
    return pipe, str(model)


def make_schedule(pipe, height: int, width: int, method: str, preset: str | None = None,
                  yaml_text: str | None = None):
    """The completed schedule: a preset, a YAML text, or (neither) the automatic one; ``method`` wins."""
    from ..recipes import config_for, explicit_config

    config = explicit_config(preset=preset, method=method) if preset else None
    if yaml_text is not None:
        config = _schedule_from_text(yaml_text, method)
    return config_for(pipe, height, width, config, method=method)


def render_video(pipe, config, prompt: str, seed: int, lr_guidance=None, **call):
    """One seeded sample, uint8 ``(f, h, w, 3)``."""
    from ..recipes import sample_video

    return sample_video(pipe, config, prompt, seed, lr_guidance=lr_guidance, **call)


def run_record(pipe, **fields) -> dict:
    """The project's one sidecar record; eta, dtype and device are the pipeline's."""
    from ..recipes.sidecar import run_record as record, weights_placement

    fields.setdefault("eta", pipe.defaults.get("eta"))
    for key, value in weights_placement(pipe).items():
        fields.setdefault(key, value)
    return record(**fields)


def demo_prompt() -> str:
    """The `demo` command's prompt (with its seed 2, Direct-Inf draws two circles)."""
    from ..demo.showcase import DEFAULT_PROMPT

    return DEFAULT_PROMPT


def file_slug(text: str, length: int = 32) -> str:
    from ..batch.plan import slug

    return slug(text, length)


def resolution_levels(pipe) -> int:
    """The UNet's number of resolution levels (what the automatic schedule is built on)."""
    from ..engine import unet_levels

    return unet_levels(pipe.unet)


def is_out_of_memory(exc: BaseException) -> bool:
    from ..runtime import is_out_of_memory as out_of_memory

    return out_of_memory(exc)


def _schedule_from_text(text: str, method: str):
    """A schedule from the page's YAML text (nothing is written to disk for it)."""
    from ..config import ScaleCrafterConfig

    return ScaleCrafterConfig.from_yaml_text(text, source="the schedule text", method=method)
# ========================================================================= end adapter


METHOD_LABELS = {"Direct-Inf": "direct", "Attn-SF": "attn-sf", "ScaleCrafter": "scalecrafter"}
METHOD_NAMES = {v: k for k, v in METHOD_LABELS.items()}
AUTO = "auto"
EDITED = "edited YAML (below)"
# Command-line flag names in library messages, as the page calls those fields.
_FIELD_NAMES = {
    "--negative-prompt": "Negative prompt", "--prompt": "Prompt", "--height": "Height", "--width": "Width",
    "--frames": "Frames", "--steps": "Steps", "--guidance": "Guidance", "--seed": "Seed",
    "--image PATH": "an input image", "--image": "Input image", "--lr-guidance": "LR guidance",
}
_SIZE = re.compile(r"\s*(\d+)\s*[xX×*]\s*(\d+)(?:\s|$|·|\()")
ASPECTS = ((16, 9), (9, 16), (2, 1), (1, 2))


def page_message(text: str) -> str:
    """A library message with command-line flag names replaced by the page's field names."""
    for flag, name in _FIELD_NAMES.items():
        text = re.sub(re.escape(flag) + r"(?![\w-])", name, text)
    return text


def parse_size(text) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` (a size choice's label, or typed) -> ``(height, width)``."""
    m = _SIZE.match(f"{text} ") if isinstance(text, str) else None
    if m is None:
        raise ScaleCrafterError(f"Size must be HEIGHTxWIDTH in pixels, e.g. 64x64; got {str(text)[:40]!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 1 or w < 1:
        raise ScaleCrafterError(f"Size must be positive, got {h}x{w}")
    return h, w


def _integer(value, name: str, low: int) -> int:
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
        raise ScaleCrafterError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ScaleCrafterError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if value < low:
        raise ScaleCrafterError(f"{name} must be at least {low}, got {value}")
    return value


def _number(value, name: str) -> float:
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScaleCrafterError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass
class Request:
    """What the page sends (the fields of the form, unconverted)."""

    prompt: str = ""
    negative_prompt: str | None = None
    image: str | None = None
    size: str = ""
    frames: float | None = None
    steps: float | None = None
    guidance: float | None = None
    seed: float = 0
    method: str = "ScaleCrafter"
    schedule: str = AUTO
    schedule_yaml: str = ""
    lr_guidance: float = 0.0
    compare: bool = False


@dataclass
class Result:
    videos: list[tuple[str, Path]] = field(default_factory=list)  # (label, mp4), Direct-Inf first
    files: list[Path] = field(default_factory=list)  # every file written (mp4s and sidecars)
    schedule_yaml: str = ""
    seconds: float = 0.0
    summary: str = ""


class Studio:
    """The model (loaded once), its defaults, and one generation at a time into ``out_dir``."""

    def __init__(self, pipe, model_name: str, out_dir, *, demo: bool = False):
        self.pipe, self.model_name, self.out_dir, self.demo = pipe, model_name, Path(out_dir), demo
        self.needs_image = bool(getattr(pipe, "needs_image", False))
        d = pipe.defaults
        th, tw = (int(v) for v in pipe.train_size)
        if demo:  # the `demo` command's settings: the object repeats under Direct-Inf, not under ScaleCrafter
            self.defaults = dict(prompt=demo_prompt(), size=self._label(2 * th, 2 * tw), frames=d.get("num_frames", 8),
                                 steps=20, guidance=d.get("guidance_scale", 1.0), seed=2, compare=True)
        else:
            self.defaults = dict(prompt="", size=self._label(2 * th, 2 * tw), frames=d.get("num_frames", 1),
                                 steps=d.get("num_inference_steps", 50), guidance=d.get("guidance_scale", 7.5),
                                 seed=0, compare=True)

    # ------------------------------------------------------------------ choices
    def size_multiple(self) -> int:
        """Sides offered are multiples of this (pixels per latent x the UNet's total downsampling)."""
        try:
            levels = resolution_levels(self.pipe)
        except Exception:  # noqa: BLE001 - a pipeline without a readable UNet: the VAE factor alone
            levels = 1
        return int(self.pipe.vae_scale_factor) * 2 ** (levels - 1)

    def _label(self, h: int, w: int) -> str:
        th, tw = self.pipe.train_size
        ratio = (h * w) / (th * tw)
        side = h / th if abs(h / th - w / tw) < 1e-9 else None
        what = f"{side:g}x native" if side is not None else f"{_aspect(h, w)}, {ratio:.3g}x pixels"
        return f"{h}x{w} · {what}"

    def size_choices(self) -> list[str]:
        """Multiples of the native size, then common aspect ratios at 4x and 9x the native pixels."""
        th, tw = (int(v) for v in self.pipe.train_size)
        m = self.size_multiple()

        def snap(v: float) -> int:
            return max(m, int(round(v / m)) * m)

        sizes = [(snap(k * th), snap(k * tw)) for k in (1, 1.5, 2, 3, 4)]
        for k in (2, 3):
            area = k * k * th * tw
            for rw, rh in ASPECTS:
                w = math.sqrt(area * rw / rh)
                sizes.append((snap(area / w), snap(w)))
        out, seen = [], set()
        for h, w in sizes:
            if (h, w) not in seen:
                seen.add((h, w))
                out.append(self._label(h, w))
        return out

    # ------------------------------------------------------------------ schedule
    def schedule(self, size, method_label: str, schedule: str, yaml_text: str | None):
        """The completed :class:`ScaleCrafterConfig` for these fields (raises a user message)."""
        height, width = parse_size(size)
        self.pipe.check_size(height, width)
        method = self._method(method_label)
        if schedule in (None, "", AUTO):
            return make_schedule(self.pipe, height, width, method)
        if schedule == EDITED:
            if not (yaml_text or "").strip():
                raise ScaleCrafterError("the schedule is 'edited YAML' but the YAML box is empty")
            return make_schedule(self.pipe, height, width, method, yaml_text=yaml_text)
        return make_schedule(self.pipe, height, width, method, preset=schedule)

    def schedule_yaml(self, size, method_label: str, schedule: str, yaml_text: str | None) -> str:
        return self.schedule(size, method_label, schedule, yaml_text).to_yaml()

    @staticmethod
    def _method(label: str) -> str:
        if label not in METHOD_LABELS:
            raise ScaleCrafterError(f"Method must be one of {', '.join(METHOD_LABELS)}, got {label!r}")
        return METHOD_LABELS[label]

    # ------------------------------------------------------------------ generation
    def check(self, req: Request) -> dict:
        """Every field checked and converted, and the schedule resolved, before anything runs."""
        from ..recipes.inputs import check_model_inputs, check_sampling_numbers, check_text, load_image

        prompt = (req.prompt or "").strip()
        if not prompt:
            raise ScaleCrafterError("Prompt is empty: describe the video to generate")
        negative = (req.negative_prompt or "").strip() or None
        check_text(prompt)
        check_text(negative, "--negative-prompt")
        height, width = parse_size(req.size)
        frames = _integer(req.frames, "Frames", 1)
        steps = _integer(req.steps, "Steps", 1)
        seed = _integer(req.seed, "Seed", 0)
        guidance = _number(req.guidance, "Guidance")
        lr = _number(req.lr_guidance if req.lr_guidance is not None else 0.0, "LR guidance")
        if not 0.0 <= lr <= 1.0:
            raise ScaleCrafterError(f"LR guidance must be in [0, 1] (0 = off), got {lr:g}")
        max_steps = getattr(getattr(self.pipe.scheduler, "config", None), "num_train_timesteps", None)
        check_sampling_numbers(height=height, width=width, frames=frames, steps=steps, guidance=guidance, seed=seed,
                               negative_prompt=negative, max_steps=max_steps)
        self.pipe.check_size(height, width)
        image = load_image(req.image) if req.image else None
        check_model_inputs(self.pipe, image, {})
        method = self._method(req.method)
        if req.compare and method == "direct":
            raise ScaleCrafterError("Compare puts Direct-Inf next to Attn-SF or ScaleCrafter: choose one of those "
                                    "as the method, or untick Compare")
        if lr > 0 and method == "direct":
            raise ScaleCrafterError("LR guidance re-runs steps with the schedule on: choose Attn-SF or ScaleCrafter")
        config = self.schedule(req.size, req.method, req.schedule, req.schedule_yaml)
        if lr > 0 and not getattr(self.pipe, "supports_lr_guidance", False):
            raise ScaleCrafterError(f"LR guidance is supported for diffusers text-to-video folders, not for "
                                    f"{type(self.pipe).__name__}")
        call = dict(negative_prompt=negative, height=height, width=width, num_frames=frames, num_inference_steps=steps,
                    guidance_scale=guidance)
        if image is not None:
            call["image"] = image
        return dict(prompt=prompt, negative=negative, height=height, width=width, frames=frames, steps=steps,
                    seed=seed, guidance=guidance, lr=lr or None, method=method, config=config, call=call)

    def generate(self, req: Request, stage=None) -> Result:
        """Check, render (Direct-Inf first when comparing), write each mp4 and its sidecar under ``out_dir``.

        ``stage(label)`` is called before each render (the page's progress description)."""
        from ..export import check_free_space, check_output_path, write_json, write_video
        from ..recipes.inputs import family_name

        started = time.perf_counter()
        p = self.check(req)
        config = p["config"]
        runs = [(METHOD_NAMES[config.method] + (" + LR" if p["lr"] else ""), config, p["lr"])]
        if req.compare:
            runs.insert(0, ("Direct-Inf", config.replace(method="direct"), None))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}_{file_slug(p['prompt'])}_s{p['seed']}"
        targets = self._free_names(base, [cfg.method + ("-lr" if lr else "") for _, cfg, lr in runs])
        for target in targets:
            check_output_path(target, what="output")
            check_output_path(Path(f"{target}.json"), what="sidecar")
        check_free_space(targets[0], p["frames"] * len(runs), p["height"], p["width"])

        videos, timings = [], []
        for label, cfg, lr in runs:
            if stage is not None:
                stage(label)
            t0 = time.perf_counter()
            videos.append(render_video(self.pipe, cfg, p["prompt"], p["seed"], lr_guidance=lr, **p["call"]))
            timings.append(round(time.perf_counter() - t0, 2))
        seconds = round(time.perf_counter() - started, 2)

        fps = self.pipe.defaults.get("fps", 8)
        result = Result(schedule_yaml=config.to_yaml(), seconds=seconds)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for (label, cfg, lr), video, target, took in zip(runs, videos, targets, timings):
            out = write_video(video, target, fps=fps)
            sidecar = run_record(
                self.pipe, prompt=p["prompt"], negative_prompt=p["negative"], seed=p["seed"], model=self.model_name,
                family=family_name(self.pipe), height=p["height"], width=p["width"], frames=int(video.shape[0]),
                fps=fps, steps=p["steps"], guidance=p["guidance"], config=cfg.to_dict(), seconds=took,
                label=label, method=cfg.method, lr_guidance=lr, compare=bool(req.compare), image=req.image or None,
                run_seconds=seconds, written_by="scalecrafter-video ui")
            try:
                side = write_json(Path(f"{out}.json"), sidecar)
            except BaseException:
                out.unlink(missing_ok=True)  # no video without its sidecar
                raise
            result.videos.append((label, out))
            result.files += [out, side]
        parts = ", ".join(f"{label} {took:.1f} s" for (label, _, _), took in zip(runs, timings))
        result.summary = (f"Done in {seconds:.1f} s ({parts}): {p['height']}x{p['width']}, {p['frames']} frames, "
                          f"{p['steps']} steps, seed {p['seed']}. Written to {self.out_dir}.")
        return result

    def _free_names(self, base: str, methods: list[str]) -> list[Path]:
        for n in range(1, 1000):
            suffix = "" if n == 1 else f"-{n}"
            names = [self.out_dir / f"{base}{suffix}_{m}.mp4" for m in methods]
            if not any(p.exists() or Path(f"{p}.json").exists() for p in names):
                return names
        raise ScaleCrafterError(f"too many outputs named {base}* in {self.out_dir}")


def _aspect(h: int, w: int) -> str:
    g = math.gcd(h, w)
    return f"{w // g}:{h // g}"


def failure_message(exc: BaseException) -> str:
    """One line for the page: the user's fix for our errors, the kind of failure otherwise."""
    if isinstance(exc, ScaleCrafterError):
        return page_message(str(exc))
    if is_out_of_memory(exc):
        return "out of memory at this size: try a smaller size or fewer frames"
    if isinstance(exc, OSError) and exc.strerror:
        return f"could not write the output: {exc.strerror}"
    text = str(exc).strip().splitlines()
    return f"generation failed ({type(exc).__name__}{': ' + text[0][:300] if text else ''})"


# =========================================================================== page
CSS = """
#sc-videos video { image-rendering: pixelated; width: 100%; max-height: 420px; object-fit: contain; }
#sc-status { min-height: 2em; }
"""


def build_app(studio: Studio):
    """The Gradio Blocks of the app (queue: one generation at a time)."""
    import gradio as gr

    d = studio.defaults
    from ..config import list_presets

    with gr.Blocks(title="ScaleCrafter video", analytics_enabled=False) as app:
        gr.Markdown(
            f"## ScaleCrafter: higher-resolution video without retraining\n"
            f"Model `{Path(studio.model_name).name}` (native {studio.pipe.train_size[0]}x{studio.pipe.train_size[1]}). "
            "Direct-Inf runs the model unchanged above its native size (objects repeat); ScaleCrafter re-dilates "
            "its convolutions; Attn-SF only rescales attention. **Compare** renders Direct-Inf and your method with "
            "the same seed.")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(label="Prompt", value=d["prompt"], lines=2, elem_id="sc-prompt")
                negative = gr.Textbox(label="Negative prompt", value="", lines=1,
                                      info="used when guidance > 1")
                image = gr.Image(label="Input image (first frame)", type="filepath", format="png",
                                 sources=["upload"], visible=studio.needs_image)
                size = gr.Dropdown(studio.size_choices(), value=d["size"], allow_custom_value=True,
                                   label="Size (height x width, pixels)",
                                   info="pick one, or type e.g. 64x96")
                with gr.Row():
                    frames = gr.Number(label="Frames", value=d["frames"], precision=0, minimum=1)
                    steps = gr.Number(label="Steps", value=d["steps"], precision=0, minimum=1)
                with gr.Row():
                    guidance = gr.Number(label="Guidance", value=d["guidance"], minimum=1)
                    seed = gr.Number(label="Seed", value=d["seed"], precision=0, minimum=0)
                method = gr.Radio(list(METHOD_LABELS), value="ScaleCrafter", label="Method")
                compare = gr.Checkbox(label="Compare with Direct-Inf (same seed)", value=d["compare"])
                lr = gr.Slider(0, 1, value=0, step=0.05, label="LR guidance",
                               info="fraction of the steps re-run at the target size from the native-size "
                                    "sample (0 = off)")
                with gr.Accordion("Schedule", open=False):
                    schedule = gr.Dropdown([AUTO, EDITED] + list_presets(), value=AUTO, label="Schedule",
                                           info="auto: the paper's rule for this model and size; the Method above "
                                                "overrides the schedule's own")
                    schedule_yaml = gr.Code(language="yaml", label="Resolved schedule (edit it to use it)",
                                            interactive=True, lines=12)
                run = gr.Button("Generate", variant="primary", elem_id="sc-generate")
            with gr.Column(scale=2):
                status = gr.Markdown(label="Status", show_label=False, elem_id="sc-status")
                with gr.Row(elem_id="sc-videos", equal_height=True):
                    left = gr.Video(label="Direct-Inf", interactive=False, elem_id="sc-video-left", loop=True,
                                    autoplay=True)
                    right = gr.Video(label="ScaleCrafter", interactive=False, elem_id="sc-video-right", loop=True,
                                     autoplay=True)
                files = gr.File(label="Downloads (mp4 + sidecar JSON)", file_count="multiple", interactive=False)
                ran = gr.Code(language="yaml", label="Schedule that ran", interactive=False, lines=10)

        def refresh_schedule(size_v, method_v, schedule_v, status_v):
            """The resolved schedule for the current fields; a field it cannot use is named in the status
            (and that message is cleared again once the fields are fine)."""
            if schedule_v == EDITED:
                return gr.skip(), gr.skip()
            try:
                text = studio.schedule_yaml(size_v, method_v, schedule_v, None)
            except Exception as exc:  # noqa: BLE001 - shown in the page, never raised
                return "", _error(failure_message(exc))
            return text, ("" if (status_v or "").startswith(_error("")) else gr.skip())

        def generate(prompt_v, negative_v, image_v, size_v, frames_v, steps_v, guidance_v, seed_v, method_v,
                     schedule_v, yaml_v, lr_v, compare_v, progress=gr.Progress(track_tqdm=True)):
            req = Request(prompt=prompt_v, negative_prompt=negative_v, image=image_v, size=size_v, frames=frames_v,
                          steps=steps_v, guidance=guidance_v, seed=seed_v, method=method_v, schedule=schedule_v,
                          schedule_yaml=yaml_v, lr_guidance=lr_v, compare=bool(compare_v))
            progress(0, desc="checking the inputs")
            try:
                result = studio.generate(req, stage=lambda label: progress(0, desc=f"{label}: denoising"))
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message; the app keeps serving
                if not isinstance(exc, ScaleCrafterError):
                    traceback.print_exc()  # for the server's log; the page gets one line
                return (gr.update(value=None), gr.update(value=None), None, gr.skip(),
                        _error(failure_message(exc)))
            videos = result.videos
            first = videos[0] if len(videos) == 2 else None
            last = videos[-1]
            return (gr.update(value=str(first[1]) if first else None, label=first[0] if first else "Direct-Inf"),
                    gr.update(value=str(last[1]), label=last[0]),
                    [str(f) for f in result.files], result.schedule_yaml, plain_markdown(result.summary))

        for trigger in (size.change, method.change, schedule.change):
            trigger(refresh_schedule, [size, method, schedule, status], [schedule_yaml, status], queue=False,
                    show_progress="hidden", api_visibility="private")
        schedule_yaml.input(lambda: EDITED, None, schedule, queue=False, show_progress="hidden",
                            api_visibility="private")
        app.load(refresh_schedule, [size, method, schedule, status], [schedule_yaml, status], queue=False,
                 api_visibility="private")
        run.click(generate, [prompt, negative, image, size, frames, steps, guidance, seed, method, schedule,
                             schedule_yaml, lr, compare], [left, right, files, ran, status], api_name="generate",
                  concurrency_limit=1)
    app.queue(default_concurrency_limit=1)
    return app


def _error(message: str) -> str:
    return f"**Error:** {plain_markdown(message)}"


def plain_markdown(text: str) -> str:
    """``text`` shown as written in the page's Markdown (globs, paths with underscores, <tags>)."""
    return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)


def import_gradio(out_dir=None):
    """Gradio, without analytics or version checks, keeping its files under ``out_dir/.uploads``
    (read when Gradio is first imported); a user message when it is not installed."""
    import os

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no requests leave the machine
    if out_dir is not None:
        os.environ["GRADIO_TEMP_DIR"] = str((Path(out_dir) / ".uploads").resolve())
    try:
        import gradio
    except ImportError:
        raise ScaleCrafterError('the web app needs Gradio, an optional extra: pip install -e ".[ui]" '
                                '(or pip install "scalecrafter-video[ui]")') from None
    return gradio


def serve(studio: Studio, host: str = "127.0.0.1", port: int | None = 7860, *, block: bool = True,
          quiet: bool = False, announce: str | None = None):
    """Start the app on ``host:port`` (``port=None``: a free one); returns ``(app, url)`` when not blocking.

    Outputs are served from ``studio.out_dir`` in place (no copies); uploads go under
    ``out_dir/.uploads``; nothing is written anywhere else.
    """
    studio.out_dir.mkdir(parents=True, exist_ok=True)
    gr = import_gradio(studio.out_dir)
    out_dir = str(studio.out_dir.resolve())
    gr.set_static_paths([out_dir])  # served in place, not copied into a cache
    app = build_app(studio)
    # System fonts: the default theme would have the browser fetch web fonts from the internet.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    try:
        _, url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=True, share=False,
                               inbrowser=False, quiet=quiet, show_error=False, ssr_mode=False, mcp_server=False,
                               theme=theme, css=CSS, footer_links=["api"],
                               allowed_paths=[out_dir])  # the players' check: anywhere, not only under cwd or /tmp
    except OSError:  # the port is taken, or the address is not this machine's
        raise ScaleCrafterError(f"cannot listen on {host}:{port}: the port is in use or the address is not this "
                                "machine's; choose another --port (or --host)") from None
    if announce:
        print(f"{announce}; open {url}  (Ctrl-C to stop)", flush=True)
    if not block:
        return app, url
    try:
        app.block_thread()
    finally:
        app.close()
    return app, url


def run_app(*, model=None, model_config=None, clip=None, motion_adapter=None, device: str = "auto",
            dtype: str = "auto", host: str = "127.0.0.1", port: int = 7860, out_dir="outputs/ui") -> None:
    """``scalecrafter-video ui``: check, load the model once, serve until Ctrl-C / SIGTERM."""
    from ..export import check_output_path

    if not 0 < port < 65536:
        raise ScaleCrafterError(f"--port must be in 1..65535, got {port}")
    import_gradio(out_dir)  # before the model loads: a missing extra is reported at once
    if model is None and any(v is not None for v in (model_config, clip, motion_adapter)):
        raise ScaleCrafterError("--model-config, --clip and --motion-adapter need --model")
    check_output_path(Path(out_dir) / "probe.mp4", what="--out-dir")  # writable, not under a file
    pipe, name = load_model(model, device=device, dtype=dtype, model_config=model_config, clip=clip,
                            motion_adapter=motion_adapter)
    studio = Studio(pipe, name, out_dir, demo=model is None)
    serve(studio, host, port, block=True, quiet=True,
          announce=f"scalecrafter-video ui: {name} (native {pipe.train_size[0]}x{pipe.train_size[1]}), "
                   f"outputs in {out_dir}")

"""The Gradio page over an :class:`~dpi_jax.app.engine.Engine`: inputs on the left (a demo face, an LR or HR face,
a photo), DPI's controls below them, results on the right. Every visitor's inputs live in the page's per-session
state; the engine holds only the networks."""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from dpi_jax import inference, sampler
from dpi_jax.app.engine import SWEEP_TAUS, Controls, Engine, UploadError, decode_upload, paper_values

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio is imported: no calls home
try:
    import gradio as gr
except ImportError as err:  # the optional extra
    raise inference.SetupError("the page needs Gradio: pip install -e '.[app]'") from err

log = logging.getLogger(__name__)

CSS = """
#results img, #demo_faces img, #preview img { image-rendering: pixelated; }
#status { min-height: 2em; }
"""
STEPS = {"ddpm": [10, 25, 50, 100, 250, 1000], "ddim": [10, 20, 50, 100]}
PHOTO_SIDE = 1024  # the before/after view's longer side (the download has the full size)
HEADER = """# DPI: diffusion prior interpolation for face super-resolution
Pick a face, set **tau** (stage I, the fixed condition mask, while the timestep t > tau; stage II below it), **s** (the
random adaptive condition mask's sharpness) and **omega** (stage II's weight w = t / omega), and run. tau and omega
count the original timestep t of {T}, whatever the steps. Moving a slider does not recompile; the first run of a
scale, method, step count or switch does."""


def _slider_info(name: str, scale: int, method: str, config_value: float) -> str:
    paper = paper_values(scale, method)
    what = {"tau": "stage II for t <= tau; 0 = no stage II", "s": "RACM sharpness (Eq. 14)",
            "omega": "w = t / omega in stage II (Eq. 9)"}[name]
    if paper is None:
        return f"{what}. The paper has no x{scale} setting; the config's: {config_value:g}"
    value = paper[("tau", "s", "omega").index(name)]
    return f"{what}. Paper, x{scale} {method.upper()}: {value:g}" + ("" if value == config_value else
                                                                      f" (config: {config_value:g})")


def _metrics_table(measured: dict, seeds: int) -> str:
    gt = "psnr" in measured
    lines = ["| | LR consistency (dB) |" + (" PSNR to ground truth (dB) |" if gt else ""),
             "| --- | --- |" + (" --- |" if gt else ""),
             f"| bicubic | {measured['lr_psnr_bicubic']:.2f} |" + (f" {measured['psnr_bicubic']:.2f} |" if gt else "")]
    for n in range(seeds):
        lines.append(f"| DPI seed {n} | {measured['lr_psnr'][n]:.2f} |" + (f" {measured['psnr'][n]:.2f} |" if gt
                                                                            else ""))
    lines.append(f"\n**Diversity** (mean per-pixel std over the {seeds} seed(s), [0, 1] scale): "
                 f"{measured['diversity']:.4f}")
    return "\n".join(lines)


def _error(err: BaseException) -> str:
    if isinstance(err, (UploadError, ValueError, inference.SetupError)):
        return f"**Error:** {err}"
    log.exception("the page's request failed")
    return f"**Error:** {type(err).__name__}: {err} (the server goes on; see its log)"


def build(engine: Engine) -> gr.Blocks:
    """The page."""
    scales = engine.scales
    first = engine.defaults(scales[-1] if 8 not in scales else 8)
    num_timesteps = int(engine.runs[first.scale].diffusion.num_timesteps)
    demo_names = list(engine.demo)

    def controls_of(scale, method, steps, tau, s, omega, seeds, crt, refine, weight) -> Controls:
        try:
            steps = int(steps)
        except (TypeError, ValueError):
            raise ValueError(f"steps = {steps!r}: must be a whole number") from None
        return Controls(int(str(scale).lstrip("x")), float(tau), float(s), float(omega), int(seeds),
                        str(method).lower(), steps, bool(crt), bool(refine), bool(weight))

    def reporter(progress):
        return lambda done, total, what: progress((done, total), desc=what, unit="seeds")

    def input_face(source, demo_index, lr_image, hr_image, scale):
        if source == "demo":
            name = demo_names[int(demo_index)]
            return engine.face(engine.demo[name], scale, synthetic=True, name=name)
        if source == "lr":
            if lr_image is None:
                raise UploadError("upload an LR face first (tab 'LR face')")
            return engine.face(lr_image, scale, synthetic=False, name="lr_upload")
        if hr_image is None:
            raise UploadError("upload an HR face first (tab 'HR face')")
        return engine.face(hr_image, scale, synthetic=True, name="hr_upload")

    def run(source, demo_index, lr_image, hr_image, photo, face_choice, scale, method, steps, tau, s, omega, seeds,
            crt, refine, weight, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        hidden = gr.ImageSlider(visible=False)
        try:
            controls = controls_of(scale, method, steps, tau, s, omega, seeds, crt, refine, weight)
            engine.check(controls)
            start = time.perf_counter()
            if source == "photo":
                return run_photo(photo, face_choice, controls, progress, start)
            face = input_face(source, demo_index, lr_image, hr_image, controls.scale)
            results = engine.sample(face, controls, reporter(progress))
            seconds = time.perf_counter() - start
            tiles = engine.tiles(face, results)
            archive = engine.archive({f"{face.name}_{n}_{caption.replace(' ', '_')}": image
                                      for n, (image, caption) in enumerate(tiles)})
            note = f" ({face.note})" if face.note else ""
            status = (f"**Done** in {seconds:.1f} s: {face.name}{note}; {controls.describe()}. Programs compiled "
                      f"so far: {sampler.compilation_count()}.")
            measured = _metrics_table(engine.measure(face, results, controls.scale), controls.seeds)
            return status, gr.Gallery(tiles, columns=len(tiles)), measured, hidden, str(archive)
        except Exception as err:  # shown on the page; the server goes on
            return _error(err), gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def run_photo(photo, face_choice, controls, progress, start):
        if photo is None:
            raise UploadError("upload a photo first (tab 'Photo')")
        if not photo["landmarks"]:
            raise UploadError("no face was found in the photo")
        chosen = list(range(len(photo["landmarks"]))) if face_choice in (None, "all faces") else \
            [int(str(face_choice).split()[1])]
        faces = engine.photo_faces(photo["image"], [photo["landmarks"][i] for i in chosen], controls.scale)
        tiles, restored, tables, named = [], [], [], {}
        report = reporter(progress)
        for j, (i, (face, _)) in enumerate(zip(chosen, faces, strict=True)):
            step = lambda done, total, what, j=j: report(j * total + done, len(faces) * total, f"face {j + 1} of "
                                                                                               f"{len(faces)}, {what}")
            results = engine.sample(face, controls, step)
            row = engine.tiles(face, results)
            tiles += [(image, f"face {i}: {caption}") for image, caption in row]
            named.update({f"face{i}_{n}_{caption.replace(' ', '_')}": image for n, (image, caption) in enumerate(row)})
            restored.append(row[2][0])
            tables.append(f"**face {i}**\n\n" + _metrics_table(engine.measure(face, results, controls.scale),
                                                               controls.seeds))
        before, after = engine.paste(photo["image"], restored, [t for _, t in faces])
        named.update(photo_before=before, photo_after=after)
        from dpi_jax.photo.pipeline import fit_within
        seconds = time.perf_counter() - start
        status = (f"**Done** in {seconds:.1f} s: {len(faces)} face(s) of the photo restored (seed 0 pasted back); "
                  f"{controls.describe()}. Programs compiled so far: {sampler.compilation_count()}.")
        view = gr.ImageSlider(value=(fit_within(before, PHOTO_SIDE), fit_within(after, PHOTO_SIDE)), visible=True)
        return status, gr.Gallery(tiles, columns=len(row)), "\n\n".join(tables), view, str(engine.archive(named))

    def sweep(source, demo_index, lr_image, hr_image, scale, method, steps, tau, s, omega, seeds, crt, refine,
              weight, taus, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        try:
            if source == "photo":
                raise UploadError("the sweep runs on one face: pick a demo face or upload an LR or HR face")
            controls = controls_of(scale, method, steps, tau, s, omega, seeds, crt, refine, weight)
            face = input_face(source, demo_index, lr_image, hr_image, controls.scale)
            start = time.perf_counter()
            strip, plot, rows = engine.sweep(face, controls, taus, reporter(progress))
            lines = ["| tau | LR consistency (dB) | diversity |", "| --- | --- | --- |"]
            lines += [f"| {r['setting']} | {r['lr_psnr']:.2f} | {r['diversity']:.4f} |" for r in rows]
            status = (f"**Sweep done** in {time.perf_counter() - start:.1f} s: tau = {taus} on {face.name}; "
                      f"{controls.describe(tau=False)}. "
                      f"Programs compiled so far: {sampler.compilation_count()}.")
            return status, str(strip), str(plot), "\n".join(lines)
        except Exception as err:
            return _error(err), gr.skip(), gr.skip(), gr.skip()

    def on_upload(data):
        try:
            image = decode_upload(data, max_bytes=engine.max_bytes, max_pixels=engine.config.get("max_image_pixels"))
        except Exception as err:
            return None, None, _error(err)
        return image, image, f"Uploaded a {image.shape[1]}x{image.shape[0]} image."

    def on_photo(data, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        choices = gr.Dropdown(choices=["all faces"], value="all faces")
        try:
            image = decode_upload(data, max_bytes=engine.max_bytes, photo=True)
            progress(0.5, desc="detecting faces")
            faces = engine.find_faces(image)
        except Exception as err:
            return None, [], choices, _error(err)
        crops = []
        for i, face in enumerate(faces):
            x1, y1, x2, y2 = (int(round(v)) for v in face.box)
            crop = image[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
            crops.append((np.ascontiguousarray(crop), f"face {i}: {face.size:.0f} px at ({x1}, {y1})"))
        state = {"image": image, "landmarks": [np.asarray(f.landmarks) for f in faces]}
        labels = ["all faces"] + [f"face {i}" for i in range(len(faces))]
        found = (f"{len(faces)} face(s) found in the {image.shape[1]}x{image.shape[0]} photo: restore one or all."
                 if faces else "No face found in the photo (faces under the minimum size are skipped).")
        return state, crops, gr.Dropdown(choices=labels, value="all faces"), found

    def on_settings(scale, method):
        scale, method = int(str(scale).lstrip("x")), str(method).lower()
        config_values = engine.defaults(scale)
        values = paper_values(scale, method) or (config_values.tau, config_values.s, config_values.omega)
        updates = [gr.Slider(value=v,
                             info=_slider_info(name, scale, method, getattr(config_values, name)))
                   for name, v in zip(("tau", "s", "omega"), values, strict=True)]
        has_crt = scale in engine.crts
        crt_box = gr.Checkbox(value=has_crt, interactive=has_crt,
                              label="CRT (condition corrector)" if has_crt else f"CRT (none loaded for x{scale})")
        return (*updates, crt_box)

    def on_method(scale, method):
        method = str(method).lower()
        default = engine.defaults(int(str(scale).lstrip("x")))
        steps = default.steps if method == default.method else (20 if method == "ddim" else 50)
        return (gr.Dropdown(choices=sorted(set(STEPS[method] + [steps])), value=steps),
                *on_settings(scale, method))

    with gr.Blocks(title="DPI face super-resolution", analytics_enabled=False, delete_cache=(1800, 3600),
                   fill_width=True) as page:
        source = gr.State("demo")
        demo_index, lr_state, hr_state, photo_state = gr.State(0), gr.State(None), gr.State(None), gr.State(None)
        gr.Markdown(HEADER.format(T=num_timesteps))
        with gr.Row():
            with gr.Column(scale=2, min_width=380):
                with gr.Tabs():
                    with gr.Tab("Demo face", id="demo") as tab_demo:
                        demo_gallery = gr.Gallery([(engine.demo[n], n) for n in demo_names], columns=4,
                                                  allow_preview=False, selected_index=0, elem_id="demo_faces",
                                                  label="held-out demo faces (click one)", height=240)
                    with gr.Tab("LR face (real)", id="lr") as tab_lr:
                        lr_file = gr.File(type="binary", label="an LR face, used as it is", elem_id="lr_upload")
                        lr_preview = gr.Image(label="uploaded", interactive=False, height=128, elem_id="preview")
                    with gr.Tab("HR face (synthetic)", id="hr") as tab_hr:
                        hr_file = gr.File(type="binary", label="an HR face; the page makes the LR",
                                          elem_id="hr_upload")
                        hr_preview = gr.Image(label="uploaded", interactive=False, height=128)
                    with gr.Tab("Photo", id="photo") as tab_photo:
                        photo_file = gr.File(type="binary", label="a photo with faces", elem_id="photo_upload")
                        photo_faces = gr.Gallery(label="faces found", columns=4, allow_preview=False, height=200)
                        face_choice = gr.Dropdown(["all faces"], value="all faces", label="restore")
                scale = gr.Radio([f"x{s}" for s in scales], value=f"x{first.scale}", label="scale (loaded CRTs)")
                with gr.Row():
                    method = gr.Radio(["DDPM", "DDIM"], value=first.method.upper(), label="sampler")
                    steps = gr.Dropdown(sorted(set(STEPS[first.method] + [first.steps])), value=first.steps,
                                        allow_custom_value=True, label="steps", elem_id="steps")
                tau = gr.Slider(0, num_timesteps - 1, value=first.tau, step=1, label="tau", elem_id="tau",
                                info=_slider_info("tau", first.scale, first.method, first.tau))
                s = gr.Slider(0.05, 4.0, value=first.s, step=0.05, label="s", elem_id="s",
                              info=_slider_info("s", first.scale, first.method, first.s))
                omega = gr.Slider(10, 3000, value=first.omega, step=5, label="omega", elem_id="omega",
                                  info=_slider_info("omega", first.scale, first.method, first.omega))
                with gr.Row():
                    seeds = gr.Slider(1, 8, value=first.seeds, step=1, label="seeds", elem_id="seeds")
                    paper = gr.Button("paper's values", size="sm", elem_id="paper")
                with gr.Row():
                    crt = gr.Checkbox(first.crt, label="CRT (condition corrector)", interactive=first.crt)
                    refine = gr.Checkbox(first.refine, label="refine (stage II)")
                    weight = gr.Checkbox(first.weight, label="weight w = t / omega")
                with gr.Row():
                    run_button = gr.Button("Run", variant="primary", elem_id="run")
                    sweep_button = gr.Button("Sweep tau", elem_id="sweep")
                taus = gr.Textbox(SWEEP_TAUS, label="tau values of the sweep", elem_id="taus")
            with gr.Column(scale=4):
                status = gr.Markdown("Ready: pick a face and press Run.", elem_id="status")
                results = gr.Gallery(label="LR | bicubic | DPI per seed | per-pixel std | ground truth", columns=7,
                                     format="png", elem_id="results", height=190, object_fit="contain")
                metrics = gr.Markdown(elem_id="metrics")
                before_after = gr.ImageSlider(label="photo: before | after", visible=False, elem_id="before_after")
                download = gr.File(label="every image (zip)", interactive=False, elem_id="download")
                with gr.Accordion("tau sweep (the paper's Fig. 7)", open=True):
                    strip = gr.Image(label="strip: rows = seeds", type="filepath", interactive=False, height=330,
                                     elem_id="sweep_strip")
                    plot = gr.Image(label="LR consistency against diversity", type="filepath", interactive=False,
                                    height=400, elem_id="sweep_plot")
                    sweep_table = gr.Markdown(elem_id="sweep_table")

        for tab, name in ((tab_demo, "demo"), (tab_lr, "lr"), (tab_hr, "hr"), (tab_photo, "photo")):
            tab.select(lambda name=name: name, None, source)

        def pick(evt: gr.SelectData):
            return evt.index, f"Demo face {demo_names[evt.index]} selected."

        demo_gallery.select(pick, None, [demo_index, status])
        lr_file.upload(on_upload, lr_file, [lr_state, lr_preview, status])
        hr_file.upload(on_upload, hr_file, [hr_state, hr_preview, status])
        photo_file.upload(on_photo, photo_file, [photo_state, photo_faces, face_choice, status])
        for file, state in ((lr_file, lr_state), (hr_file, hr_state), (photo_file, photo_state)):
            file.clear(lambda: None, None, state)
        sliders = [tau, s, omega, crt]
        scale.input(on_settings, [scale, method], sliders)
        method.input(on_method, [scale, method], [steps, *sliders])
        paper.click(lambda sc, m: on_settings(sc, m)[:3], [scale, method], [tau, s, omega])
        knobs = [scale, method, steps, tau, s, omega, seeds, crt, refine, weight]
        run_button.click(run, [source, demo_index, lr_state, hr_state, photo_state, face_choice, *knobs],
                         [status, results, metrics, before_after, download], concurrency_id="sampling")
        sweep_button.click(sweep, [source, demo_index, lr_state, hr_state, *knobs, taus],
                           [status, strip, plot, sweep_table], concurrency_id="sampling")
    return page


def launch(engine: Engine, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True) -> gr.Blocks:
    """Serve the page on ``host:port`` (never shared); runs and sweeps go one at a time. ``block=False`` returns at once
    (for tests; ``page.close()`` stops it)."""
    page = build(engine)
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=host, server_port=int(port), share=False, max_file_size=engine.max_bytes,
                prevent_thread_lock=not block, inbrowser=False, ssr_mode=False, mcp_server=False, css=CSS,
                footer_links=["gradio"])
    return page

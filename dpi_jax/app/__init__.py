"""A local page for DPI's flexibility: tau, s and omega as sliders, seeds side by side, the tau sweep.

    python -m dpi_jax.app                                   # the demo weights, http://127.0.0.1:7860
    python -m dpi_jax.app --config configs/paper.py:x8 --config.diffusion.respacing=250 --port 8000

Needs the ``[app]`` extra (Gradio). :mod:`~dpi_jax.app.engine` is what the page computes (no Gradio),
:mod:`~dpi_jax.app.ui` the page, ``docs/app.md`` the guide.
"""

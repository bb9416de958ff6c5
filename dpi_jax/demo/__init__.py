"""The bundled demo's own data: procedural synthetic faces (:mod:`dpi_jax.demo.synthfaces`), on which the shipped
demo prior and CRT were trained and are evaluated. Nothing of the DPI core depends on it."""
